//! Partition placement for Chorus: which nodes hold which keys.
//!
//! Pure computation: no I/O, no clocks, no randomness, no async. Every node
//! that holds the same [`Ring`] routes every key the same way, and every node
//! that computes the next ring from the same inputs gets the same result.
//!
//! # The scheme
//!
//! * A key belongs to one of `P` **partitions** (`P` a power of two, default
//!   [`DEFAULT_PARTITIONS`]): [`partition_for`] hashes `(bucket, key)` with
//!   BLAKE3 and keeps the top `log2(P)` bits. The partition count never
//!   changes for a cluster, so key→partition is fixed forever and only
//!   partition→nodes changes when membership changes.
//! * Each partition has an **order**: every member exactly once. A bucket with
//!   replication factor `n` stores a key on the first `n` nodes of its
//!   partition's order (the *preference list*); the rest are the *fallbacks*
//!   used, in order, for sloppy quorum and hinted handoff.
//! * The first `k = min(replicas, members)` positions are the **balanced
//!   slots**. They are chosen explicitly (not by pure hashing) so that load is
//!   even and rebalancing moves little data. Positions after `k` are ordered
//!   by a rendezvous (highest-random-weight) score, so different partitions
//!   spread their fallbacks over different nodes.
//!
//! # Guarantees (property-tested)
//!
//! With `m` members, `k = min(replicas, m)` and `P` partitions:
//!
//! 1. **Distinctness**: every order holds every member exactly once.
//! 2. **Determinism**: [`Ring::new`] depends only on the *set* of members;
//!    [`Ring::rebalance`] only on the previous ring and the set of members.
//! 3. **Balance**: when there are no zones, or all zones have the same number
//!    of members, every member is among the first `k` of `⌊Pk/m⌋` or `⌈Pk/m⌉`
//!    partitions and is first (the coordinator) in `⌊P/m⌋` or `⌈P/m⌉`. In
//!    general, members of one zone hold counts within one of each other, and
//!    a member holding `c` of the first-`k` slots is first in `⌊c/k⌋` or
//!    `⌈c/k⌉` partitions. Prefixes in between (buckets with `1 < N < k`) are
//!    aimed at the same one-slot tolerance but only guaranteed within two.
//! 4. **Zones**: a member without a zone is a zone of its own. With `z`
//!    zones, each partition's first `k` contain every zone when `z ≤ k`, and
//!    otherwise `k` distinct zones; so they span `min(k, z)` zones. No zone
//!    holds more of them than the most even split the zone sizes allow (the
//!    smallest cap `t` with `Σ min(size, t) ≥ k`). Zone spread wins over
//!    balance: shares are water-filled, so with unequal zones the members of
//!    a small zone carry more.
//! 5. **Minimal movement**: [`Ring::rebalance`] keeps every balanced slot
//!    that the new shares and zone rules allow, and among the changes it needs
//!    it prefers those that create no new replica (re-routing this round's
//!    placements, restoring previous ones). Without zones, adding a member
//!    moves exactly its share (`⌊Pk/(m+1)⌋` or `⌈Pk/(m+1)⌉` slots, all to it),
//!    and removing one re-homes its slots plus rarely one or two more. With
//!    zones a change can force more: every partition must keep obeying rule 4
//!    (when the zone count reaches `k`, every partition needs every zone), so
//!    the tested bound is the sum of what can force a move: each member's
//!    count increase, the holes that departures or the new zone rule force
//!    partitions to refill, the slots that change zone, plus `k`. (In random
//!    trials about nine in ten zoned changes move no more than the larger of
//!    the first two terms, which are both lower bounds.)
//!    Newcomers take the *position* of the member they
//!    replace, so shorter preference lists (`N < k`) also move close to the
//!    minimum.
//! 6. **Fallback spread**: positions after `k` are sorted by
//!    [`rendezvous_score`], a per-partition pseudo-random ranking.
//!
//! # How
//!
//! Per-member *quotas* (how many of the `P·k` balanced slots each member
//! holds) are fixed first by water-filling: equal shares, clamped so every
//! zone can meet its per-partition bounds; rounding favours members that
//! hold more slots now, so nobody gives up a slot it would get back. Then
//! slots are assigned to meet the quotas exactly: a fresh ring fills
//! positions rank by rank with each partition's highest-scoring eligible
//! member (rendezvous hashing with capacities, so co-replica sets look
//! random and a failed node's load spreads over all others); a rebalanced
//! ring starts from the previous assignment with departed members' slots
//! empty. Whatever remains (empty slots, zone violations, members over or
//! under quota) is repaired with augmenting paths. This is a flow problem
//! whose fractional solution ("every partition holds `quota/P` of every
//! member") always exists, so the repair always finishes. Finally each
//! partition's `k` members are ordered position by position with the same
//! technique, keeping previous positions where possible.
//!
//! # Limits and cost
//!
//! Up to [`MAX_PARTITIONS`] partitions and [`MAX_MEMBERS`] members. A ring
//! stores `P × m` two-byte indices. Building or rebalancing takes ~0.1 ms
//! for 256 partitions and a dozen nodes, ~50 ms for 65536
//! partitions and a dozen nodes, and ~3 s for the extreme of 65536
//! partitions and 1024 nodes (release build).
//!
//! Placement is deterministic but not frozen across versions of this crate:
//! nodes that compute the next ring independently must run the same version
//! (a test pins a digest of a reference ring). Rings are serializable, and
//! deserialization checks their structure, so one node can compute a ring
//! and distribute it instead.
//!
//! # Example
//!
//! ```
//! use chorus_ring::{Member, Ring, DEFAULT_PARTITIONS};
//!
//! let members: Vec<Member> = ["a", "b", "c"].into_iter().map(Member::new).collect();
//! let ring = Ring::new(DEFAULT_PARTITIONS, 3, members.clone())?;
//!
//! let p = ring.partition_of(b"users", b"alice");
//! let replicas = ring.preference_list(p, 2); // a bucket with N = 2
//! assert_eq!(replicas.len(), 2);
//! assert_eq!(ring.order(p).len(), 3);
//!
//! // Every node is among the first 3 of all 256 partitions with 3 nodes and 3 replicas.
//! assert!(ring.shares(3).iter().all(|(_, count)| *count == 256));
//!
//! // Adding a fourth node moves about a quarter of the replica slots, all to "d".
//! let mut more = members;
//! more.push(Member::new("d"));
//! let next = ring.rebalance(more)?;
//! assert_eq!(next.version(), 2);
//! let moves = ring.diff(&next, 3);
//! let gained: usize = moves.iter().map(|m| m.gained.len()).sum();
//! assert_eq!(gained, 192); // 256 * 3 / 4
//! assert!(moves.iter().all(|m| m.gained == ["d"]));
//! # Ok::<(), chorus_ring::RingError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

/// Partition count used when a cluster does not configure one.
pub const DEFAULT_PARTITIONS: u32 = 256;
/// Largest supported partition count.
pub const MAX_PARTITIONS: u32 = 65_536;
/// Largest supported member count. Rings store `partitions × members` indices,
/// so this bounds memory (about 128 MiB at the extreme).
pub const MAX_MEMBERS: usize = 1024;

/// Marks an unassigned balanced slot during placement (never stored in a ring).
const NONE: u16 = u16::MAX;

/// A cluster node as the ring sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Unique, non-empty node id.
    pub id: String,
    /// Failure domain (rack, availability zone, …). `None` means the node is a
    /// failure domain of its own.
    pub zone: Option<String>,
}

impl Member {
    /// A member without a zone.
    pub fn new(id: impl Into<String>) -> Member {
        Member {
            id: id.into(),
            zone: None,
        }
    }

    /// A member in `zone`.
    pub fn with_zone(id: impl Into<String>, zone: impl Into<String>) -> Member {
        Member {
            id: id.into(),
            zone: Some(zone.into()),
        }
    }
}

/// Why a ring could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// The partition count was zero.
    #[error("partition count must be at least 1")]
    ZeroPartitions,
    /// The partition count was not a power of two.
    #[error("partition count {0} is not a power of two")]
    PartitionsNotPowerOfTwo(u32),
    /// The partition count exceeded [`MAX_PARTITIONS`].
    #[error("partition count {count} exceeds the maximum of {max}")]
    TooManyPartitions {
        /// Requested count.
        count: u32,
        /// [`MAX_PARTITIONS`].
        max: u32,
    },
    /// `replicas` was zero.
    #[error("replicas must be at least 1")]
    ZeroReplicas,
    /// The member list was empty.
    #[error("a ring needs at least one member")]
    NoMembers,
    /// The member list exceeded [`MAX_MEMBERS`].
    #[error("{count} members exceed the maximum of {max}")]
    TooManyMembers {
        /// Number of members given.
        count: usize,
        /// [`MAX_MEMBERS`].
        max: usize,
    },
    /// A member had an empty id.
    #[error("member id must not be empty")]
    EmptyMemberId,
    /// Two members had the same id.
    #[error("duplicate member id {0:?}")]
    DuplicateMember(String),
    /// Deserialized ring data was structurally invalid.
    #[error("invalid ring data: {0}")]
    Corrupt(String),
    /// Placement did not reach its guarantees. This indicates a bug in this
    /// crate; it is reported rather than handing out a ring that breaks them.
    #[error("internal placement error: {0}")]
    Placement(String),
}

/// What changes for one partition between two rings (see [`Ring::diff`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The partition.
    pub partition: u32,
    /// Nodes that become replicas, in the new ring's order.
    pub gained: Vec<String>,
    /// Nodes that stop being replicas, in the old ring's order.
    pub lost: Vec<String>,
}

/// Maps `(bucket, key)` to a partition in `0..partition_count`.
///
/// BLAKE3 over `u32-LE(len(bucket)) ‖ bucket ‖ key` (the length prefix makes
/// the encoding unambiguous; lengths beyond `u32::MAX` saturate). The first 8
/// bytes of the digest are read as a big-endian `u64` and its top
/// `log2(partition_count)` bits are the partition, so a key's partition under
/// `2P` partitions is always one of the two halves of its partition under `P`.
///
/// `partition_count` should be a power of two; other values are rounded down
/// to one (and `0` is treated as `1`), so the result is always in range.
pub fn partition_for(partition_count: u32, bucket: &[u8], key: &[u8]) -> u32 {
    let bits = if partition_count <= 1 {
        0
    } else {
        31 - partition_count.leading_zeros()
    };
    if bits == 0 {
        return 0;
    }
    let len = u32::try_from(bucket.len()).unwrap_or(u32::MAX);
    let mut h = blake3::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(bucket);
    h.update(key);
    let digest = h.finalize();
    let b = digest.as_bytes();
    let top = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    (top >> (64 - bits)) as u32
}

/// The rendezvous (highest-random-weight) score of `node` for `partition`.
///
/// Fallbacks are ordered by descending score, and placement breaks ties with
/// it, so that each partition has its own pseudo-random preference among
/// nodes. The node id is hashed once with BLAKE3; the per-partition score is a
/// 64-bit mix of that hash and the partition number (cheap enough to evaluate
/// `P × m` times per placement).
pub fn rendezvous_score(partition: u32, node: &str) -> u64 {
    mix(member_hash(node), partition)
}

fn member_hash(id: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"chorus-ring/member\0");
    h.update(id.as_bytes());
    let digest = h.finalize();
    let b = digest.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// splitmix64 finalizer over the member hash and partition.
fn mix(member: u64, partition: u32) -> u64 {
    let mut x = member
        ^ u64::from(partition)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Placement of every partition on the cluster's members; see the crate docs.
///
/// Partition numbers passed to accessors must be below
/// [`partition_count`](Ring::partition_count); out-of-range numbers yield
/// empty results (rather than being reduced modulo the count) so that a key
/// hashed for a different partition count is noticed instead of silently
/// routed to the wrong replicas.
///
/// Deserialization checks the structure (sizes, sorted unique members, every
/// order a permutation), so accessors never panic even on hostile input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingData")]
pub struct Ring {
    version: u64,
    partition_count: u32,
    replicas: usize,
    /// Sorted by id; indices into this list are what `orders` stores.
    members: Vec<Member>,
    /// `partition_count` rows of `members.len()` member indices: the full
    /// order of each partition.
    orders: Vec<u16>,
}

/// Unvalidated wire form of [`Ring`]; same fields in the same order.
#[derive(Deserialize)]
struct RingData {
    version: u64,
    partition_count: u32,
    replicas: usize,
    members: Vec<Member>,
    orders: Vec<u16>,
}

impl TryFrom<RingData> for Ring {
    type Error = RingError;

    fn try_from(d: RingData) -> Result<Ring, RingError> {
        let ring = Ring {
            version: d.version,
            partition_count: d.partition_count,
            replicas: d.replicas,
            members: d.members,
            orders: d.orders,
        };
        ring.check_structure().map_err(RingError::Corrupt)?;
        Ok(ring)
    }
}

fn check_partition_count(partition_count: u32) -> Result<(), RingError> {
    if partition_count == 0 {
        Err(RingError::ZeroPartitions)
    } else if !partition_count.is_power_of_two() {
        Err(RingError::PartitionsNotPowerOfTwo(partition_count))
    } else if partition_count > MAX_PARTITIONS {
        Err(RingError::TooManyPartitions {
            count: partition_count,
            max: MAX_PARTITIONS,
        })
    } else {
        Ok(())
    }
}

/// Sorts by id and rejects empty, duplicate or too many members.
fn normalize_members(mut members: Vec<Member>) -> Result<Vec<Member>, RingError> {
    if members.is_empty() {
        return Err(RingError::NoMembers);
    }
    if members.len() > MAX_MEMBERS {
        return Err(RingError::TooManyMembers {
            count: members.len(),
            max: MAX_MEMBERS,
        });
    }
    if members.iter().any(|m| m.id.is_empty()) {
        return Err(RingError::EmptyMemberId);
    }
    members.sort();
    if let Some(w) = members.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(RingError::DuplicateMember(w[0].id.clone()));
    }
    Ok(members)
}

impl Ring {
    /// A fresh balanced ring. Depends only on the set of members (not their
    /// order). `replicas` is the number of balanced slots per partition, i.e.
    /// the largest replication factor any bucket may use. Version 1.
    pub fn new(
        partition_count: u32,
        replicas: usize,
        members: Vec<Member>,
    ) -> Result<Ring, RingError> {
        check_partition_count(partition_count)?;
        if replicas == 0 {
            return Err(RingError::ZeroReplicas);
        }
        let members = normalize_members(members)?;
        let orders = place(partition_count, replicas, &members, None)?;
        Ring::checked(Ring {
            version: 1,
            partition_count,
            replicas,
            members,
            orders,
        })
    }

    /// The next ring for a new member list, keeping as many balanced slots
    /// where they are as the balance and zone rules allow. A member whose id
    /// is unchanged is the same member even if its zone changed. The partition
    /// count and `replicas` carry over; version is `self.version() + 1`
    /// (saturating). Depends only on `self` and the set of members.
    pub fn rebalance(&self, members: Vec<Member>) -> Result<Ring, RingError> {
        check_partition_count(self.partition_count)?;
        if self.replicas == 0 {
            return Err(RingError::ZeroReplicas);
        }
        let members = normalize_members(members)?;
        let orders = place(self.partition_count, self.replicas, &members, Some(self))?;
        Ring::checked(Ring {
            version: self.version.saturating_add(1),
            partition_count: self.partition_count,
            replicas: self.replicas,
            members,
            orders,
        })
    }

    /// Refuses to hand out a ring that breaks a safety property (replicas
    /// on distinct members spread over zones); balance is a quality property,
    /// asserted in debug builds and by the tests.
    fn checked(ring: Ring) -> Result<Ring, RingError> {
        ring.verify(false).map_err(RingError::Placement)?;
        debug_assert_eq!(ring.check_invariants(), Ok(()));
        Ok(ring)
    }

    /// Monotonic ring version: 1 for [`Ring::new`], +1 per [`Ring::rebalance`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of partitions (a power of two).
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// Configured balanced slots per partition (largest usable N).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// `min(replicas, members)`: how many leading positions are balanced.
    pub fn balanced_slots(&self) -> usize {
        self.replicas.min(self.members.len())
    }

    /// Members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if any.
    pub fn member(&self, node: &str) -> Option<&Member> {
        self.index_of(node).map(|i| &self.members[i])
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &str) -> bool {
        self.index_of(node).is_some()
    }

    /// The partition of `(bucket, key)`; see [`partition_for`].
    pub fn partition_of(&self, bucket: &[u8], key: &[u8]) -> u32 {
        partition_for(self.partition_count, bucket, key)
    }

    /// The first `min(n, members)` nodes of the partition's order: the
    /// replicas for a bucket with replication factor `n`. Empty for an
    /// out-of-range partition.
    pub fn preference_list(&self, partition: u32, n: usize) -> Vec<&str> {
        let row = self.row(partition);
        self.names(&row[..n.min(row.len())])
    }

    /// The nodes after the first `n`, in order: where writes go, in turn,
    /// when preference-list nodes are unreachable. Empty for an out-of-range
    /// partition.
    pub fn fallbacks(&self, partition: u32, n: usize) -> Vec<&str> {
        let row = self.row(partition);
        self.names(&row[n.min(row.len())..])
    }

    /// The partition's full order (preference list followed by fallbacks).
    /// Empty for an out-of-range partition.
    pub fn order(&self, partition: u32) -> Vec<&str> {
        self.names(self.row(partition))
    }

    /// Partitions, ascending, in which `node` is among the first `n`.
    pub fn partitions_of(&self, node: &str, n: usize) -> Vec<u32> {
        let Some(v) = self.index_of(node) else {
            return Vec::new();
        };
        let n = n.min(self.members.len());
        (0..self.partition_count)
            .filter(|&p| self.row(p)[..n].contains(&(v as u16)))
            .collect()
    }

    /// For each member (sorted by id), the number of partitions in which it is
    /// among the first `n`.
    pub fn shares(&self, n: usize) -> Vec<(String, usize)> {
        let mut counts = vec![0usize; self.members.len()];
        let n = n.min(self.members.len());
        for p in 0..self.partition_count {
            for &v in &self.row(p)[..n] {
                counts[v as usize] += 1;
            }
        }
        self.members
            .iter()
            .zip(counts)
            .map(|(m, c)| (m.id.clone(), c))
            .collect()
    }

    /// What moves from `self` to `next` for replication factor `n`: one entry,
    /// in partition order, per partition whose first-`n` *set* differs. A
    /// change of position within the first `n` is not a move. Partitions
    /// present in only one ring (different partition counts) are compared
    /// against an empty set.
    pub fn diff(&self, next: &Ring, n: usize) -> Vec<Move> {
        let parts = self.partition_count.max(next.partition_count);
        let mut moves = Vec::new();
        for p in 0..parts {
            let before = self.preference_list(p, n);
            let after = next.preference_list(p, n);
            let gained: Vec<String> = after
                .iter()
                .filter(|id| !before.contains(id))
                .map(|id| id.to_string())
                .collect();
            let lost: Vec<String> = before
                .iter()
                .filter(|id| !after.contains(id))
                .map(|id| id.to_string())
                .collect();
            if !gained.is_empty() || !lost.is_empty() {
                moves.push(Move {
                    partition: p,
                    gained,
                    lost,
                });
            }
        }
        moves
    }

    fn index_of(&self, node: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(node))
            .ok()
    }

    /// The order of `partition` as member indices; empty when out of range.
    fn row(&self, partition: u32) -> &[u16] {
        if partition >= self.partition_count {
            return &[];
        }
        let m = self.members.len();
        let p = partition as usize;
        self.orders.get(p * m..(p + 1) * m).unwrap_or(&[])
    }

    fn names<'a>(&'a self, idx: &[u16]) -> Vec<&'a str> {
        idx.iter()
            .filter_map(|&i| self.members.get(i as usize))
            .map(|m| m.id.as_str())
            .collect()
    }

    /// Structural validity: what accessors rely on to never panic.
    fn check_structure(&self) -> Result<(), String> {
        check_partition_count(self.partition_count).map_err(|e| e.to_string())?;
        if self.replicas == 0 {
            return Err("replicas is zero".into());
        }
        let m = self.members.len();
        if m == 0 || m > MAX_MEMBERS {
            return Err(format!("member count {m} out of range"));
        }
        if self.members.iter().any(|x| x.id.is_empty()) {
            return Err("empty member id".into());
        }
        if self.members.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err("members not sorted by unique id".into());
        }
        if self.orders.len() != self.partition_count as usize * m {
            return Err(format!(
                "orders hold {} entries, expected {}",
                self.orders.len(),
                self.partition_count as usize * m
            ));
        }
        let mut seen = vec![u32::MAX; m];
        for (p, row) in self.orders.chunks(m).enumerate() {
            for &v in row {
                match seen.get_mut(v as usize) {
                    Some(s) if *s != p as u32 => *s = p as u32,
                    _ => return Err(format!("partition {p} is not a permutation of the members")),
                }
            }
        }
        Ok(())
    }

    /// Checks every guarantee this crate's placement makes (not only
    /// structure), returning a description of the first violation:
    ///
    /// * every order is a permutation of the members;
    /// * per partition, each zone's count among the first `k` lies in that
    ///   zone's bounds: at least 1 when there are at most `k` zones, and at
    ///   most `min(zone size, t)` where `t` is the smallest cap under which
    ///   `k` slots can still be filled (so `1` when there are `≥ k` zones);
    /// * members of the same zone hold first-`k` counts within one of each
    ///   other, and when all zones are the same size every member holds
    ///   `⌊Pk/m⌋` or `⌈Pk/m⌉`;
    /// * each member is first in `⌊c/k⌋..=⌈c/k⌉` partitions, `c` being its
    ///   first-`k` count;
    /// * positions after `k` are in descending [`rendezvous_score`] order.
    ///
    /// [`Ring::new`] and [`Ring::rebalance`] return an error rather than a
    /// ring that breaks the first two, and debug-assert the rest. A ring
    /// deserialized from elsewhere is only guaranteed to be structurally
    /// valid.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.verify(true)
    }

    /// Structure and zone bounds; with `full`, also balance, coordinator
    /// spread and fallback order.
    fn verify(&self, full: bool) -> Result<(), String> {
        self.check_structure()?;
        let m = self.members.len();
        let k = self.balanced_slots();
        let parts = self.partition_count as usize;
        let lay = Layout::new(&self.members, k);
        let nz = lay.zones.len();
        let mut count = vec![0u64; m];
        let mut first = vec![0u64; m];
        let mut zc = vec![0u32; nz];
        let hashes: Vec<u64> = if full {
            self.members.iter().map(|x| member_hash(&x.id)).collect()
        } else {
            Vec::new()
        };
        for p in 0..self.partition_count {
            let row = self.row(p);
            zc.iter_mut().for_each(|c| *c = 0);
            for &v in &row[..k] {
                count[v as usize] += 1;
                zc[lay.zone_of[v as usize]] += 1;
            }
            first[row[0] as usize] += 1;
            for (z, &c) in zc.iter().enumerate() {
                if c < lay.lo[z] || c > lay.hi[z] {
                    return Err(format!(
                        "partition {p}: zone #{z} holds {c} of the first {k}, allowed {}..={}",
                        lay.lo[z], lay.hi[z]
                    ));
                }
            }
            let score = |v: u16| mix(hashes[v as usize], p);
            if full && row[k..].windows(2).any(|w| score(w[0]) < score(w[1])) {
                return Err(format!("partition {p}: fallbacks not in rendezvous order"));
            }
        }
        if !full {
            return Ok(());
        }
        for zm in &lay.zones {
            let lo = zm.iter().map(|&v| count[v]).min().unwrap_or(0);
            let hi = zm.iter().map(|&v| count[v]).max().unwrap_or(0);
            if hi > lo + 1 {
                return Err(format!(
                    "zone of {:?}: member counts range {lo}..={hi}",
                    self.members[zm[0]].id
                ));
            }
        }
        if lay.zones.iter().all(|zm| zm.len() == lay.zones[0].len()) {
            let total = (parts * k) as u64;
            let (lo, hi) = (total / m as u64, total.div_ceil(m as u64));
            if let Some(v) = (0..m).find(|&v| count[v] < lo || count[v] > hi) {
                return Err(format!(
                    "{:?} holds {} slots, expected {lo}..={hi}",
                    self.members[v].id, count[v]
                ));
            }
        }
        let k64 = k as u64;
        if let Some(v) =
            (0..m).find(|&v| first[v] < count[v] / k64 || first[v] > count[v].div_ceil(k64))
        {
            return Err(format!(
                "{:?} is first in {} partitions but holds {} slots (k = {k})",
                self.members[v].id, first[v], count[v]
            ));
        }
        Ok(())
    }
}

/// Zones and their per-partition bounds, derived from the members alone.
struct Layout {
    zone_of: Vec<usize>,
    /// Member indices per zone (ascending); zones sorted by zone key.
    zones: Vec<Vec<usize>>,
    /// Minimum members of the zone among a partition's first `k`.
    lo: Vec<u32>,
    /// Maximum members of the zone among a partition's first `k`.
    hi: Vec<u32>,
}

impl Layout {
    fn new(members: &[Member], k: usize) -> Layout {
        // A zoneless member is its own failure domain; the enum keeps a node
        // id from colliding with a zone name.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Key<'a> {
            Named(&'a str),
            Solo(&'a str),
        }
        let mut map: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, m) in members.iter().enumerate() {
            let key = match &m.zone {
                Some(z) => Key::Named(z),
                None => Key::Solo(&m.id),
            };
            map.entry(key).or_default().push(i);
        }
        let zones: Vec<Vec<usize>> = map.into_values().collect();
        let mut zone_of = vec![0; members.len()];
        for (z, zm) in zones.iter().enumerate() {
            for &v in zm {
                zone_of[v] = z;
            }
        }
        // Every zone must appear when there are no more zones than slots.
        let lo = u32::from(zones.len() <= k);
        // The tightest per-zone cap that still lets k slots be filled: this
        // spreads each partition over zones as evenly as zone sizes allow.
        let mut t = 1;
        while t < k && zones.iter().map(|zm| zm.len().min(t)).sum::<usize>() < k {
            t += 1;
        }
        Layout {
            zone_of,
            lo: vec![lo; zones.len()],
            hi: zones.iter().map(|zm| zm.len().min(t) as u32).collect(),
            zones,
        }
    }
}

/// Slot quotas: how many of the `parts·k` balanced slots each member holds.
///
/// Water-filling: every member gets the same share `λ`, except that a zone's
/// total is clamped to `[parts·lo, parts·hi]` (what its per-partition bounds
/// permit). Integer rounding hands the leftover units, one per member, to the
/// members ranked first by `rank` (for a rebalance: those holding the most
/// now, so nobody gives up a slot it would only get back).
fn quotas(parts: u64, k: u64, lay: &Layout, rank: &[usize]) -> Vec<i64> {
    let total = parts * k;
    let bounds: Vec<(u64, u64, u64)> = lay
        .zones
        .iter()
        .enumerate()
        .map(|(z, zm)| {
            (
                zm.len() as u64,
                parts * u64::from(lay.lo[z]),
                parts * u64::from(lay.hi[z]),
            )
        })
        .collect();
    let fill = |lam: u64| -> u64 {
        bounds
            .iter()
            .map(|&(s, lo, hi)| (s * lam).clamp(lo, hi))
            .sum()
    };
    // Largest λ with fill(λ) ≤ total; fill(0) = Σ lo ≤ total by construction.
    let (mut a, mut b) = (0u64, parts);
    while a < b {
        let mid = (a + b).div_ceil(2);
        if fill(mid) <= total {
            a = mid;
        } else {
            b = mid - 1;
        }
    }
    let lam = a;
    let mut q = vec![0i64; rank.len()];
    let mut base_sum = 0;
    let mut extra: Vec<usize> = Vec::new();
    for (z, zm) in lay.zones.iter().enumerate() {
        let (s, lo, hi) = bounds[z];
        let base = (s * lam).clamp(lo, hi);
        let room = if lam < parts {
            (s * (lam + 1)).clamp(lo, hi) - base
        } else {
            0
        };
        base_sum += base;
        let mut ms = zm.clone();
        ms.sort_by_key(|&v| rank[v]);
        let ex = (base % s) as usize;
        for (i, &v) in ms.iter().enumerate() {
            q[v] = (base / s) as i64 + i64::from(i < ex);
        }
        extra.extend(ms.iter().skip(ex).take(room as usize));
    }
    extra.sort_by_key(|&v| rank[v]);
    for &v in extra.iter().take(total.saturating_sub(base_sum) as usize) {
        q[v] += 1;
    }
    q
}

/// Computes all partition orders (flattened) for `members` (sorted, valid).
fn place(
    partition_count: u32,
    replicas: usize,
    members: &[Member],
    prev: Option<&Ring>,
) -> Result<Vec<u16>, RingError> {
    let mut e = Engine::new(partition_count as usize, replicas, members, prev);
    if prev.is_none() {
        e.greedy_fill();
    }
    e.enforce_row_bounds()?;
    e.balance_zones()?;
    e.balance_within_zones()?;
    let sets = e.order_sets()?;
    Ok(e.full_orders(&sets))
}

/// One move of an augmenting path: in partition `.0`, a slot of zone `.1`
/// goes to zone `.2`.
type Step = (usize, usize, usize);

/// Mutable placement state plus the fixed problem description.
struct Engine {
    parts: usize,
    m: usize,
    k: usize,
    hash: Vec<u64>,
    lay: Layout,
    /// Index of the pseudo-zone of empty slots (one past the real zones).
    empty: usize,
    /// Per-partition bounds per zone, including the empty pseudo-zone.
    lo: Vec<u32>,
    hi: Vec<u32>,
    /// Target slot total per zone (0 for the empty pseudo-zone).
    target: Vec<i64>,
    quota: Vec<i64>,
    /// `p * m + v` → position of member `v` in the previous ring's order of
    /// partition `p` (`NONE` if it was not a member); empty for a fresh ring.
    prev_pos: Vec<u16>,
    prev_k: usize,
    /// `p * k + i`: the balanced slots (unordered while balancing).
    slots: Vec<u16>,
    /// `p * (zones + 1) + z`: members of zone `z` in partition `p`'s slots.
    x: Vec<u32>,
    col: Vec<i64>,
    cnt: Vec<i64>,
}

impl Engine {
    fn new(parts: usize, replicas: usize, members: &[Member], prev: Option<&Ring>) -> Engine {
        let m = members.len();
        let k = replicas.min(m);
        let lay = Layout::new(members, k);
        let empty = lay.zones.len();
        let mut lo = lay.lo.clone();
        let mut hi = lay.hi.clone();
        lo.push(0);
        hi.push(k as u32);
        let hash: Vec<u64> = members.iter().map(|x| member_hash(&x.id)).collect();

        let mut slots = vec![NONE; parts * k];
        let mut prev_pos = Vec::new();
        let mut prev_k = 0;
        if let Some(prev) = prev {
            let old_to_new: Vec<Option<u16>> = prev
                .members
                .iter()
                .map(|o| {
                    members
                        .binary_search_by(|x| x.id.cmp(&o.id))
                        .ok()
                        .map(|i| i as u16)
                })
                .collect();
            prev_k = prev.balanced_slots();
            prev_pos = vec![NONE; parts * m];
            let mut overflow = Vec::new();
            for p in 0..parts.min(prev.partition_count as usize) {
                overflow.clear();
                for (pos, &old) in prev.row(p as u32).iter().enumerate() {
                    let Some(Some(v)) = old_to_new.get(old as usize) else {
                        continue;
                    };
                    prev_pos[p * m + *v as usize] = pos as u16;
                    // Survivors keep their balanced slots *and positions*; a
                    // departed member's slot starts out empty and whoever
                    // fills it inherits its position, so shorter preference
                    // lists move as little as the full one.
                    if pos < prev_k.min(k) {
                        slots[p * k + pos] = *v;
                    } else if pos < prev_k {
                        overflow.push(*v);
                    }
                }
                // Only when k shrank (fewer members than replicas): all
                // survivors still fit, in the empty slots.
                for &v in &overflow {
                    if let Some(i) = (0..k).find(|&i| slots[p * k + i] == NONE) {
                        slots[p * k + i] = v;
                    }
                }
            }
        }

        let mut e = Engine {
            parts,
            m,
            k,
            hash,
            empty,
            lo,
            hi,
            target: Vec::new(),
            quota: Vec::new(),
            prev_pos,
            prev_k,
            slots,
            x: Vec::new(),
            col: Vec::new(),
            cnt: Vec::new(),
            lay,
        };
        e.recount();
        // Rank members for rounding: most slots held now first, then by hash
        // (so a fresh ring's rounding is spread pseudo-randomly, not by id).
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by_key(|&v| (Reverse(e.cnt[v]), e.hash[v], v));
        let mut rank = vec![0; m];
        for (r, &v) in order.iter().enumerate() {
            rank[v] = r;
        }
        e.quota = quotas(parts as u64, k as u64, &e.lay, &rank);
        e.target = e
            .lay
            .zones
            .iter()
            .map(|zm| zm.iter().map(|&v| e.quota[v]).sum())
            .collect();
        e.target.push(0);
        e
    }

    fn recount(&mut self) {
        let zn = self.empty + 1;
        self.x = vec![0; self.parts * zn];
        self.col = vec![0; zn];
        self.cnt = vec![0; self.m];
        for p in 0..self.parts {
            for i in 0..self.k {
                let s = self.slots[p * self.k + i];
                let z = self.zone(s);
                self.x[p * zn + z] += 1;
                self.col[z] += 1;
                if s != NONE {
                    self.cnt[s as usize] += 1;
                }
            }
        }
    }

    fn zone(&self, s: u16) -> usize {
        if s == NONE {
            self.empty
        } else {
            self.lay.zone_of[s as usize]
        }
    }

    fn xz(&self, p: usize, z: usize) -> u32 {
        self.x[p * (self.empty + 1) + z]
    }

    fn row(&self, p: usize) -> &[u16] {
        &self.slots[p * self.k..(p + 1) * self.k]
    }

    fn has(&self, p: usize, v: usize) -> bool {
        self.row(p).contains(&(v as u16))
    }

    fn score(&self, p: usize, v: usize) -> u64 {
        mix(self.hash[v], p as u32)
    }

    /// Whether `v` held a balanced slot of `p` in the previous ring; keeping
    /// or restoring such a slot moves no data.
    fn was_in(&self, p: usize, v: usize) -> bool {
        self.prev_pos
            .get(p * self.m + v)
            .is_some_and(|&pos| (pos as usize) < self.prev_k)
    }

    fn set(&mut self, p: usize, i: usize, new: u16) {
        let zn = self.empty + 1;
        let old = self.slots[p * self.k + i];
        let (zo, znew) = (self.zone(old), self.zone(new));
        self.x[p * zn + zo] -= 1;
        self.col[zo] -= 1;
        if old != NONE {
            self.cnt[old as usize] -= 1;
        }
        self.x[p * zn + znew] += 1;
        self.col[znew] += 1;
        if new != NONE {
            self.cnt[new as usize] += 1;
        }
        self.slots[p * self.k + i] = new;
    }

    /// Fresh ring: fill slots rank by rank, each partition taking its
    /// highest-scoring member that still has quota and zone room. This is
    /// rendezvous hashing with capacities, so co-replica sets look random
    /// (a failed node's load spreads over all others); the few slots it
    /// cannot fill are left to the repair passes.
    fn greedy_fill(&mut self) {
        for r in 0..self.k {
            for p in 0..self.parts {
                if self.slots[p * self.k + r] != NONE {
                    continue;
                }
                // Once the remaining slots are all needed for missing zones,
                // only those zones qualify.
                let missing: u32 = (0..self.empty)
                    .map(|z| self.lo[z].saturating_sub(self.xz(p, z)))
                    .sum();
                let restrict = missing as usize >= self.k - r;
                let mut best: Option<(u64, usize)> = None;
                for v in 0..self.m {
                    let z = self.lay.zone_of[v];
                    if self.cnt[v] >= self.quota[v]
                        || self.xz(p, z) >= self.hi[z]
                        || (restrict && self.xz(p, z) >= self.lo[z])
                        || self.has(p, v)
                    {
                        continue;
                    }
                    let s = self.score(p, v);
                    match best {
                        Some((bs, _)) if bs >= s => {}
                        _ => best = Some((s, v)),
                    }
                }
                if let Some((_, v)) = best {
                    self.set(p, r, v as u16);
                }
            }
        }
    }

    /// Slot index to vacate when zone `a` gives up a slot in `p`: prefer a
    /// slot created this round (free to undo), then the member most over
    /// quota, then the lowest score.
    fn pick_removal(&self, p: usize, a: usize) -> Option<usize> {
        let row = self.row(p);
        if a == self.empty {
            return row.iter().position(|&s| s == NONE);
        }
        row.iter()
            .enumerate()
            .filter(|&(_, &s)| s != NONE && self.lay.zone_of[s as usize] == a)
            .min_by_key(|&(_, &s)| {
                let v = s as usize;
                (
                    self.was_in(p, v),
                    Reverse(self.cnt[v] - self.quota[v]),
                    self.score(p, v),
                )
            })
            .map(|(i, _)| i)
    }

    /// Member of zone `b` to put into `p`: most under quota, then one that
    /// held the slot before, then the highest score. `NONE` for the empty zone.
    fn pick_addition(&self, p: usize, b: usize) -> Option<u16> {
        if b == self.empty {
            return Some(NONE);
        }
        self.lay.zones[b]
            .iter()
            .copied()
            .filter(|&v| !self.has(p, v))
            .min_by_key(|&v| {
                (
                    Reverse(self.quota[v] - self.cnt[v]),
                    !self.was_in(p, v),
                    Reverse(self.score(p, v)),
                )
            })
            .map(|v| v as u16)
    }

    /// Replaces a zone-`a` slot of `p` with a zone-`b` member.
    fn move_unit(&mut self, p: usize, a: usize, b: usize) -> bool {
        match (self.pick_removal(p, a), self.pick_addition(p, b)) {
            (Some(i), Some(v)) => {
                self.set(p, i, v);
                true
            }
            _ => false,
        }
    }

    /// 0 if zone `a` can give up a slot of `p` without undoing a previous
    /// placement, else 1 (the moved-out data has to be re-replicated).
    fn give_cost(&self, p: usize, a: usize) -> u32 {
        let free = a == self.empty
            || self.row(p).iter().any(|&s| {
                s != NONE && self.lay.zone_of[s as usize] == a && !self.was_in(p, s as usize)
            });
        u32::from(!free)
    }

    /// 0 if adding a zone-`b` member to `p` restores a previous slot (or
    /// `b` is the empty pseudo-zone), else 1.
    fn add_cost(&self, p: usize, b: usize) -> u32 {
        match self.pick_addition(p, b) {
            Some(NONE) => 0,
            Some(v) => u32::from(!self.was_in(p, v as usize)),
            None => 1,
        }
    }

    /// Makes every partition satisfy its zone bounds (empty slots count as
    /// their own zone with no minimum).
    fn enforce_row_bounds(&mut self) -> Result<(), RingError> {
        for p in 0..self.parts {
            for z in 0..self.empty {
                while self.xz(p, z) > self.hi[z] {
                    if !self.move_unit(p, z, self.empty) {
                        return Err(RingError::Placement("cannot shed zone excess".into()));
                    }
                }
            }
            for z in 0..self.empty {
                while self.xz(p, z) < self.lo[z] {
                    let from = if self.xz(p, self.empty) > 0 {
                        Some(self.empty)
                    } else {
                        (0..self.empty)
                            .filter(|&a| a != z && self.xz(p, a) > self.lo[a])
                            .max_by_key(|&a| (self.col[a] - self.target[a], Reverse(a)))
                    };
                    if !from.is_some_and(|a| self.move_unit(p, a, z)) {
                        return Err(RingError::Placement("cannot place a required zone".into()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Brings every zone's slot total to its target (and so the empty
    /// pseudo-zone to zero) while keeping every partition within its zone
    /// bounds: a transportation problem solved by augmenting paths.
    fn balance_zones(&mut self) -> Result<(), RingError> {
        let zn = self.empty + 1;
        let mut budget = 4 * self.parts * self.k + 16;
        loop {
            let over: Vec<usize> = (0..zn).filter(|&z| self.col[z] > self.target[z]).collect();
            let under: Vec<usize> = (0..zn).filter(|&z| self.col[z] < self.target[z]).collect();
            if over.is_empty() && under.is_empty() {
                return Ok(());
            }
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| RingError::Placement("zone balancing did not converge".into()))?;
            if self.direct_zone_moves(&over, &under, false) {
                continue;
            }
            let Some((cost, path)) = self.cheapest_zone_path() else {
                return Err(RingError::Placement(
                    "zone balancing found no augmenting path".into(),
                ));
            };
            // `cost` counts one per step plus the net slots the path
            // creates. If it creates any, a direct move (which creates
            // exactly one) is as cheap as any route, and can be done in bulk.
            if cost as usize > path.len() && self.direct_zone_moves(&over, &under, true) {
                continue;
            }
            let steps: Vec<(usize, usize, u32)> = path
                .iter()
                .map(|&(p, a, b)| (a, b, self.give_cost(p, a) + self.add_cost(p, b)))
                .collect();
            for (p, a, b) in path {
                if !self.move_unit(p, a, b) {
                    return Err(RingError::Placement(
                        "augmenting path became invalid".into(),
                    ));
                }
            }
            self.repeat_path(&steps);
        }
    }

    /// Re-applies a just-used route (the same zone sequence, each step no
    /// dearer than before) through other partitions for as long as its ends
    /// stay over and under target. Searching is the expensive part; when
    /// many units need the same detour this does them in one sweep.
    fn repeat_path(&mut self, steps: &[(usize, usize, u32)]) {
        let (Some(&(first, _, _)), Some(&(_, last, _))) = (steps.first(), steps.last()) else {
            return;
        };
        let mut cursor = vec![0usize; steps.len()];
        let mut rows = vec![0usize; steps.len()];
        'unit: while self.col[first] > self.target[first] && self.col[last] < self.target[last] {
            for (i, &(a, b, cost)) in steps.iter().enumerate() {
                let found = (cursor[i]..self.parts).find(|&p| {
                    self.xz(p, a) > self.lo[a]
                        && self.xz(p, b) < self.hi[b]
                        && !rows[..i].contains(&p)
                        && self.give_cost(p, a) + self.add_cost(p, b) <= cost
                });
                match found {
                    Some(p) => {
                        rows[i] = p;
                        cursor[i] = p + 1;
                    }
                    None => break 'unit,
                }
            }
            // Distinct partitions, each valid now: applying in order keeps
            // every step valid and leaves intermediate zones unchanged.
            for (i, &(a, b, _)) in steps.iter().enumerate() {
                self.move_unit(rows[i], a, b);
            }
        }
    }

    /// Moves slots straight from over-target to under-target zones, in bulk.
    fn direct_zone_moves(&mut self, over: &[usize], under: &[usize], allow_costly: bool) -> bool {
        // Most constrained pairs first: a zone that can give (or take) in only
        // a few partitions must not find them used up by zones with plenty of
        // choice, or it would need a detour that costs an extra move.
        let mut pairs: Vec<(i64, usize, usize)> = Vec::new();
        for &a in over {
            for &b in under {
                let need = (self.col[a] - self.target[a]).min(self.target[b] - self.col[b]);
                if need > 0 {
                    let room = (0..self.parts)
                        .filter(|&p| self.can_move(p, a, b, allow_costly))
                        .count();
                    pairs.push((room as i64 - need, a, b));
                }
            }
        }
        pairs.sort_unstable();
        let mut moved = false;
        for (_, a, b) in pairs {
            moved |= self.direct_pair(a, b, allow_costly);
        }
        moved
    }

    fn can_move(&self, p: usize, a: usize, b: usize, allow_costly: bool) -> bool {
        self.xz(p, a) > self.lo[a]
            && self.xz(p, b) < self.hi[b]
            && (allow_costly || self.give_cost(p, a) == 0)
    }

    /// Moves as many slots from zone `a` to zone `b` as both need, cheapest
    /// first.
    fn direct_pair(&mut self, a: usize, b: usize, allow_costly: bool) -> bool {
        let need = (self.col[a] - self.target[a]).min(self.target[b] - self.col[b]);
        if need <= 0 {
            return false;
        }
        let mut cand: Vec<(u32, Reverse<u64>, usize)> = (0..self.parts)
            .filter(|&p| self.can_move(p, a, b, allow_costly))
            .map(|p| {
                let s = match self.pick_addition(p, b) {
                    Some(v) if v != NONE => self.score(p, v as usize),
                    _ => 0,
                };
                (self.give_cost(p, a), Reverse(s), p)
            })
            .collect();
        cand.sort_unstable();
        // A move's true price: the slot it creates, minus one if it undoes a
        // slot created this round, plus one if the member pushed out drops
        // below quota (it will need a slot elsewhere). Take the cheapest
        // moves first; surplus changes as we go.
        let mut left = need;
        let mut used = vec![false; cand.len()];
        for max_price in 0..=2 {
            for (ci, &(c, _, p)) in cand.iter().enumerate() {
                if left == 0 {
                    return true;
                }
                if used[ci] || self.xz(p, a) <= self.lo[a] || self.xz(p, b) >= self.hi[b] {
                    continue;
                }
                let surplus = match self.pick_removal(p, a).map(|i| self.row(p)[i]) {
                    Some(s) if s != NONE => self.cnt[s as usize] > self.quota[s as usize],
                    _ => true,
                };
                if c + u32::from(!surplus) > max_price {
                    continue;
                }
                used[ci] = true;
                if self.move_unit(p, a, b) {
                    left -= 1;
                }
            }
        }
        left < need
    }

    /// Cheapest augmenting path from an over-target zone to an under-target
    /// zone, as `(partition, from zone, to zone)` steps. The graph alternates
    /// zones and partitions: zone `a` → partition `p` if `p` can spare an `a`
    /// slot, partition `p` → zone `b` if `p` has room for another `b`.
    ///
    /// A step replaces member `u` by `w` in one partition, changing the number
    /// of newly created slots by `[w new] - [u new]`; adding 1 per step makes
    /// that non-negative and splits into the two 0/1 edge weights
    /// `[u kept from before]` and `[w new]`. So 0-1 BFS finds the path
    /// minimising (slots created + steps), which prefers re-routing this
    /// round's placements and restoring previous ones over creating more.
    fn cheapest_zone_path(&self) -> Option<(u32, Vec<Step>)> {
        let zn = self.empty + 1;
        let total = zn + self.parts;
        let mut dist = vec![u32::MAX; total];
        let mut parent = vec![usize::MAX; total];
        let mut done = vec![false; total];
        let mut queue = VecDeque::new();
        for (z, d) in dist.iter_mut().enumerate().take(zn) {
            if self.col[z] > self.target[z] {
                *d = 0;
                queue.push_back(z);
            }
        }
        while let Some(u) = queue.pop_front() {
            if done[u] {
                continue;
            }
            done[u] = true;
            if u < zn {
                if self.col[u] < self.target[u] {
                    let mut path = Vec::new();
                    let mut b = u;
                    while parent[b] != usize::MAX {
                        let node = parent[b];
                        let a = parent[node];
                        path.push((node - zn, a, b));
                        b = a;
                    }
                    path.reverse();
                    return Some((dist[u], path));
                }
                for p in 0..self.parts {
                    let node = zn + p;
                    if done[node] || self.xz(p, u) <= self.lo[u] {
                        continue;
                    }
                    let c = self.give_cost(p, u);
                    let nd = dist[u] + c;
                    if nd < dist[node] {
                        dist[node] = nd;
                        parent[node] = u;
                        if c == 0 {
                            queue.push_front(node);
                        } else {
                            queue.push_back(node);
                        }
                    }
                }
            } else {
                let p = u - zn;
                for b in 0..zn {
                    if done[b] || self.xz(p, b) >= self.hi[b] {
                        continue;
                    }
                    let c = self.add_cost(p, b);
                    let nd = dist[u] + c;
                    if nd < dist[b] {
                        dist[b] = nd;
                        parent[b] = u;
                        if c == 0 {
                            queue.push_front(b);
                        } else {
                            queue.push_back(b);
                        }
                    }
                }
            }
        }
        None
    }

    /// Evens out member counts inside each zone. Quotas within a zone differ
    /// by at most one, so an over-quota member always holds more partitions
    /// than an under-quota one and a direct swap always exists.
    fn balance_within_zones(&mut self) -> Result<(), RingError> {
        for z in 0..self.empty {
            let zm = self.lay.zones[z].clone();
            if zm.len() < 2 {
                continue;
            }
            for _round in 0..=zm.len() + 1 {
                let mut over: Vec<usize> = zm
                    .iter()
                    .copied()
                    .filter(|&v| self.cnt[v] > self.quota[v])
                    .collect();
                let mut under: Vec<usize> = zm
                    .iter()
                    .copied()
                    .filter(|&v| self.cnt[v] < self.quota[v])
                    .collect();
                if over.is_empty() && under.is_empty() {
                    break;
                }
                over.sort_by_key(|&v| (Reverse(self.cnt[v] - self.quota[v]), v));
                under.sort_by_key(|&v| (Reverse(self.quota[v] - self.cnt[v]), v));
                for &u in &over {
                    for &v in &under {
                        let need = (self.cnt[u] - self.quota[u]).min(self.quota[v] - self.cnt[v]);
                        if need <= 0 {
                            continue;
                        }
                        let mut cand: Vec<(bool, Reverse<u64>, usize, usize)> = Vec::new();
                        for p in 0..self.parts {
                            if self.has(p, v) {
                                continue;
                            }
                            if let Some(i) = self.row(p).iter().position(|&s| s as usize == u) {
                                cand.push((self.was_in(p, u), Reverse(self.score(p, v)), p, i));
                            }
                        }
                        cand.sort_unstable();
                        for &(_, _, p, i) in cand.iter().take(need as usize) {
                            self.set(p, i, v as u16);
                        }
                    }
                }
            }
            if zm.iter().any(|&v| self.cnt[v] != self.quota[v]) {
                return Err(RingError::Placement(
                    "zone members could not be balanced".into(),
                ));
            }
        }
        Ok(())
    }

    /// Orders each partition's balanced set, position by position.
    ///
    /// Position `j` of partition `p` is chosen among the members not yet
    /// placed (`w = k - j` of them). A member with `r` unplaced slots gets
    /// `⌊r/w⌋` or `⌈r/w⌉` position-`j` duties; this is always achievable (each
    /// partition spreads `1/w` over its unplaced members fractionally) and
    /// is enforced with augmenting paths. Before that, a best-effort pass aims
    /// at the tighter target "within one of `c·(j+1)/k` after `j+1`
    /// positions" so that shorter preference lists are balanced too. The
    /// starting choice is the slot order (the previous ring's order, with a
    /// newcomer in the position of the member it replaced), so positions are
    /// kept unless balance needs them to change.
    fn order_sets(&self) -> Result<Vec<u16>, RingError> {
        let (k, m) = (self.k, self.m);
        // Slot order is the starting order: rank order for a fresh ring, the
        // previous order (replacements in place) for a rebalance.
        let mut rows = self.slots.clone();
        let c: Vec<i64> = self.cnt.clone();
        let mut pre = vec![0i64; m];
        for j in 0..k.saturating_sub(1) {
            let w = (k - j) as i64;
            let mut layer = Layer {
                e: self,
                rows: &mut rows,
                j,
                choice: vec![j; self.parts],
                cnt: vec![0; m],
                lo: vec![0; m],
                hi: vec![0; m],
            };
            for p in 0..self.parts {
                layer.cnt[layer.rows[p * k + j] as usize] += 1;
            }
            let kk = k as i64;
            let mut g_lo = vec![0; m];
            let mut g_hi = vec![0; m];
            for v in 0..m {
                let rem = c[v] - pre[v];
                g_lo[v] = rem.div_euclid(w);
                g_hi[v] = (rem + w - 1).div_euclid(w);
                let d_lo = (c[v] * (j as i64 + 1)).div_euclid(kk) - pre[v];
                let d_hi = (c[v] * (j as i64 + 1) + kk - 1).div_euclid(kk) - pre[v];
                let (lo, hi) = (g_lo[v].max(d_lo), g_hi[v].min(d_hi));
                (layer.lo[v], layer.hi[v]) = if lo <= hi {
                    (lo, hi)
                } else {
                    (g_lo[v], g_hi[v])
                };
            }
            layer.balance(false)?;
            layer.lo = g_lo;
            layer.hi = g_hi;
            layer.balance(true)?;
            let (choice, cnt) = (layer.choice, layer.cnt);
            for p in 0..self.parts {
                rows[p * k + j..=p * k + choice[p]].rotate_right(1);
            }
            for v in 0..m {
                pre[v] += cnt[v];
            }
        }
        Ok(rows)
    }

    /// Appends the fallbacks (by rendezvous score) to each ordered set.
    fn full_orders(&self, sets: &[u16]) -> Vec<u16> {
        let (k, m) = (self.k, self.m);
        let mut out = Vec::with_capacity(self.parts * m);
        let mut rest: Vec<(Reverse<u64>, u16)> = Vec::with_capacity(m);
        let mut in_set = vec![false; m];
        for p in 0..self.parts {
            let set = &sets[p * k..(p + 1) * k];
            out.extend_from_slice(set);
            set.iter().for_each(|&v| in_set[v as usize] = true);
            rest.clear();
            rest.extend(
                (0..m)
                    .filter(|&v| !in_set[v])
                    .map(|v| (Reverse(self.score(p, v)), v as u16)),
            );
            set.iter().for_each(|&v| in_set[v as usize] = false);
            rest.sort_unstable();
            out.extend(rest.iter().map(|&(_, v)| v));
        }
        out
    }
}

/// Balancing state for one position (`j`) of every partition's order.
struct Layer<'a> {
    e: &'a Engine,
    rows: &'a mut Vec<u16>,
    j: usize,
    /// Index into the partition's row of the member chosen for position `j`
    /// (always `>= j`: positions before `j` are settled).
    choice: Vec<usize>,
    cnt: Vec<i64>,
    lo: Vec<i64>,
    hi: Vec<i64>,
}

impl Layer<'_> {
    fn chosen(&self, p: usize) -> usize {
        self.rows[p * self.e.k + self.choice[p]] as usize
    }

    /// Row index of `v` among the unplaced members of `p`.
    fn find(&self, p: usize, v: usize) -> Option<usize> {
        let k = self.e.k;
        (self.j..k).find(|&i| self.rows[p * k + i] as usize == v)
    }

    fn assign(&mut self, p: usize, i: usize) {
        let old = self.chosen(p);
        self.cnt[old] -= 1;
        self.choice[p] = i;
        let new = self.chosen(p);
        self.cnt[new] += 1;
    }

    /// Applies `lo`/`hi` with augmenting paths. Strict mode fails if a bound
    /// cannot be met (only used with bounds proven feasible).
    fn balance(&mut self, strict: bool) -> Result<(), RingError> {
        let m = self.e.m;
        let parts = self.e.parts;
        let mut budget = 4 * parts + 16;
        // Push counts down to `hi`; nobody drops below `lo` doing so.
        loop {
            let over: Vec<usize> = (0..m).filter(|&v| self.cnt[v] > self.hi[v]).collect();
            if over.is_empty() {
                break;
            }
            budget = budget.checked_sub(1).ok_or_else(|| {
                RingError::Placement("position balancing did not converge".into())
            })?;
            if self.direct(true) {
                continue;
            }
            match self.path(&over, |l, w| l.cnt[w] < l.hi[w], true) {
                Some(path) => path.into_iter().for_each(|(p, i)| self.assign(p, i)),
                None if strict => {
                    return Err(RingError::Placement(
                        "position balance infeasible (upper)".into(),
                    ))
                }
                None => break,
            }
        }
        // Lift counts up to `lo`; donors stay at or above `lo`, takers at or below `hi`.
        loop {
            let under: Vec<usize> = (0..m).filter(|&v| self.cnt[v] < self.lo[v]).collect();
            if under.is_empty() {
                break;
            }
            budget = budget.checked_sub(1).ok_or_else(|| {
                RingError::Placement("position balancing did not converge".into())
            })?;
            if self.direct(false) {
                continue;
            }
            match self.path(&under, |l, w| l.cnt[w] > l.lo[w], false) {
                Some(path) => path.into_iter().for_each(|(p, i)| self.assign(p, i)),
                None if strict => {
                    return Err(RingError::Placement(
                        "position balance infeasible (lower)".into(),
                    ))
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Moves position-`j` duty straight from members that must give to
    /// members that may take, wherever one partition holds both, in a single
    /// pass over the partitions. `upper` selects which bound is being fixed.
    /// Within a partition the most preferred (earliest) taker wins.
    fn direct(&mut self, upper: bool) -> bool {
        let k = self.e.k;
        let m = self.e.m;
        let (mut give, mut take): (Vec<i64>, Vec<i64>) = if upper {
            (
                (0..m).map(|v| self.cnt[v] - self.hi[v]).collect(),
                (0..m).map(|v| self.hi[v] - self.cnt[v]).collect(),
            )
        } else {
            (
                (0..m).map(|v| self.cnt[v] - self.lo[v]).collect(),
                (0..m).map(|v| self.lo[v] - self.cnt[v]).collect(),
            )
        };
        let mut moved = false;
        for p in 0..self.e.parts {
            let u = self.chosen(p);
            if give[u] <= 0 {
                continue;
            }
            let to = (self.j..k).find(|&i| {
                let w = self.rows[p * k + i] as usize;
                w != u && take[w] > 0
            });
            if let Some(i) = to {
                let w = self.rows[p * k + i] as usize;
                self.assign(p, i);
                give[u] -= 1;
                take[w] -= 1;
                moved = true;
            }
        }
        moved
    }

    /// Shortest chain of duty hand-overs between `sources` and a member
    /// satisfying `goal`, as `(partition, new choice index)` steps.
    /// Forward (`true`): sources give duty away along the chain and the goal
    /// member receives it. Backward: the goal member gives, sources receive.
    fn path(
        &self,
        sources: &[usize],
        goal: impl Fn(&Self, usize) -> bool,
        forward: bool,
    ) -> Option<Vec<(usize, usize)>> {
        let (k, m, parts) = (self.e.k, self.e.m, self.e.parts);
        // Edge u → w via p: p's position-j member is u and w is unplaced in p;
        // following it hands p's duty from u to w.
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); m];
        for p in 0..parts {
            let u = self.chosen(p);
            for i in self.j..k {
                let w = self.rows[p * k + i] as usize;
                if w == u {
                    continue;
                }
                if forward {
                    adj[u].push(p);
                } else {
                    adj[w].push(p);
                }
                if forward {
                    break;
                }
            }
        }
        let mut seen_member = vec![false; m];
        let mut seen_part = vec![false; parts];
        // For a member: (partition it was reached through, member it came from).
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; m];
        let mut queue = VecDeque::new();
        for &s in sources {
            seen_member[s] = true;
            queue.push_back(s);
        }
        while let Some(u) = queue.pop_front() {
            if !sources.contains(&u) && goal(self, u) {
                // Walk back to a source, collecting hand-overs.
                let mut steps = Vec::new();
                let mut cur = u;
                while let Some((p, from)) = parent[cur] {
                    // Forward: p's duty goes from `from` to `cur`.
                    // Backward: p's duty goes from `cur` to `from`.
                    let to = if forward { cur } else { from };
                    steps.push((p, self.find(p, to)?));
                    cur = from;
                }
                return Some(steps);
            }
            for &p in &adj[u] {
                if seen_part[p] {
                    continue;
                }
                seen_part[p] = true;
                if forward {
                    for i in self.j..k {
                        let w = self.rows[p * k + i] as usize;
                        if !seen_member[w] {
                            seen_member[w] = true;
                            parent[w] = Some((p, u));
                            queue.push_back(w);
                        }
                    }
                } else {
                    let w = self.chosen(p);
                    if !seen_member[w] {
                        seen_member[w] = true;
                        parent[w] = Some((p, u));
                        queue.push_back(w);
                    }
                }
            }
        }
        None
    }
}
