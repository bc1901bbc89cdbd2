//! Comparing two trees: hash-list and key-listing diffs, and the sans-I/O [`Exchange`] that
//! walks from roots to the keys that differ.

use std::cmp::Ordering;

use super::{Hash, Tree, BRANCHES, LEAVES_PER_BRANCH};

/// Indices at which two hash lists differ. Lists of different lengths: the common prefix is
/// compared and every index past the shorter list counts as differing.
pub fn diff_hashes(a: &[Hash], b: &[Hash]) -> Vec<usize> {
    let common = a.len().min(b.len());
    let mut out: Vec<usize> = (0..common).filter(|&i| a[i] != b[i]).collect();
    out.extend(common..a.len().max(b.len()));
    out
}

/// The segments (global leaf indices, ascending) that differ within `branch`, given both
/// sides' leaves of that branch. Indices past [`LEAVES_PER_BRANCH`] name no segment of the
/// branch and are ignored; an out-of-range branch yields nothing.
pub fn diff_branch_leaves(branch: usize, a: &[Hash], b: &[Hash]) -> Vec<u16> {
    if branch >= BRANCHES {
        return Vec::new();
    }
    diff_hashes(a, b)
        .into_iter()
        .filter(|&i| i < LEAVES_PER_BRANCH)
        // < LEAVES <= 2^16, so the cast is exact.
        .map(|i| (branch * LEAVES_PER_BRANCH + i) as u16)
        .collect()
}

/// The keys that differ between two replicas' listings of the same segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDiff<K> {
    /// Keys only the local replica has.
    pub only_local: Vec<K>,
    /// Keys only the remote replica has.
    pub only_remote: Vec<K>,
    /// Keys both have, with different digests.
    pub different: Vec<K>,
}

// By hand rather than derived: a derive would demand `K: Default`, which keys need not be.
impl<K> Default for KeyDiff<K> {
    fn default() -> Self {
        KeyDiff {
            only_local: Vec::new(),
            only_remote: Vec::new(),
            different: Vec::new(),
        }
    }
}

impl<K> KeyDiff<K> {
    /// True when the listings agree.
    pub fn is_empty(&self) -> bool {
        self.only_local.is_empty() && self.only_remote.is_empty() && self.different.is_empty()
    }
}

/// Sorts a listing by key, keeping only the first occurrence (in input order) of a repeated key.
fn sorted_unique<K: Ord + Clone>(list: &[(K, Hash)]) -> Vec<(K, Hash)> {
    let mut v = list.to_vec();
    v.sort_by(|x, y| x.0.cmp(&y.0)); // stable: the first occurrence stays first
    v.dedup_by(|later, earlier| later.0 == earlier.0);
    v
}

/// Compares key → digest listings of the same segments from two replicas. Inputs may be in
/// any order; keys should be unique per side (if not, the first occurrence counts). Each
/// output vector is sorted.
pub fn diff_keys<K: Ord + Clone>(local: &[(K, Hash)], remote: &[(K, Hash)]) -> KeyDiff<K> {
    let l = sorted_unique(local);
    let r = sorted_unique(remote);
    let mut out = KeyDiff::default();
    // Merge walk over both sorted listings: O(n log n) for the sorts, linear after.
    let (mut i, mut j) = (0, 0);
    while i < l.len() && j < r.len() {
        match l[i].0.cmp(&r[j].0) {
            Ordering::Less => {
                out.only_local.push(l[i].0.clone());
                i += 1;
            }
            Ordering::Greater => {
                out.only_remote.push(r[j].0.clone());
                j += 1;
            }
            Ordering::Equal => {
                if l[i].1 != r[j].1 {
                    out.different.push(l[i].0.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    out.only_local.extend(l[i..].iter().map(|(k, _)| k.clone()));
    out.only_remote
        .extend(r[j..].iter().map(|(k, _)| k.clone()));
    out
}

/// What an [`Exchange`] needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Ask the remote for its root and branch hashes.
    Branches,
    /// Ask the remote for the leaves of these branches.
    Leaves(Vec<usize>),
    /// Ask both sides for key -> digest listings of these segments, and call `keys` with them.
    Keys(Vec<u16>),
    /// Finished. `clean`: the trees were equal at the start (nothing to repair).
    Done { clean: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Start,
    AwaitBranches,
    AwaitLeaves(Vec<usize>),
    AwaitKeys(Vec<u16>),
    Done { clean: bool },
}

/// One anti-entropy comparison of a local tree with a remote replica's tree, driven by the
/// caller: it says what to fetch next; the caller fetches it and feeds the answer back.
///
/// The walk is `start_with_root` → `branches` → `leaves` → `keys`, each step returning the
/// next [`Need`]; it may finish early with [`Need::Done`]. It holds a snapshot of the local
/// tree, so local writes during the exchange do not confuse it (they show up as differences
/// and are resolved by the key listings or the next exchange).
///
/// Calling a step out of order (or after Done) is a caller bug: it aborts the exchange and
/// returns `Done { clean: false }` (for `keys`, with an empty diff) instead of panicking.
#[derive(Clone, Debug)]
pub struct Exchange {
    local: Tree,
    state: State,
}

impl Exchange {
    /// Starts an exchange against a snapshot of the local tree.
    pub fn new(local: Tree) -> Exchange {
        Exchange {
            local,
            state: State::Start,
        }
    }

    /// The local tree snapshot being compared.
    pub fn local(&self) -> &Tree {
        &self.local
    }

    /// True once the exchange has returned `Done` (finished or aborted).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    fn finish(&mut self, clean: bool) -> Need {
        self.state = State::Done { clean };
        Need::Done { clean }
    }

    /// First step: the remote's root. Equal roots finish clean; otherwise ask for branches.
    pub fn start_with_root(&mut self, remote_root: Hash) -> Need {
        if self.state != State::Start {
            return self.finish(false);
        }
        if remote_root == self.local.root() {
            return self.finish(true);
        }
        self.state = State::AwaitBranches;
        Need::Branches
    }

    /// The remote's [`BRANCHES`] branch hashes. Asks for the leaves of the branches that
    /// differ, or finishes unclean if none do (the remote changed since its root was read, or a
    /// root collision). A short list counts its missing branches as differing.
    pub fn branches(&mut self, remote: &[Hash]) -> Need {
        if self.state != State::AwaitBranches {
            return self.finish(false);
        }
        let differing: Vec<usize> = diff_hashes(self.local.branches(), remote)
            .into_iter()
            .filter(|&b| b < BRANCHES)
            .collect();
        if differing.is_empty() {
            return self.finish(false);
        }
        self.state = State::AwaitLeaves(differing.clone());
        Need::Leaves(differing)
    }

    /// The remote's leaves of the requested branches, as (branch, leaves). Asks for key
    /// listings of the differing segments (ascending), or finishes unclean if none differ.
    ///
    /// Entries for branches that were not requested are ignored (for a repeated branch the
    /// first entry counts). A requested branch missing from the answer counts all its segments
    /// as differing, so a partial answer costs a larger listing but never hides a difference.
    pub fn leaves(&mut self, remote: &[(usize, Vec<Hash>)]) -> Need {
        let wanted = match &self.state {
            State::AwaitLeaves(w) => w.clone(),
            _ => return self.finish(false),
        };
        let mut segments = Vec::new();
        for b in wanted {
            match remote.iter().find(|(rb, _)| *rb == b) {
                Some((_, theirs)) => {
                    segments.extend(diff_branch_leaves(b, self.local.branch_leaves(b), theirs))
                }
                None => segments
                    .extend((b * LEAVES_PER_BRANCH..(b + 1) * LEAVES_PER_BRANCH).map(|s| s as u16)),
            }
        }
        if segments.is_empty() {
            return self.finish(false);
        }
        self.state = State::AwaitKeys(segments.clone());
        Need::Keys(segments)
    }

    /// Both sides' key → digest listings of the requested segments. Returns the keys to
    /// repair; the exchange is then `Done { clean: false }`.
    ///
    /// Keys are opaque here, so listings are not filtered by segment: the caller must list
    /// only the requested segments. An empty diff means the trees differed but the data does
    /// not (a write raced the exchange, or a tree drifted from its data).
    pub fn keys<K: Ord + Clone>(
        &mut self,
        local: &[(K, Hash)],
        remote: &[(K, Hash)],
    ) -> (KeyDiff<K>, Need) {
        if !matches!(self.state, State::AwaitKeys(_)) {
            return (KeyDiff::default(), self.finish(false));
        }
        (diff_keys(local, remote), self.finish(false))
    }
}
