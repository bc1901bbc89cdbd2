//! TicTac Merkle trees for anti-entropy between replicas (after Riak's "tictac AAE").
//!
//! # Scheme
//! Each (partition, N-class) keeps one fixed-shape tree: a root over [`BRANCHES`] branches,
//! each over [`LEAVES_PER_BRANCH`] leaves, [`LEAVES`] leaves in all. A key falls into the leaf
//! segment [`segment_of`]`(bucket, key)`. A leaf is the XOR of [`key_hash`]`(bucket, key,
//! digest)` over every key in its segment, a branch is the XOR of its leaves and the root the
//! XOR of the branches.
//!
//! # Why XOR
//! XOR is its own inverse and order-independent, so the tree is a pure function of the
//! current key → digest set, however that set was reached:
//! - a write is O(1): XOR the key's old hash out and its new hash in, at its leaf, its branch
//!   and the root ([`Tree::update`]); nothing is sorted or re-hashed;
//! - no periodic rebuild is needed: the incremental tree equals one built from scratch;
//! - two replicas compare roots, descend only into the branches that differ, then only into
//!   the leaves that differ, and exchange key → digest listings for just those segments
//!   ([`Exchange`] drives that walk without doing any I/O itself).
//!
//! The cost is that XOR aggregation is not collision-resistant against someone who picks keys
//! and digests on purpose; replicas trust each other, so it only has to catch accidents.
//!
//! The tree must change in step with the data it describes (e.g. in the same write batch):
//! nothing here notices a tree that drifted from its data, except that an exchange then keeps
//! finding differing leaves whose key listings agree ([`Tree::set_leaf`] can fix such a leaf).

mod exchange;
#[cfg(test)]
mod tests;
mod tree;

pub use exchange::{diff_branch_leaves, diff_hashes, diff_keys, Exchange, KeyDiff, Need};
pub use tree::Tree;

/// A 32-byte blake3 hash.
pub type Hash = [u8; 32];

/// Identifies one anti-entropy tree: a partition and the N of the buckets it covers, since
/// replicas of a partition share only the keys of buckets whose N includes them both.
pub type TreeId = (u32, u8);

/// Number of branches under the root.
pub const BRANCHES: usize = 32;
/// Number of leaf segments under each branch.
pub const LEAVES_PER_BRANCH: usize = 32;
/// Number of leaf segments in a tree.
pub const LEAVES: usize = BRANCHES * LEAVES_PER_BRANCH; // 1024

// segment_of reduces a u16 modulo LEAVES; a power of two that divides 2^16 keeps that uniform
// and every segment representable as a u16.
const _: () = assert!(LEAVES.is_power_of_two() && LEAVES <= 1 << 16);

const ZERO: Hash = [0; 32];
const SEGMENT_DOMAIN: &[u8] = b"chorus-segment";
const KEY_HASH_DOMAIN: &[u8] = b"chorus-keyhash";
/// Format byte of [`Tree::encode`].
const FORMAT_V1: u8 = 1;
/// Bytes per encoded leaf: u16 segment + hash.
const ENTRY_LEN: usize = 2 + 32;

/// Errors from building or decoding a [`Tree`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MerkleError {
    #[error("a merkle tree needs exactly {expected} leaves, got {got}")]
    WrongLeafCount { expected: usize, got: usize },
    #[error("encoded merkle tree is empty (no format byte)")]
    Empty,
    #[error("encoded merkle tree has unknown format byte {0} (expected {FORMAT_V1})")]
    UnknownFormat(u8),
    #[error(
        "encoded merkle tree of {len} bytes is truncated or padded \
         (expected 1 + a multiple of {ENTRY_LEN})"
    )]
    BadLength { len: usize },
    #[error("encoded merkle tree names segment {0}, but there are only {LEAVES}")]
    SegmentOutOfRange(u16),
    #[error("encoded merkle tree lists segment {0} twice")]
    DuplicateSegment(u16),
    #[error("encoded merkle tree lists segment {next} after segment {prev} (must ascend)")]
    UnorderedSegment { prev: u16, next: u16 },
    #[error(
        "encoded merkle tree lists segment {0} with an all-zero hash (zero leaves are left out)"
    )]
    ZeroLeaf(u16),
}

/// Feeds a length-prefixed field. Lengths below `u32::MAX` take 4 bytes (u32 LE); longer ones
/// (never seen in practice: keys are limited far below 4 GiB) are escaped as `u32::MAX` then
/// a u64 LE, so the encoding stays unambiguous for every input.
fn put_field(h: &mut blake3::Hasher, field: &[u8]) {
    match u32::try_from(field.len()) {
        Ok(n) if n != u32::MAX => {
            h.update(&n.to_le_bytes());
        }
        _ => {
            h.update(&u32::MAX.to_le_bytes());
            h.update(&(field.len() as u64).to_le_bytes());
        }
    }
    h.update(field);
}

fn bucket_key_hasher(domain: &[u8], bucket: &[u8], key: &[u8]) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    put_field(&mut h, bucket);
    put_field(&mut h, key);
    h
}

/// The leaf segment of a key, `< LEAVES`.
///
/// blake3 over a domain prefix and the length-prefixed bucket and key, so it is independent
/// of the ring's partition hash (keys of one partition still spread over all segments).
pub fn segment_of(bucket: &[u8], key: &[u8]) -> u16 {
    let h = bucket_key_hasher(SEGMENT_DOMAIN, bucket, key).finalize();
    let b = h.as_bytes();
    u16::from_le_bytes([b[0], b[1]]) % (LEAVES as u16)
}

/// The value a key with version digest `digest` contributes to its leaf: blake3 of (domain
/// prefix, len(bucket) u32 LE, bucket, len(key) u32 LE, key, digest).
///
/// Bucket and key are included (not just the digest) so that two keys holding the same value
/// do not cancel each other out of a leaf.
pub fn key_hash(bucket: &[u8], key: &[u8], digest: &Hash) -> Hash {
    let mut h = bucket_key_hasher(KEY_HASH_DOMAIN, bucket, key);
    h.update(digest);
    *h.finalize().as_bytes()
}

/// The branch a segment belongs to (`segment / LEAVES_PER_BRANCH`); `>= BRANCHES` for an
/// out-of-range segment.
pub fn branch_of(segment: u16) -> usize {
    usize::from(segment) / LEAVES_PER_BRANCH
}

fn xor_into(acc: &mut Hash, h: &Hash) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a ^= b;
    }
}

fn xor_all<'a>(hashes: impl IntoIterator<Item = &'a Hash>) -> Hash {
    let mut acc = ZERO;
    for h in hashes {
        xor_into(&mut acc, h);
    }
    acc
}
