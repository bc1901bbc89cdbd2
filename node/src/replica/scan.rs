//! Walking one bucket's keys in the local replica, for listings and truncation. A data key
//! is `partition | segment | bucket | key`, so a bucket's keys with a given prefix are one
//! contiguous range per segment, not per partition: the walk seeks to that range in each
//! segment that holds anything, and jumps over the segments that don't.

use std::collections::BTreeSet;

use chorus_core::listing::KEY_OVERHEAD;

use crate::hints::now_ms;
use crate::merkle::LEAVES;
use crate::replica::{Change, Replica, ReplicaError};
use crate::storage::{segment_key, segment_range, split_data_key, Storage, Table};
use crate::version::Object;

/// Entries read by the first scan after a seek; doubled while they all match.
const FIRST_PAGE: usize = 16;
const MAX_PAGE: usize = 1024;

/// What the walk does after a visited key.
enum Step {
    Next,
    /// Nothing further in this segment is wanted.
    NextSegment,
    /// Stop here; the walk returns where to resume.
    Stop,
}

/// Called with each key (the user's key, its storage key, its stored bytes).
type Visit<'a> = dyn FnMut(&[u8], &[u8], &[u8]) -> Result<Step, ReplicaError> + 'a;

/// Visits, segment by segment, the stored keys of `bucket` in `partition` that start with
/// `prefix` and are not before `start`, beginning at the storage key `from` if given.
/// Returns where to resume when `visit` stopped, `None` when the partition is done.
fn walk(
    storage: &dyn Storage,
    partition: u32,
    bucket: &[u8],
    prefix: &[u8],
    start: &[u8],
    from: Option<Vec<u8>>,
    visit: &mut Visit<'_>,
) -> Result<Option<Vec<u8>>, ReplicaError> {
    let end = segment_range(partition, u16::MAX).1;
    let next_seg = |seg: u16| {
        (usize::from(seg) + 1 < LEAVES).then(|| segment_key(partition, seg + 1, bucket, start))
    };
    let mut cursor = from.unwrap_or_else(|| segment_key(partition, 0, bucket, start));
    let mut page = FIRST_PAGE;
    loop {
        let Some(seg) = split_data_key(&cursor).map(|d| d.segment) else {
            return Ok(None);
        };
        let entries = storage.scan(Table::Data, &cursor, &end, page)?;
        let Some((last, _)) = entries.last() else {
            return Ok(None);
        };
        // Where the next scan starts when this one leaves the wanted range: `Some(None)`
        // when nothing of the partition is left.
        let mut jump: Option<Option<Vec<u8>>> = None;
        for (k, v) in &entries {
            let Some(dk) = split_data_key(k) else {
                continue;
            };
            if dk.segment != seg {
                jump = Some(Some(segment_key(partition, dk.segment, bucket, start)));
                break;
            }
            if dk.bucket != bucket || !dk.key.starts_with(prefix) {
                jump = Some(next_seg(seg));
                break;
            }
            match visit(dk.key, k, v)? {
                Step::Next => {}
                Step::NextSegment => {
                    jump = Some(next_seg(seg));
                    break;
                }
                Step::Stop => {
                    let mut resume = k.clone();
                    resume.push(0);
                    return Ok(Some(resume));
                }
            }
        }
        match jump {
            Some(Some(to)) => {
                cursor = to;
                page = FIRST_PAGE;
            }
            Some(None) => return Ok(None),
            None if entries.len() == page => {
                cursor = last.clone();
                cursor.push(0);
                page = (page * 2).min(MAX_PAGE);
            }
            None => return Ok(None),
        }
    }
}

fn decode(v: &[u8]) -> Result<Object, ReplicaError> {
    Object::decode(v).map_err(|e| ReplicaError::Corrupt(e.to_string()))
}

/// What a listing asks of this replica.
#[derive(Clone, Debug)]
pub struct ListAsk {
    pub bucket: Vec<u8>,
    pub prefix: Vec<u8>,
    /// The first key that may be returned.
    pub start: Vec<u8>,
    pub partitions: Vec<u32>,
    pub limit: usize,
    /// Bytes of keys the reply may carry.
    pub max_bytes: usize,
}

/// The smallest `ask.limit` live keys (some sibling neither a tombstone nor expired), in
/// byte order, and whether there may be more (the limit or the byte bound was reached).
fn list_blocking(
    storage: &dyn Storage,
    ask: &ListAsk,
) -> Result<(Vec<Vec<u8>>, bool), ReplicaError> {
    let limit = ask.limit.max(1);
    let now = now_ms();
    let mut kept: BTreeSet<Vec<u8>> = BTreeSet::new();
    for &p in &ask.partitions {
        let mut visit = |key: &[u8], _: &[u8], v: &[u8]| {
            // Keys come in order within a segment: once the set is full, a key past its
            // largest ends the segment.
            if kept.len() >= limit && kept.last().is_some_and(|l| key >= l.as_slice()) {
                return Ok(Step::NextSegment);
            }
            if decode(v)?.is_found_at(now) {
                kept.insert(key.to_vec());
                if kept.len() > limit {
                    kept.pop_last();
                }
            }
            Ok(Step::Next)
        };
        walk(
            storage,
            p,
            &ask.bucket,
            &ask.prefix,
            &ask.start,
            None,
            &mut visit,
        )?;
    }
    let mut more = kept.len() >= limit;
    let mut out = Vec::with_capacity(kept.len());
    let mut bytes = 0;
    for k in kept {
        bytes += k.len() + KEY_OVERHEAD;
        // Always one key, so a listing moves on whatever the bound.
        if bytes > ask.max_bytes && !out.is_empty() {
            more = true;
            break;
        }
        out.push(k);
    }
    Ok((out, more))
}

/// Up to `limit` live keys of `bucket` in `partition` (storage key and version), from the
/// storage key `from`, and where to resume (`None` when the partition is done).
type LivePage = (Vec<(Vec<u8>, Object)>, Option<Vec<u8>>);

fn live_page(
    storage: &dyn Storage,
    partition: u32,
    bucket: &[u8],
    from: Option<Vec<u8>>,
    limit: usize,
) -> Result<LivePage, ReplicaError> {
    let mut out = Vec::new();
    let mut visit = |_: &[u8], k: &[u8], v: &[u8]| {
        let obj = decode(v)?;
        if obj.is_found() {
            out.push((k.to_vec(), obj));
        }
        Ok(if out.len() >= limit {
            Step::Stop
        } else {
            Step::Next
        })
    };
    let resume = walk(storage, partition, bucket, b"", b"", from, &mut visit)?;
    Ok((out, resume))
}

impl Replica {
    /// A listing's answer from this replica: its live keys, in byte order, and whether it
    /// may hold more past them.
    pub async fn list_keys(&self, ask: ListAsk) -> Result<(Vec<Vec<u8>>, bool), ReplicaError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || list_blocking(&*storage, &ask))
            .await
            .map_err(|_| ReplicaError::Closed)?
    }

    /// Deletes every live key of `bucket` in `partitions`: each gets a delete whose context
    /// is its whole stored version, applied as a write coordinated here (the tombstone's dot
    /// is this node's), `batch` keys at a time. Returns the keys deleted per partition.
    pub async fn truncate(
        &self,
        bucket: &[u8],
        partitions: &[u32],
        batch: usize,
    ) -> Result<Vec<(u32, u64)>, ReplicaError> {
        let mut out = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let mut deleted = 0;
            let mut from = None;
            loop {
                let storage = self.storage.clone();
                let b = bucket.to_vec();
                let (page, resume) = tokio::task::spawn_blocking(move || {
                    live_page(&*storage, p, &b, from, batch.max(1))
                })
                .await
                .map_err(|_| ReplicaError::Closed)??;
                let mut jobs = tokio::task::JoinSet::new();
                for (key, obj) in page {
                    let replica = self.clone();
                    let change = Change::Update {
                        ctx: obj.context(),
                        value: None,
                        expires_ms: None,
                    };
                    // Submitted together, so the writer groups them into write batches.
                    jobs.spawn(async move { replica.apply(key, change).await });
                }
                while let Some(r) = jobs.join_next().await {
                    r.map_err(|_| ReplicaError::Closed)??;
                    deleted += 1;
                }
                match resume {
                    Some(r) => from = Some(r),
                    None => break,
                }
            }
            out.push((p, deleted));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
