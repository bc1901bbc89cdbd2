//! Local storage behind a small synchronous trait, with a RocksDB engine and an in-memory one.
//!
//! Calls block, so async code reaches them through `spawn_blocking` or the replica's writer
//! thread; only [`Storage::get_cached`], which never touches the disk, runs on a runtime
//! worker.
//!
//! Layout: one column family per table. Data keys are `partition (u32 BE) | bucket length
//! (u16 BE) | bucket | key`, so one partition's keys are one contiguous range (for
//! anti-entropy and transfers later).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A logical table; one RocksDB column family each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Key → encoded version object.
    Data,
    /// Node identity and bookkeeping.
    Meta,
    /// Writes held for other nodes (hinted handoff).
    Hints,
    /// Anti-entropy tree leaves.
    Aae,
    /// Keys whose version is only tombstones, with when that began (for purging).
    Tombstones,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Data,
        Table::Meta,
        Table::Hints,
        Table::Aae,
        Table::Tombstones,
    ];

    fn cf_name(self) -> &'static str {
        match self {
            Table::Data => "data",
            Table::Meta => "meta",
            Table::Hints => "hints",
            Table::Aae => "aae",
            Table::Tombstones => "tombstones",
        }
    }
}

/// One change in an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open storage at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("storage read failed: {0}")]
    Read(String),
    #[error("storage write failed: {0}")]
    Write(String),
}

/// Key-value pairs from a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the node needs from a storage engine. Every method may block.
pub trait Storage: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// [`Storage::get`] if it can be answered from memory without blocking on disk;
    /// `Ok(None)` when it can't, or when the key isn't found there (the caller then reads
    /// on a blocking thread).
    fn get_cached(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Option<Vec<u8>>>, StorageError> {
        self.get(table, key).map(Some)
    }
    /// Applies every op or none.
    fn write(&self, ops: Vec<Op>) -> Result<(), StorageError>;
    /// Up to `limit` entries with keys in `[start, end)`, in key order.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StorageError>;
}

/// Encodes the storage key of a data entry: partition, then anti-entropy segment, then the
/// key, so one segment of one partition is one contiguous range.
pub fn data_key(partition: u32, bucket: &[u8], key: &[u8]) -> Vec<u8> {
    segment_key(
        partition,
        crate::merkle::segment_of(bucket, key),
        bucket,
        key,
    )
}

/// The storage key `key` of `bucket` would have in a given segment of a partition: where a
/// walk over one segment starts (a key's own segment comes from [`data_key`]).
pub fn segment_key(partition: u32, segment: u16, bucket: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bucket.len() + key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&segment.to_be_bytes());
    // Callers enforce the bucket limit (at most u16::MAX); saturate rather than wrap if not.
    let blen = u16::try_from(bucket.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&blen.to_be_bytes());
    out.extend_from_slice(bucket);
    out.extend_from_slice(key);
    out
}

/// A data key split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataKey<'a> {
    pub partition: u32,
    pub segment: u16,
    pub bucket: &'a [u8],
    pub key: &'a [u8],
}

/// Splits a data key back into its parts.
pub fn split_data_key(k: &[u8]) -> Option<DataKey<'_>> {
    let partition = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let segment = u16::from_be_bytes(k.get(4..6)?.try_into().ok()?);
    let blen = u16::from_be_bytes(k.get(6..8)?.try_into().ok()?) as usize;
    let bucket = k.get(8..8 + blen)?;
    let key = k.get(8 + blen..)?;
    Some(DataKey {
        partition,
        segment,
        bucket,
        key,
    })
}

/// The range of data keys of one segment of one partition: `[start, end)`.
pub fn segment_range(partition: u32, segment: u16) -> (Vec<u8>, Vec<u8>) {
    let mut start = partition.to_be_bytes().to_vec();
    start.extend_from_slice(&segment.to_be_bytes());
    let next = (u64::from(partition) << 16 | u64::from(segment)) + 1;
    let end = if next >> 48 == 0 {
        next.to_be_bytes()[2..].to_vec()
    } else {
        vec![0xff; 7]
    };
    (start, end)
}

/// RocksDB engine.
pub struct RocksStorage {
    db: rocksdb::DB,
    sync: bool,
}

/// Upper bound on the write-ahead log's total size.
const MAX_TOTAL_WAL: u64 = 128 << 20;

impl RocksStorage {
    pub fn open(path: &Path, sync: bool) -> Result<RocksStorage, StorageError> {
        Self::open_with(path, sync, MAX_TOTAL_WAL, None)
    }

    /// `max_wal` bounds the write-ahead log: past it, RocksDB flushes the column families
    /// that pin old log files. Without it, a rarely written family (meta, hints) keeps every
    /// log since its last flush alive, and a busy node's disk fills with logs.
    /// `write_buffer` overrides the memtable size (tests use small ones).
    fn open_with(
        path: &Path,
        sync: bool,
        max_wal: u64,
        write_buffer: Option<usize>,
    ) -> Result<RocksStorage, StorageError> {
        let err = |e: String| StorageError::Open {
            path: path.display().to_string(),
            reason: e,
        };
        std::fs::create_dir_all(path).map_err(|e| err(e.to_string()))?;
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_max_total_wal_size(max_wal);
        let mut data_opts = rocksdb::Options::default();
        data_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        data_opts.set_level_compaction_dynamic_level_bytes(true);
        let mut table_opts = rocksdb::BlockBasedOptions::default();
        table_opts.set_bloom_filter(10.0, false);
        table_opts.set_block_size(16 * 1024);
        data_opts.set_block_based_table_factory(&table_opts);
        let cfs = Table::ALL.iter().map(|t| {
            let mut o = if *t == Table::Data {
                data_opts.clone()
            } else {
                rocksdb::Options::default()
            };
            if let Some(size) = write_buffer {
                o.set_write_buffer_size(size);
            }
            rocksdb::ColumnFamilyDescriptor::new(t.cf_name(), o)
        });
        let db =
            rocksdb::DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| err(e.to_string()))?;
        Ok(RocksStorage { db, sync })
    }

    fn cf(&self, t: Table) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(t.cf_name())
            .ok_or_else(|| StorageError::Read(format!("column family {} missing", t.cf_name())))
    }
}

impl Storage for RocksStorage {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.cf(table)?, key)
            .map_err(|e| StorageError::Read(e.to_string()))
    }

    fn get_cached(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Option<Vec<u8>>>, StorageError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_read_tier(rocksdb::ReadTier::BlockCache);
        // Only a hit is trusted. A miss from the memory tier is not proof of absence (with
        // no I/O allowed, RocksDB may skip a table it would have had to open), so misses,
        // like anything incomplete, go the blocking way.
        match self.db.get_cf_opt(self.cf(table)?, key, &ro) {
            Ok(Some(v)) if !v.is_empty() => Ok(Some(Some(v))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            Err(e) => Err(StorageError::Read(e.to_string())),
        }
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                Op::Put(t, k, v) => batch.put_cf(self.cf(t)?, k, v),
                Op::Delete(t, k) => batch.delete_cf(self.cf(t)?, k),
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(self.sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| StorageError::Write(e.to_string()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StorageError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let it = self.db.iterator_cf_opt(
            self.cf(table)?,
            ro,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in it.take(limit) {
            let (k, v) = item.map_err(|e| StorageError::Read(e.to_string()))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// In-memory engine: same semantics, nothing survives the process.
type MemTables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

#[derive(Default, Clone)]
pub struct MemStorage {
    tables: Arc<RwLock<MemTables>>,
}

impl Storage for MemStorage {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let t = self
            .tables
            .read()
            .map_err(|_| StorageError::Read("poisoned".into()))?;
        Ok(t.get(&(table, key.to_vec())).cloned())
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut t = self
            .tables
            .write()
            .map_err(|_| StorageError::Write("poisoned".into()))?;
        for op in ops {
            match op {
                Op::Put(tb, k, v) => {
                    t.insert((tb, k), v);
                }
                Op::Delete(tb, k) => {
                    t.remove(&(tb, k));
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StorageError> {
        let t = self
            .tables
            .read()
            .map_err(|_| StorageError::Read("poisoned".into()))?;
        Ok(t.range((table, start.to_vec())..(table, end.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Storage) {
        s.write(vec![
            Op::Put(Table::Data, data_key(1, b"b", b"k1"), b"v1".to_vec()),
            Op::Put(Table::Data, data_key(1, b"b", b"k2"), b"v2".to_vec()),
            Op::Put(Table::Data, data_key(2, b"b", b"k3"), b"v3".to_vec()),
            Op::Put(Table::Meta, b"epoch".to_vec(), b"7".to_vec()),
        ])
        .expect("write");
        assert_eq!(
            s.get(Table::Data, &data_key(1, b"b", b"k1")).expect("get"),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            s.get(Table::Meta, &data_key(1, b"b", b"k1")).expect("get"),
            None
        );
        let part1 = s
            .scan(Table::Data, &1u32.to_be_bytes(), &2u32.to_be_bytes(), 100)
            .expect("scan");
        assert_eq!(part1.len(), 2);
        let k2 = data_key(1, b"b", b"k2");
        let parts = split_data_key(&k2).expect("split");
        assert_eq!(
            (parts.partition, parts.bucket, parts.key),
            (1, &b"b"[..], &b"k2"[..])
        );
        let (start, end) = segment_range(1, parts.segment);
        let seg = s.scan(Table::Data, &start, &end, 100).expect("scan");
        assert!(seg.iter().any(|(k, _)| *k == k2));
        assert!(seg
            .iter()
            .all(|(k, _)| split_data_key(k).map(|d| d.segment) == Some(parts.segment)));
        s.write(vec![Op::Delete(Table::Data, data_key(1, b"b", b"k1"))])
            .expect("delete");
        assert_eq!(
            s.get(Table::Data, &data_key(1, b"b", b"k1")).expect("get"),
            None
        );
    }

    #[test]
    fn memory_engine() {
        exercise(&MemStorage::default());
    }

    #[test]
    fn rocksdb_engine_persists() {
        let dir = std::env::temp_dir().join(format!("chorus-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = RocksStorage::open(&dir, false).expect("open");
            exercise(&s);
        }
        let s = RocksStorage::open(&dir, true).expect("reopen");
        assert_eq!(
            s.get(Table::Data, &data_key(1, b"b", b"k2")).expect("get"),
            Some(b"v2".to_vec())
        );
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Busy data plus one idle family's single write: the idle family must not pin every
    /// log file since. Without the bound (the control) the logs keep all 40 MB.
    #[test]
    fn write_ahead_log_stays_bounded() {
        for (bounded, max_wal) in [(true, 4u64 << 20), (false, u64::MAX)] {
            let dir = std::env::temp_dir().join(format!(
                "chorus-storage-wal-{bounded}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let s = RocksStorage::open_with(&dir, false, max_wal, Some(1 << 20)).expect("open");
            s.write(vec![Op::Put(Table::Meta, b"m".to_vec(), b"1".to_vec())])
                .expect("write");
            for i in 0u32..640 {
                let v: Vec<u8> = (0..64 * 1024u32).map(|j| (i ^ j) as u8).collect();
                s.write(vec![Op::Put(Table::Data, data_key(i, b"b", b"k"), v)])
                    .expect("write");
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut logs = wal_bytes(&dir);
            while bounded && logs > 16 << 20 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
                logs = wal_bytes(&dir);
            }
            if bounded {
                assert!(logs <= 16 << 20, "write-ahead logs hold {logs} bytes");
            } else {
                assert!(logs > 32 << 20, "control: logs hold only {logs} bytes");
            }
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn cached_reads_answer_from_memory_or_say_they_cannot() {
        let dir =
            std::env::temp_dir().join(format!("chorus-storage-cached-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k = data_key(1, b"b", b"k");
        {
            let s = RocksStorage::open(&dir, false).expect("open");
            s.write(vec![Op::Put(Table::Data, k.clone(), b"v".to_vec())])
                .expect("write");
            // In the memtable.
            assert_eq!(
                s.get_cached(Table::Data, &k).expect("get"),
                Some(Some(b"v".to_vec()))
            );
            // A miss is left to the blocking read.
            assert_eq!(s.get_cached(Table::Data, b"nope").expect("get"), None);
            assert_eq!(s.get(Table::Data, b"nope").expect("get"), None);
        }
        // Reopened: the value is in a table file, not in memory yet.
        let s = RocksStorage::open(&dir, false).expect("reopen");
        s.db.flush_cf(s.cf(Table::Data).expect("cf"))
            .expect("flush");
        let s2 = {
            drop(s);
            RocksStorage::open(&dir, false).expect("reopen")
        };
        assert_eq!(s2.get_cached(Table::Data, &k).expect("get"), None);
        assert_eq!(s2.get(Table::Data, &k).expect("get"), Some(b"v".to_vec()));
        drop(s2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn split_rejects_short_keys() {
        assert_eq!(split_data_key(b"abc"), None);
        assert_eq!(split_data_key(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']), None);
        assert_eq!(segment_range(0, u16::MAX).1, vec![0, 0, 0, 1, 0, 0]);
        assert_eq!(segment_range(u32::MAX, u16::MAX).1, vec![0xff; 7]);
    }
}
