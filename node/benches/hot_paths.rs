//! Micro-benchmarks of the functions every request runs: ring lookup, version update and
//! merge, frame encode/decode, and the anti-entropy tree update.
//!
//! `cargo bench --release -p chorus-node --bench hot_paths`

use chorus_client::wire;
use chorus_node::context::{ClusterSecret, Context, ContextKey};
use chorus_node::merkle::Tree;
use chorus_node::version::{Actor, Object};
use chorus_proto::{Level, Request, Response, ValueReply};
use chorus_ring::{Member, Ring};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn ring_lookup(c: &mut Criterion) {
    let members = (1..=5).map(|i| Member::new(format!("n{i}"))).collect();
    let ring = Ring::new(256, 3, members).expect("ring");
    let mut i = 0u64;
    c.bench_function("ring: partition and preference list", |b| {
        b.iter(|| {
            i += 1;
            let key = i.to_le_bytes();
            let p = ring.partition_of(b"usertable", black_box(&key));
            black_box(ring.preference_list(p, 3).len())
        })
    });
}

fn version_ops(c: &mut Criterion) {
    let a = Actor::new("n1", 7);
    let b = Actor::new("n2", 9);
    let value = vec![b'x'; 1000];
    let mut base = Object::new();
    base.update(&Context::default(), &a, 0, Some(value.clone()));
    c.bench_function("version: update with the read context (1 KB)", |bench| {
        bench.iter(|| {
            let mut o = base.clone();
            let ctx = o.context();
            o.update(&ctx, &a, 1, Some(black_box(value.clone())));
            black_box(o)
        })
    });
    let mut theirs = base.clone();
    theirs.update(&Context::default(), &b, 0, Some(value.clone()));
    c.bench_function("version: merge two siblings (1 KB)", |bench| {
        bench.iter(|| {
            let mut o = base.clone();
            o.merge(black_box(&theirs));
            black_box(o)
        })
    });
    // What a write adds on top of the update: open the client's context, build and seal
    // the one it returns.
    let key = ContextKey::new(&ClusterSecret::from_hex(&"ab".repeat(32)).expect("secret"));
    let sealed = key.seal(b"usertable", b"user0123456789abcdef", &theirs.context());
    c.bench_function(
        "context: open, update, written context, seal (1 KB)",
        |bench| {
            bench.iter(|| {
                let mut o = theirs.clone();
                let ctx = key
                    .open(b"usertable", b"user0123456789abcdef", black_box(&sealed))
                    .expect("open");
                let dot = o.update(&ctx, &a, 1, Some(black_box(value.clone())));
                let w = o.written_context(&ctx, &dot);
                black_box(key.seal(b"usertable", b"user0123456789abcdef", &w))
            })
        },
    );
    let encoded = theirs.encode();
    c.bench_function("version: decode an object (2 siblings)", |bench| {
        bench.iter(|| black_box(Object::decode(black_box(&encoded)).expect("decode")))
    });
}

fn frames(c: &mut Criterion) {
    let put = Request::Put {
        bucket: b"usertable".to_vec(),
        key: b"user0123456789abcdef".to_vec(),
        value: vec![b'x'; 1000],
        context: vec![1; 40],
        w: Level::Quorum,
        sloppy: false,
        ttl_ms: None,
    };
    c.bench_function("wire: encode a 1 KB put", |b| {
        b.iter(|| black_box(wire::encode(black_box(&put), 1).expect("encode")))
    });
    let frame = wire::encode(&put, 1).expect("encode");
    c.bench_function("wire: decode a 1 KB put", |b| {
        b.iter(|| black_box(wire::decode::<Request>(black_box(&frame[4..])).expect("decode")))
    });
    let reply = Response::Value(ValueReply {
        found: true,
        values: vec![serde_bytes::ByteBuf::from(vec![b'x'; 1000])],
        context: vec![1; 40],
        tombstones: 0,
        truncated: false,
    });
    let frame = wire::encode(&reply, 1).expect("encode");
    c.bench_function("wire: decode a 1 KB value reply", |b| {
        b.iter(|| black_box(wire::decode::<Response>(black_box(&frame[4..])).expect("decode")))
    });
}

fn tree_update(c: &mut Criterion) {
    let mut tree = Tree::new();
    let old = *blake3::hash(b"old").as_bytes();
    let new = *blake3::hash(b"new").as_bytes();
    let mut i = 0u64;
    c.bench_function("merkle: update one key", |b| {
        b.iter(|| {
            i += 1;
            let key = i.to_le_bytes();
            tree.update(b"usertable", black_box(&key), Some(&old), Some(&new));
        })
    });
}

criterion_group!(benches, ring_lookup, version_ops, frames, tree_update);
criterion_main!(benches);
