//! Byte budgets: every background message (hint replay, anti-entropy reads and merges,
//! transfer pages, read repair) is cut by item count and by bytes, so large values never
//! make a message a peer refuses. An item larger than the whole budget travels alone.

use crate::rpc::Item;

/// Bytes an item costs in a message beyond its bucket, key and object: the msgpack
/// field names and length prefixes, rounded up.
pub const ITEM_OVERHEAD: usize = 64;

/// What one item of a batch weighs.
pub fn item_bytes(item: &Item) -> usize {
    item.bucket.len() + item.key.len() + item.object.len() + ITEM_OVERHEAD
}

/// Fills one batch: at most `max_count` items and `max_bytes` bytes, except that an empty
/// batch admits any single item.
#[derive(Clone, Debug)]
pub struct Budget {
    max_count: usize,
    max_bytes: usize,
    count: usize,
    bytes: usize,
}

impl Budget {
    pub fn new(max_count: usize, max_bytes: usize) -> Budget {
        Budget {
            max_count: max_count.max(1),
            max_bytes,
            count: 0,
            bytes: 0,
        }
    }

    /// Whether an item of `size` bytes may still join the batch.
    pub fn admits(&self, size: usize) -> bool {
        self.count == 0
            || (self.count < self.max_count && self.bytes.saturating_add(size) <= self.max_bytes)
    }

    /// Counts an item in.
    pub fn add(&mut self, size: usize) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(size);
    }

    /// Adds the item if it fits; says whether it did.
    pub fn take(&mut self, size: usize) -> bool {
        let ok = self.admits(size);
        if ok {
            self.add(size);
        }
        ok
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Starts the next batch.
    pub fn reset(&mut self) {
        self.count = 0;
        self.bytes = 0;
    }
}

/// Splits items, in order, into batches that each respect the budget.
pub fn batches<T>(
    items: Vec<T>,
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut budget = Budget::new(max_count, max_bytes);
    for item in items {
        let s = size(&item);
        if !budget.admits(s) {
            out.push(std::mem::take(&mut cur));
            budget.reset();
        }
        budget.add(s);
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_bytes_and_oversized_items_go_alone() {
        let sizes = vec![10, 10, 10, 50, 10, 200, 10, 10, 10, 10, 10];
        let out = batches(sizes.clone(), 4, 40, |s| *s);
        assert_eq!(
            out,
            vec![
                vec![10, 10, 10],
                vec![50],
                vec![10],
                vec![200],
                vec![10, 10, 10, 10],
                vec![10]
            ]
        );
        // Nothing lost, order kept.
        assert_eq!(out.concat(), sizes);
        for b in &out {
            assert!(b.len() <= 4);
            assert!(b.len() == 1 || b.iter().sum::<usize>() <= 40);
        }
        assert!(batches(Vec::<usize>::new(), 4, 40, |s| *s).is_empty());
    }

    #[test]
    fn an_empty_budget_admits_anything_once() {
        let mut b = Budget::new(0, 0);
        assert!(b.take(1 << 30));
        assert!(!b.admits(0));
        b.reset();
        assert!(b.is_empty() && b.admits(5));
    }
}
