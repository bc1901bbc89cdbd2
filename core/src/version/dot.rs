//! Who wrote what: an [`Actor`] (a node process) and a [`Dot`], one write it minted.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A writer incarnation: a node id plus an epoch drawn at random on every start
/// of the node's process, so that its counters are never reused.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The node id.
    pub node: String,
    /// The process's random epoch.
    pub epoch: u64,
}

impl Actor {
    /// An actor for `node` at `epoch`.
    pub fn new(node: impl Into<String>, epoch: u64) -> Self {
        Actor {
            node: node.into(),
            epoch,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.epoch)
    }
}

/// One write event: the `counter`-th write minted by `actor` (counters start at 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who minted it.
    pub actor: Actor,
    /// Its sequence number for that actor, from 1.
    pub counter: u64,
}

impl Dot {
    /// The dot `(actor, counter)`.
    pub fn new(actor: Actor, counter: u64) -> Self {
        Dot { actor, counter }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}
