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
//! How placement meets these guarantees is documented next to the code that
//! does it, in the private `placement` module.
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

mod diff;
mod error;
mod member;
mod partition;
mod placement;
mod ring;
mod zones;

pub use diff::Move;
pub use error::RingError;
pub use member::{Member, MAX_MEMBERS};
pub use partition::{partition_for, rendezvous_score, DEFAULT_PARTITIONS, MAX_PARTITIONS};
pub use ring::Ring;
