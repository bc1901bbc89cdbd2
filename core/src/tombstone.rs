//! When a tombstone may be purged. A key whose version is only tombstones is indexed with
//! the time it became so; once that is older than the grace period, the first replica of
//! the key's preference list purges it, but only when the partition isn't moving, every
//! replica is up, and every replica holds the identical tombstone. A replica that missed
//! the delete still holds the value; purging the others would let it bring the value back.
//!
//! A value written with a TTL counts as a tombstone once it has expired: the index ages it
//! from its expiry, and it is purged under the same rules.
//!
//! The grace period must outlast the hint expiry, so no older hint can arrive after a purge.
//! Time comes in as a [`Duration`] since an origin the caller chooses (the tombstone index
//! stores wall-clock milliseconds, so the node passes the time since the Unix epoch).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::merkle::Hash;
use crate::version::Object;

/// Tombstones indexed before this time are past the grace period at `now`.
pub fn cutoff(now: Duration, grace: Duration) -> Duration {
    now.saturating_sub(grace)
}

/// Why a tombstone isn't purged now. Each clears on its own (a transfer ends, a replica
/// comes back, repair makes the replicas equal), and a later pass tries again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("partition is moving")]
    Moving,
    #[error("replica {0} is down")]
    ReplicaDown(String),
    #[error("no longer a tombstone")]
    NotTombstone,
    #[error("{0} doesn't hold the same tombstone")]
    Differs(String),
}

/// Who decides a key's purge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Turn {
    /// This node, the first of the preference list: it must hear from these replicas.
    Mine { peers: Vec<String> },
    /// Another replica decides, so replicas don't race each other.
    Theirs,
}

/// Whether `me` decides the purge of a key with this preference list (the replicas as the
/// current ring has them), and whether it may try now.
pub fn whose_turn(
    me: &str,
    preference: &[String],
    moving: bool,
    is_up: impl Fn(&str) -> bool,
) -> Result<Turn, Blocked> {
    if moving {
        return Err(Blocked::Moving);
    }
    if preference.first().map(String::as_str) != Some(me) {
        return Ok(Turn::Theirs);
    }
    if let Some(down) = preference.iter().find(|p| !is_up(p)) {
        return Err(Blocked::ReplicaDown(down.clone()));
    }
    Ok(Turn::Mine {
        peers: preference.iter().filter(|p| *p != me).cloned().collect(),
    })
}

/// Collects the other replicas' versions of a key this node wants to purge; the purge may go
/// ahead once every one holds exactly this node's tombstone.
#[derive(Clone, Debug)]
pub struct Agreement {
    expected: Vec<u8>,
    digest: Hash,
    waiting: BTreeSet<String>,
}

impl Agreement {
    /// Starts from this node's version of the key and the peers [`whose_turn`] named.
    pub fn new(mine: &Object, peers: &[String]) -> Result<Agreement, Blocked> {
        Agreement::new_at(mine, peers, 0)
    }

    /// [`Agreement::new`] at wall-clock time `now_ms`: a version whose values have all
    /// expired by then counts as a tombstone (its index entry aged from its expiry).
    pub fn new_at(mine: &Object, peers: &[String], now_ms: u64) -> Result<Agreement, Blocked> {
        if !mine.is_dead_at(now_ms) {
            return Err(Blocked::NotTombstone);
        }
        Ok(Agreement {
            expected: mine.encode(),
            digest: mine.digest(),
            waiting: peers.iter().cloned().collect(),
        })
    }

    /// A peer's stored version (encoded, as replicas answer reads); `None` if it holds none.
    pub fn answer(&mut self, peer: &str, held: Option<&[u8]>) -> Result<(), Blocked> {
        if held != Some(self.expected.as_slice()) {
            return Err(Blocked::Differs(peer.to_string()));
        }
        self.waiting.remove(peer);
        Ok(())
    }

    /// The digest to purge (sent to every replica, which deletes the key only if its version
    /// still has it), once every peer has answered with the same tombstone.
    pub fn digest(&self) -> Option<Hash> {
        self.waiting.is_empty().then_some(self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::version::Actor;

    fn pref(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn tombstone() -> Object {
        let a = Actor::new("a", 1);
        let mut o = Object::new();
        o.update(&Context::default(), &a, 0, Some(b"v".to_vec()));
        let ctx = o.context();
        o.update(&ctx, &a, 1, None);
        o
    }

    #[test]
    fn the_grace_period_is_counted_back_from_now() {
        let h = Duration::from_secs(3600);
        assert_eq!(cutoff(5 * h, 4 * h), h);
        assert_eq!(
            cutoff(h, 4 * h),
            Duration::ZERO,
            "nothing is old enough yet"
        );
    }

    #[test]
    fn only_the_first_replica_decides_and_only_with_every_replica_up() {
        let p = pref(&["a", "b", "c"]);
        let all_up = |_: &str| true;
        assert_eq!(
            whose_turn("a", &p, false, all_up),
            Ok(Turn::Mine {
                peers: pref(&["b", "c"])
            })
        );
        assert_eq!(whose_turn("b", &p, false, all_up), Ok(Turn::Theirs));
        assert_eq!(whose_turn("z", &p, false, all_up), Ok(Turn::Theirs));
        assert_eq!(
            whose_turn("a", &p, false, |id| id != "c"),
            Err(Blocked::ReplicaDown("c".into()))
        );
        assert_eq!(whose_turn("a", &p, true, all_up), Err(Blocked::Moving));
    }

    #[test]
    fn a_purge_needs_the_identical_tombstone_on_every_replica() {
        let t = tombstone();
        let peers = pref(&["b", "c"]);
        let mut agree = Agreement::new(&t, &peers).expect("a tombstone");
        assert_eq!(agree.digest(), None, "nobody has answered");
        agree.answer("b", Some(&t.encode())).expect("same");
        assert_eq!(agree.digest(), None, "c hasn't answered");
        agree.answer("c", Some(&t.encode())).expect("same");
        assert_eq!(agree.digest(), Some(t.digest()));

        // c missed the delete: it still holds the value, and blocks the purge.
        let mut live = t.clone();
        live.update(
            &Context::default(),
            &Actor::new("c", 1),
            0,
            Some(b"x".to_vec()),
        );
        let mut agree = Agreement::new(&t, &peers).expect("a tombstone");
        agree.answer("b", Some(&t.encode())).expect("same");
        assert_eq!(
            agree.answer("c", Some(&live.encode())),
            Err(Blocked::Differs("c".into()))
        );
        assert_eq!(agree.digest(), None);
        // A replica holding nothing blocks it too.
        let mut agree = Agreement::new(&t, &peers).expect("a tombstone");
        assert!(agree.answer("b", None).is_err());
        // A live value is never a candidate.
        assert_eq!(
            Agreement::new(&live, &peers).err(),
            Some(Blocked::NotTombstone)
        );
        // An expired value is a tombstone once expired, not before.
        let mut ttl = Object::new();
        ttl.update_with(
            &Context::default(),
            &Actor::new("a", 1),
            0,
            Some(b"v".to_vec()),
            crate::version::WriteMeta {
                expires_ms: Some(1000),
                ts: None,
            },
        );
        assert_eq!(
            Agreement::new_at(&ttl, &peers, 999).err(),
            Some(Blocked::NotTombstone)
        );
        let mut agree = Agreement::new_at(&ttl, &peers, 1000).expect("expired");
        agree.answer("b", Some(&ttl.encode())).expect("same");
        agree.answer("c", Some(&ttl.encode())).expect("same");
        assert_eq!(agree.digest(), Some(ttl.digest()));
        // A single replica (N = 1) agrees with itself.
        assert_eq!(
            Agreement::new(&t, &[]).expect("a tombstone").digest(),
            Some(t.digest())
        );
    }
}
