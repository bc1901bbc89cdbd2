//! A node's in-memory disk. Writes land in what the process sees at once and reach the
//! synced state at the next sync: a process crash (kill) loses nothing (the page cache
//! survives it), a power loss loses the unsynced writes, a wipe loses everything, and a
//! restore puts back an older synced copy.

use std::collections::BTreeMap;

use chorus_core::version::Object;

use crate::engine::Time;

/// One stored key.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub object: Object,
    /// `Object::digest`, kept so exchanges don't re-encode.
    pub digest: [u8; 32],
    /// Local clock time at which the key became tombstones only.
    pub tombstone_since: Option<Time>,
}

/// A durable hint: a write a replica missed, kept for it by another node.
#[derive(Clone, Debug, PartialEq)]
pub struct Hint {
    pub target: usize,
    pub key: String,
    pub object: Object,
    /// Local clock time the hint was stored; it is dropped once older than the expiry.
    pub created: Time,
}

/// Everything a node keeps on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Store {
    pub data: BTreeMap<String, Stored>,
    pub hints: BTreeMap<u64, Hint>,
}

#[derive(Clone, Debug)]
enum Write {
    Put(String, Stored),
    Delete(String),
    PutHint(u64, Hint),
    DeleteHint(u64),
}

impl Store {
    fn apply(&mut self, w: Write) {
        match w {
            Write::Put(k, s) => {
                self.data.insert(k, s);
            }
            Write::Delete(k) => {
                self.data.remove(&k);
            }
            Write::PutHint(id, h) => {
                self.hints.insert(id, h);
            }
            Write::DeleteHint(id) => {
                self.hints.remove(&id);
            }
        }
    }
}

/// A disk with a synced state and a log of writes not yet synced.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    live: Store,
    synced: Store,
    unsynced: Vec<Write>,
}

impl Disk {
    /// What the running process sees.
    pub fn view(&self) -> &Store {
        &self.live
    }

    pub fn put(&mut self, key: &str, stored: Stored) {
        self.write(Write::Put(key.to_string(), stored));
    }

    pub fn delete(&mut self, key: &str) {
        self.write(Write::Delete(key.to_string()));
    }

    pub fn put_hint(&mut self, id: u64, hint: Hint) {
        self.write(Write::PutHint(id, hint));
    }

    pub fn delete_hint(&mut self, id: u64) {
        self.write(Write::DeleteHint(id));
    }

    fn write(&mut self, w: Write) {
        self.live.apply(w.clone());
        self.unsynced.push(w);
    }

    /// Makes every write so far survive a power loss.
    pub fn sync(&mut self) {
        for w in self.unsynced.drain(..) {
            self.synced.apply(w);
        }
    }

    /// Writes a power loss would lose now.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// A power loss: only synced writes remain.
    pub fn lose_unsynced(&mut self) {
        self.unsynced.clear();
        self.live = self.synced.clone();
    }

    /// The disk is replaced by an empty one.
    pub fn wipe(&mut self) {
        *self = Disk::default();
    }

    /// A copy of the synced state, as a backup would take it.
    pub fn snapshot(&self) -> Store {
        self.synced.clone()
    }

    /// The disk is put back to an older copy.
    pub fn restore(&mut self, copy: Store) {
        self.unsynced.clear();
        self.synced = copy.clone();
        self.live = copy;
    }

    /// Empties data (not hints) of the keys `drop` selects, durably (a restored copy's
    /// partitions that the node throws away).
    pub fn drop_keys(&mut self, drop: impl Fn(&str) -> bool) {
        let keys: Vec<String> = self.live.data.keys().filter(|k| drop(k)).cloned().collect();
        for k in keys {
            self.delete(&k);
        }
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        Stored {
            object: Object::new(),
            digest: [0; 32],
            tombstone_since: None,
        }
    }

    #[test]
    fn a_power_loss_keeps_synced_writes_only() {
        let mut d = Disk::default();
        d.put("a", stored());
        d.sync();
        d.put("b", stored());
        d.lose_unsynced();
        assert!(d.view().data.contains_key("a"));
        assert!(!d.view().data.contains_key("b"));
        let snap = d.snapshot();
        d.put("c", stored());
        d.sync();
        d.restore(snap);
        assert_eq!(d.view().data.len(), 1);
    }
}
