use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::context::Context;
use crate::replica::ReplicaOptions;
use crate::storage::{data_key, MemStorage};

const PARTITIONS: u32 = 4;

fn open() -> Replica {
    let opts = ReplicaOptions {
        max_batch: 16,
        max_siblings: 8,
        max_object_bytes: 1 << 20,
        n_of: Arc::new(|_| 3),
        layout: "test".into(),
        conflicts_of: Arc::new(|_: &[u8]| crate::version::Conflicts::Siblings),
        max_clock_offset: std::time::Duration::from_secs(10),
    };
    Replica::open(Arc::new(MemStorage::default()), "n1", opts).expect("open")
}

fn partition(bucket: &[u8], key: &[u8]) -> u32 {
    chorus_ring::partition_for(PARTITIONS, bucket, key)
}

async fn put(r: &Replica, bucket: &[u8], key: &[u8]) {
    let change = Change::Update {
        ctx: Context::default(),
        value: Some(b"v".to_vec()),
        expires_ms: None,
    };
    r.apply(data_key(partition(bucket, key), bucket, key), change)
        .await
        .expect("put");
}

async fn delete(r: &Replica, bucket: &[u8], key: &[u8]) {
    let dk = data_key(partition(bucket, key), bucket, key);
    let obj = r.get(dk.clone()).await.expect("get").expect("stored");
    let change = Change::Update {
        ctx: obj.context(),
        value: None,
        expires_ms: None,
    };
    r.apply(dk, change).await.expect("delete");
}

/// Buckets whose names are prefixes of one another, and keys sharing prefixes, so a walk
/// that strays past its bucket's or prefix's range shows.
async fn fill(r: &Replica) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let mut live = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for i in 0..400u32 {
        let key = format!("{}/{:03}", ["user", "us", "order"][i as usize % 3], i).into_bytes();
        put(r, b"b", &key).await;
        put(r, b"bb", &key).await;
        put(r, b"", &key).await;
        if i % 7 == 0 {
            delete(r, b"b", &key).await;
            deleted.insert(key);
        } else {
            live.insert(key);
        }
    }
    (live, deleted)
}

fn ask(prefix: &[u8], after: Option<&[u8]>, limit: usize) -> ListAsk {
    ListAsk {
        bucket: b"b".to_vec(),
        prefix: prefix.to_vec(),
        start: chorus_core::listing::start_key(prefix, after),
        partitions: (0..PARTITIONS).collect(),
        limit,
        max_bytes: 1 << 20,
    }
}

#[tokio::test]
async fn listing_returns_the_smallest_live_keys_of_the_bucket_and_prefix() {
    let r = open();
    let (live, deleted) = fill(&r).await;
    assert!(!deleted.is_empty());
    for prefix in [&b""[..], b"us", b"user/", b"order/1", b"zzz"] {
        for after in [None, Some(&b"us/2"[..]), Some(&b"user/100"[..])] {
            for limit in [1, 7, 1000] {
                let want: Vec<Vec<u8>> = live
                    .iter()
                    .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a))
                    .take(limit)
                    .cloned()
                    .collect();
                let (keys, more) = r.list_keys(ask(prefix, after, limit)).await.expect("list");
                assert_eq!(
                    keys, want,
                    "prefix {prefix:?} after {after:?} limit {limit}"
                );
                assert_eq!(more, want.len() == limit);
            }
        }
    }
    // Only the partitions asked for.
    let mut one = ask(b"", None, 1000);
    one.partitions = vec![2];
    let (keys, _) = r.list_keys(one).await.expect("list");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| partition(b"b", k) == 2));
}

#[tokio::test]
async fn the_byte_bound_cuts_the_answer_but_keeps_one_key() {
    let r = open();
    let (live, _) = fill(&r).await;
    let mut a = ask(b"", None, 1000);
    a.max_bytes = 100;
    let (keys, more) = r.list_keys(a.clone()).await.expect("list");
    assert!(more);
    assert!(!keys.is_empty() && keys.len() < live.len());
    assert_eq!(
        keys,
        live.iter().take(keys.len()).cloned().collect::<Vec<_>>()
    );
    a.max_bytes = 0;
    let (keys, more) = r.list_keys(a).await.expect("list");
    assert_eq!((keys.len(), more), (1, true));
}

#[tokio::test]
async fn truncate_deletes_the_bucket_with_tombstones_of_this_node() {
    let r = open();
    let (live, deleted) = fill(&r).await;
    let all: Vec<u32> = (0..PARTITIONS).collect();
    // Small batches, so the walk resumes many times.
    let per = r.truncate(b"b", &all, 3).await.expect("truncate");
    assert_eq!(per.iter().map(|(_, n)| n).sum::<u64>(), live.len() as u64);
    assert_eq!(per.iter().map(|(p, _)| *p).collect::<Vec<_>>(), all);
    let (keys, _) = r.list_keys(ask(b"", None, 1000)).await.expect("list");
    assert!(keys.is_empty());
    for k in live.iter().chain(&deleted) {
        let obj = r
            .get(data_key(partition(b"b", k), b"b", k))
            .await
            .expect("get")
            .expect("a tombstone stays");
        assert!(!obj.is_found());
        assert!(
            obj.clock().get(r.actor()) > 0,
            "the tombstone's dot is this node's"
        );
    }
    // The other buckets are untouched; a second truncate finds nothing.
    let mut other = ask(b"", None, 1000);
    other.bucket = b"bb".to_vec();
    let (keys, _) = r.list_keys(other).await.expect("list");
    assert_eq!(keys.len(), 400);
    let again = r.truncate(b"b", &all, 3).await.expect("again");
    assert!(again.iter().all(|(_, n)| *n == 0));
}

#[tokio::test]
async fn expired_values_are_not_listed() {
    let r = open();
    let past = crate::hints::now_ms().saturating_sub(1_000);
    let future = crate::hints::now_ms() + 3_600_000;
    for (key, expires_ms) in [
        (&b"gone"[..], Some(past)),
        (b"later", Some(future)),
        (b"kept", None),
    ] {
        let change = Change::Update {
            ctx: Context::default(),
            value: Some(b"v".to_vec()),
            expires_ms,
        };
        r.apply(data_key(partition(b"b", key), b"b", key), change)
            .await
            .expect("put");
    }
    let (keys, _) = r.list_keys(ask(b"", None, 1000)).await.expect("list");
    assert_eq!(keys, vec![b"kept".to_vec(), b"later".to_vec()]);
}
