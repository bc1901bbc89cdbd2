//! Errors: every way building, rebalancing or decoding a ring can fail.
//!
//! One shared enum, in its own file because every other module returns it.

/// Why a ring could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// The partition count was zero.
    #[error("partition count must be at least 1")]
    ZeroPartitions,
    /// The partition count was not a power of two.
    #[error("partition count {0} is not a power of two")]
    PartitionsNotPowerOfTwo(u32),
    /// The partition count exceeded [`MAX_PARTITIONS`](crate::MAX_PARTITIONS).
    #[error("partition count {count} exceeds the maximum of {max}")]
    TooManyPartitions {
        /// Requested count.
        count: u32,
        /// [`MAX_PARTITIONS`](crate::MAX_PARTITIONS).
        max: u32,
    },
    /// `replicas` was zero.
    #[error("replicas must be at least 1")]
    ZeroReplicas,
    /// The member list was empty.
    #[error("a ring needs at least one member")]
    NoMembers,
    /// The member list exceeded [`MAX_MEMBERS`](crate::MAX_MEMBERS).
    #[error("{count} members exceed the maximum of {max}")]
    TooManyMembers {
        /// Number of members given.
        count: usize,
        /// [`MAX_MEMBERS`](crate::MAX_MEMBERS).
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
