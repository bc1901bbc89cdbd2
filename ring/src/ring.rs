//! The ring itself: construction, rebalancing and preference-list lookups.
//!
//! This is the public face of the crate. It owns the stored representation
//! (sorted members plus one order per partition) and hands the actual
//! placement work to `placement`; invariant checking lives in `verify`.

mod verify;

use crate::member::normalize_members;
use crate::partition::check_partition_count;
use crate::placement::place;
use crate::{partition_for, Member, RingError};
use serde::{Deserialize, Serialize};

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

    fn index_of(&self, node: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(node))
            .ok()
    }

    /// The order of `partition` as member indices; empty when out of range.
    pub(crate) fn row(&self, partition: u32) -> &[u16] {
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
}
