//! The tree itself: incremental XOR updates, leaf access, and its compact encoding.

use super::{
    key_hash, segment_of, xor_all, xor_into, Hash, MerkleError, BRANCHES, ENTRY_LEN, FORMAT_V1,
    LEAVES, LEAVES_PER_BRANCH, ZERO,
};

/// A TicTac Merkle tree: [`LEAVES`] leaves, [`BRANCHES`] branches and a root, each inner node
/// the XOR of its children. All zero for an empty set of keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Tree {
    leaves: Vec<Hash>,
    branches: Vec<Hash>,
    root: Hash,
}

// By hand: a derived Debug prints 1024 leaves (tens of KiB) into every log line and assertion.
impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let root: String = self.root.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Tree")
            .field("root", &root)
            .field(
                "nonzero_leaves",
                &self.leaves.iter().filter(|l| **l != ZERO).count(),
            )
            .finish()
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// The tree of the empty key set: all zero.
    pub fn new() -> Tree {
        Tree {
            leaves: vec![ZERO; LEAVES],
            branches: vec![ZERO; BRANCHES],
            root: ZERO,
        }
    }

    /// XORs `h` into leaf `segment`, its branch and the root. Applying the same `h` twice
    /// undoes it. An out-of-range segment is ignored (no segment_of result is out of range,
    /// so this only guards against caller bugs).
    pub fn toggle(&mut self, segment: u16, h: &Hash) {
        let s = usize::from(segment);
        if s >= LEAVES {
            return;
        }
        xor_into(&mut self.leaves[s], h);
        xor_into(&mut self.branches[s / LEAVES_PER_BRANCH], h);
        xor_into(&mut self.root, h);
    }

    /// Records that a key's version changed from `old` (None: the key was absent) to `new`
    /// (None: the key was removed). O(1): three hashes and three XORs at most.
    ///
    /// `old` must be the digest the tree last saw for the key, or the tree no longer matches
    /// the data.
    pub fn update(&mut self, bucket: &[u8], key: &[u8], old: Option<&Hash>, new: Option<&Hash>) {
        if old == new {
            return;
        }
        let mut delta = ZERO;
        if let Some(d) = old {
            xor_into(&mut delta, &key_hash(bucket, key, d));
        }
        if let Some(d) = new {
            xor_into(&mut delta, &key_hash(bucket, key, d));
        }
        self.toggle(segment_of(bucket, key), &delta);
    }

    /// Sets leaf `segment` to `value`, fixing its branch and the root. For repairing a leaf
    /// that drifted from the data (recompute it from a key listing of the segment). An
    /// out-of-range segment is ignored.
    pub fn set_leaf(&mut self, segment: u16, value: Hash) {
        let mut delta = self.leaf(segment);
        xor_into(&mut delta, &value);
        self.toggle(segment, &delta);
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The [`BRANCHES`] branch hashes.
    pub fn branches(&self) -> &[Hash] {
        &self.branches
    }

    /// The [`LEAVES_PER_BRANCH`] leaves of `branch`; empty if `branch >= BRANCHES`.
    pub fn branch_leaves(&self, branch: usize) -> &[Hash] {
        if branch >= BRANCHES {
            return &[];
        }
        let start = branch * LEAVES_PER_BRANCH;
        &self.leaves[start..start + LEAVES_PER_BRANCH]
    }

    /// Leaf `segment`; zero if out of range.
    pub fn leaf(&self, segment: u16) -> Hash {
        self.leaves
            .get(usize::from(segment))
            .copied()
            .unwrap_or(ZERO)
    }

    /// All [`LEAVES`] leaves, by segment.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// True when the tree is all zero, as for an empty key set.
    pub fn is_empty(&self) -> bool {
        self.root == ZERO && self.leaves.iter().all(|l| *l == ZERO)
    }

    /// Rebuilds a tree from its leaves; branches and root are recomputed.
    pub fn from_leaves(leaves: Vec<Hash>) -> Result<Tree, MerkleError> {
        if leaves.len() != LEAVES {
            return Err(MerkleError::WrongLeafCount {
                expected: LEAVES,
                got: leaves.len(),
            });
        }
        let branches: Vec<Hash> = leaves.chunks(LEAVES_PER_BRANCH).map(xor_all).collect();
        let root = xor_all(&branches);
        Ok(Tree {
            leaves,
            branches,
            root,
        })
    }

    /// Compact encoding for persistence: format byte 1, then each non-zero leaf in ascending
    /// segment order as (u16 BE segment, 32-byte hash). Inner nodes are not stored: they are
    /// recomputed on decode, so a stored tree cannot be internally inconsistent.
    pub fn encode(&self) -> Vec<u8> {
        let nonzero = self.leaves.iter().filter(|l| **l != ZERO).count();
        let mut out = Vec::with_capacity(1 + nonzero * ENTRY_LEN);
        out.push(FORMAT_V1);
        for (s, leaf) in self.leaves.iter().enumerate() {
            if *leaf != ZERO {
                // s < LEAVES <= 2^16 (asserted at compile time), so this never truncates.
                out.extend_from_slice(&(s as u16).to_be_bytes());
                out.extend_from_slice(leaf);
            }
        }
        out
    }

    /// Decodes [`Tree::encode`] output. Only the canonical encoding is accepted (segments in
    /// range, strictly ascending, no zero leaves), so `decode(b).encode() == b` whenever it
    /// succeeds; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Tree, MerkleError> {
        let (&format, body) = bytes.split_first().ok_or(MerkleError::Empty)?;
        if format != FORMAT_V1 {
            return Err(MerkleError::UnknownFormat(format));
        }
        if body.len() % ENTRY_LEN != 0 {
            return Err(MerkleError::BadLength { len: bytes.len() });
        }
        let mut leaves = vec![ZERO; LEAVES];
        let mut prev: Option<u16> = None;
        for entry in body.chunks_exact(ENTRY_LEN) {
            let (seg_bytes, hash_bytes) = entry.split_at(2);
            let seg = u16::from_be_bytes([seg_bytes[0], seg_bytes[1]]);
            if usize::from(seg) >= LEAVES {
                return Err(MerkleError::SegmentOutOfRange(seg));
            }
            // Strictly ascending: rejects duplicates and keeps the encoding canonical.
            if let Some(p) = prev {
                if seg == p {
                    return Err(MerkleError::DuplicateSegment(seg));
                }
                if seg < p {
                    return Err(MerkleError::UnorderedSegment { prev: p, next: seg });
                }
            }
            prev = Some(seg);
            let mut leaf = ZERO;
            leaf.copy_from_slice(hash_bytes);
            if leaf == ZERO {
                return Err(MerkleError::ZeroLeaf(seg));
            }
            leaves[usize::from(seg)] = leaf;
        }
        Tree::from_leaves(leaves)
    }
}
