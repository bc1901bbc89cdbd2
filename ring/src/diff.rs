//! Ring transitions: which replicas each partition gains and loses between
//! two rings.
//!
//! Separate from placement because callers use it to plan data movement and
//! it depends only on the public preference lists.

use crate::Ring;
use serde::{Deserialize, Serialize};

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

impl Ring {
    /// What moves from `self` to `next` for replication factor `n`: one entry,
    /// in partition order, per partition whose first-`n` *set* differs. A
    /// change of position within the first `n` is not a move. Partitions
    /// present in only one ring (different partition counts) are compared
    /// against an empty set.
    pub fn diff(&self, next: &Ring, n: usize) -> Vec<Move> {
        let parts = self.partition_count().max(next.partition_count());
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
}
