use super::*;
use std::time::Duration;

const BASE: &str = r#"
id = "n1"
listen = "127.0.0.1:7000"
data_dir = "data"
[tls]
ca = "ca.pem"
cert = "node.pem"
key = "node.key"
[cluster]
id = "test"
members = [{ id = "n1", address = "127.0.0.1:7000" }]
secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
"#;

fn parse(extra: &[&str]) -> Result<NodeConfig, ConfigError> {
    let o: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    NodeConfig::parse(BASE, &o, "node.toml")
}

#[test]
fn defaults_and_overrides() {
    let c = parse(&[]).expect("base config");
    assert!(!c.storage.sync);
    assert_eq!(c.cluster.n, 3);
    assert_eq!(c.limits.max_key_bytes, 65536);
    let c = parse(&["storage.sync=true", "timeouts.request=2s", "cluster.n=1"]).expect("overrides");
    assert!(c.storage.sync);
    assert_eq!(c.timeouts.request, Duration::from_secs(2));
    assert_eq!(c.cluster.n, 1);
    let c = parse(&[
        "read_repair.enabled=false",
        "hinted_handoff.enabled=false",
        "anti_entropy.enabled=false",
        "anti_entropy.interval=2s",
    ])
    .expect("switches");
    assert!(!c.read_repair.enabled && !c.hinted_handoff.enabled && !c.anti_entropy.enabled);
    assert_eq!(c.anti_entropy.interval, Duration::from_secs(2));
    let c = parse(&["storage.engine=memory"]).expect("bare string");
    assert_eq!(c.storage.engine, Engine::Memory);
}

#[test]
fn errors_name_the_field() {
    let e = parse(&["storage.sync=yes"]).unwrap_err().to_string();
    assert!(e.contains("storage.sync"), "{e}");
    let e = parse(&["storage.colour=1"]).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    let e = parse(&["cluster.partitions=100"]).unwrap_err().to_string();
    assert!(e.contains("cluster.partitions"), "{e}");
    let e = parse(&["timeouts.request=soon"]).unwrap_err().to_string();
    assert!(e.contains("timeouts.request"), "{e}");
    let e = parse(&["id=N_1"]).unwrap_err().to_string();
    assert!(e.contains("id"), "{e}");
    let e = parse(&["id=n2"]).unwrap_err().to_string();
    assert!(e.contains("cluster.members"), "{e}");
    let c = parse(&[
        "id=n2",
        "cluster.members=[]",
        "cluster.seeds=[\"127.0.0.1:7000\"]",
    ])
    .expect("a joining node needs only seeds");
    assert_eq!(c.cluster.seeds.len(), 1);
    let e = parse(&["cluster.members=[]"]).unwrap_err().to_string();
    assert!(e.contains("cluster.members"), "{e}");
    assert!(parse(&["nonsense"]).is_err());
}

#[test]
fn secret_is_required_valid_and_never_shown() {
    let c = parse(&[]).expect("base config");
    let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    assert_eq!(
        c.cluster.secret.as_ref().map(|s| s.to_hex()),
        Some(hex.into())
    );
    assert!(!format!("{c:?}").contains(&hex[8..]));
    let text = BASE.replace(&format!("secret = \"{hex}\""), "");
    let e = NodeConfig::parse(&text, &[], "node.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cluster.secret") && e.contains("openssl rand -hex 32"),
        "{e}"
    );
    let e = parse(&["cluster.secret=\"abcd\""]).unwrap_err().to_string();
    assert!(
        e.contains("cluster.secret") && e.contains("64 hex digits"),
        "{e}"
    );
    // Written back as the same hex digits.
    let again = toml::to_string(&c).expect("serialize");
    assert!(again.contains(hex));
}

#[test]
fn byte_budgets_follow_the_frame_and_are_checked() {
    let c = parse(&[]).expect("defaults");
    assert_eq!(c.limits.batch_bytes(), 4 << 20);
    let o = c.limits.object_bytes();
    assert!(o <= 32 << 20 && o > 31 << 20, "{o}");
    // A smaller frame shrinks the unset budgets with it.
    let c = parse(&[
        "limits.max_frame_bytes=4194304",
        "limits.max_value_bytes=1048576",
    ])
    .expect("small frame");
    assert_eq!(c.limits.batch_bytes(), 1 << 20);
    assert!(c.limits.object_bytes() + c.limits.frame_headroom() <= 4 << 20);
    assert!(c.limits.object_bytes() >= 1 << 20);
    let c = parse(&[
        "limits.max_batch_bytes=65536",
        "limits.max_object_bytes=9000000",
    ])
    .expect("explicit");
    assert_eq!(c.limits.batch_bytes(), 65536);
    assert_eq!(c.limits.object_bytes(), 9_000_000);
    for bad in [
        "limits.max_batch_bytes=0",
        "limits.max_batch_bytes=40000000",
    ] {
        let e = parse(&[bad]).unwrap_err().to_string();
        assert!(e.contains("limits.max_batch_bytes"), "{e}");
    }
    for bad in [
        "limits.max_object_bytes=1000",
        "limits.max_object_bytes=67108864",
    ] {
        let e = parse(&[bad]).unwrap_err().to_string();
        assert!(e.contains("limits.max_object_bytes"), "{e}");
    }
}

#[test]
fn cluster_id_is_required_and_says_how_to_fix_it() {
    let e = parse(&["cluster.id=\"\""]).unwrap_err().to_string();
    assert!(
        e.contains("cluster.id") && e.contains("another node"),
        "{e}"
    );
    let e = parse(&["cluster.id=\"a b\""]).unwrap_err().to_string();
    assert!(e.contains("cluster.id"), "{e}");
    assert_ne!(new_cluster_id(), new_cluster_id());
    assert!(check_cluster_id(&new_cluster_id()).is_ok());
}

#[test]
fn tombstone_grace_must_outlast_hint_expiry() {
    let e = parse(&["tombstones.grace=3s", "hinted_handoff.expiry=3s"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tombstones.grace") && e.contains("hinted_handoff.expiry"),
        "{e}"
    );
    let e = parse(&["tombstones.grace=1h"]).unwrap_err().to_string();
    assert!(e.contains("hinted_handoff.expiry"), "{e}");
    parse(&["tombstones.grace=3s", "hinted_handoff.expiry=2s"]).expect("grace > expiry");
}

#[test]
fn bucket_settings_take_conflicts_and_ttl_with_n_optional() {
    use chorus_core::version::Conflicts;
    let c = parse(&[
        "cluster.buckets.hot.conflicts=lww",
        "cluster.buckets.cache.ttl=90s",
        "cluster.buckets.small.n=1",
    ])
    .expect("bucket settings");
    assert_eq!(c.conflicts_for(b"hot"), Conflicts::Lww);
    assert_eq!(c.conflicts_for(b"cache"), Conflicts::Siblings);
    assert_eq!(c.conflicts_for(b"other"), Conflicts::Siblings);
    assert_eq!(c.n_for(b"hot"), 3, "n defaults to the cluster's");
    assert_eq!(c.n_for(b"small"), 1);
    assert_eq!(c.ttl_for(b"cache"), Some(Duration::from_secs(90)));
    assert_eq!(c.ttl_for(b"hot"), None);
    assert_eq!(c.cluster.buckets_n(), vec![("small".to_string(), 1)]);
    // The cluster-wide settings name the lww policy, and only buckets' explicit n.
    let s = crate::identity::settings(&c);
    assert!(s.contains("cluster.buckets.hot.conflicts=lww"), "{s}");
    assert!(s.contains("cluster.buckets.small.n=1"), "{s}");
    assert!(
        !s.contains("cache"),
        "a default ttl is not cluster-wide: {s}"
    );

    let e = parse(&["cluster.buckets.hot.conflicts=newest"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("newest") && e.contains("lww"), "{e}");
    let e = parse(&["cluster.buckets.hot.ttl=soon"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("soon"), "{e}");
    let e = parse(&["cluster.buckets.hot.ttl=0s"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.buckets.hot.ttl"), "{e}");
    let e = parse(&["cluster.buckets.hot.ttl=20years"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.buckets.hot.ttl"), "{e}");
    let e = parse(&["cluster.buckets.hot.colour=red"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("colour"), "unknown fields are refused: {e}");
}
