//! Membership: the nodes a ring is built from and the checks on that list.
//!
//! Kept apart from the ring so the rules for a valid member list (non-empty,
//! unique ids, bounded size) sit next to the type they constrain.

use crate::RingError;
use serde::{Deserialize, Serialize};

/// Largest supported member count. Rings store `partitions × members` indices,
/// so this bounds memory (about 128 MiB at the extreme).
pub const MAX_MEMBERS: usize = 1024;

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

/// Sorts by id and rejects empty, duplicate or too many members.
pub(crate) fn normalize_members(mut members: Vec<Member>) -> Result<Vec<Member>, RingError> {
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
