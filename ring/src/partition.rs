//! Partitioning: how keys map to partitions and how nodes rank within one.
//!
//! These two hash functions are the part of placement that other crates and
//! other nodes must agree on bit for bit (routing a key, ordering fallbacks),
//! so they live apart from the balancing code that merely uses them.

use crate::RingError;

/// Partition count used when a cluster does not configure one.
pub const DEFAULT_PARTITIONS: u32 = 256;
/// Largest supported partition count.
pub const MAX_PARTITIONS: u32 = 65_536;

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

pub(crate) fn member_hash(id: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"chorus-ring/member\0");
    h.update(id.as_bytes());
    let digest = h.finalize();
    let b = digest.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// splitmix64 finalizer over the member hash and partition.
pub(crate) fn mix(member: u64, partition: u32) -> u64 {
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

pub(crate) fn check_partition_count(partition_count: u32) -> Result<(), RingError> {
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
