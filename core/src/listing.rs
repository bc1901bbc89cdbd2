//! Key listing and bucket truncation as coverage queries: which nodes a listing asks for
//! which partitions (one replica of each, plus a new owner while a partition moves), which
//! nodes a truncation must reach (every owner, old and new), how the sorted answers of
//! the nodes merge into one page, and the opaque token that resumes after a page. Pure
//! functions of the cluster state; the node does the scanning and the messages.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use crate::membership::ClusterState;
use crate::plan::Plan;

/// Keys a page holds when the client names no limit.
pub const DEFAULT_LIMIT: u32 = 1_000;
/// The most keys one page may hold.
pub const MAX_LIMIT: u32 = 10_000;

/// Why a listing or truncation can't be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoverError {
    /// The node has no ring yet.
    #[error("this node has not joined a cluster yet (no ring)")]
    NoRing,
    /// Every replica of a partition is down or already failed this request.
    #[error("no reachable replica for partition {partition} (replicas: {})", replicas.join(", "))]
    Uncovered {
        partition: u32,
        replicas: Vec<String>,
    },
}

/// The replica sets of a partition: the set that holds all of its data, and while it moves,
/// the new owners.
fn sets(state: &ClusterState, partition: u32, n: usize) -> Result<Plan, CoverError> {
    let ring = state.ring.as_ref().ok_or(CoverError::NoRing)?;
    let plan = Plan::new(ring, state.moving(partition), partition, n, |_| {
        Ok::<usize, Infallible>(1)
    });
    match plan {
        Ok(p) => Ok(p),
        Err(never) => match never {},
    }
}

/// For each node asked, the partitions it lists. Each partition gets one usable replica of
/// the set that holds all of its data, taken in turn by partition number, so the scans
/// spread over the nodes and run in parallel; while a partition moves, also one usable new
/// owner, when there is one, since it may hold writes the chosen old replica lacks. A partition without a usable replica in
/// its data-holding set fails the whole plan: a listing is never silently partial.
pub fn cover(
    state: &ClusterState,
    n: usize,
    partitions: impl IntoIterator<Item = u32>,
    usable: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u32>>, CoverError> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        let pick = |set: &[String]| -> Option<String> {
            let live: Vec<&String> = set.iter().filter(|m| usable(m)).collect();
            let turn = partition as usize % live.len().max(1);
            live.get(turn).map(|m| m.to_string())
        };
        let plan = sets(state, partition, n)?;
        let first = pick(&plan.pref).ok_or_else(|| CoverError::Uncovered {
            partition,
            replicas: plan.pref.clone(),
        })?;
        let second = plan
            .also
            .as_deref()
            .filter(|new| !new.contains(&first))
            .and_then(pick);
        for node in std::iter::once(first).chain(second) {
            out.entry(node).or_default().push(partition);
        }
    }
    Ok(out)
}

/// Every owner of every partition, with the partitions it owns: the replica set and, while
/// a partition moves, the new owners too. A truncation must reach all of them, since each
/// can only delete what it holds.
pub fn owners(
    state: &ClusterState,
    n: usize,
    partitions: impl IntoIterator<Item = u32>,
) -> Result<BTreeMap<String, Vec<u32>>, CoverError> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        for node in sets(state, partition, n)?.write_targets() {
            out.entry(node).or_default().push(partition);
        }
    }
    Ok(out)
}

/// One node's answer to a listing: its keys after the cursor, sorted; `more` when it
/// stopped at its limit (it may hold further keys). A node that says `more` returns at least
/// one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub keys: Vec<Vec<u8>>,
    pub more: bool,
}

/// One page of a listing: keys in byte order, and the key to resume after (`None` when
/// the listing is done).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<Vec<u8>>,
    pub next: Option<Vec<u8>>,
}

/// Bytes a key costs in a page beyond its own length.
pub const KEY_OVERHEAD: usize = 8;

/// Merges the nodes' answers into a page of at most `limit` keys and `max_bytes` (counting
/// [`KEY_OVERHEAD`] a key; always at least one key), each once, in order. A node that
/// stopped early may hold keys past its last one that the others didn't return, so the
/// page ends at the smallest last key among such nodes.
pub fn merge(answers: Vec<Answer>, limit: usize, max_bytes: usize) -> Page {
    let bound = answers
        .iter()
        .filter(|a| a.more)
        .filter_map(|a| a.keys.last())
        .min()
        .cloned();
    let mut all = BTreeSet::new();
    for a in answers {
        all.extend(a.keys);
    }
    let total = all.len();
    let mut keys: Vec<Vec<u8>> = all
        .into_iter()
        .filter(|k| bound.as_ref().is_none_or(|b| k <= b))
        .take(limit.max(1))
        .collect();
    let mut bytes = 0;
    let fit = keys
        .iter()
        .position(|k| {
            bytes += k.len() + KEY_OVERHEAD;
            bytes > max_bytes
        })
        .map_or(keys.len(), |cut| cut.max(1));
    keys.truncate(fit);
    let next = if keys.len() < total || bound.is_some() {
        keys.last().cloned()
    } else {
        None
    };
    Page { keys, next }
}

/// A page token that can't be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed page token {0:?}: pass back the `next` of an earlier page unchanged")]
pub struct BadToken(pub String);

/// What a token starts with: names the format, so another one can come later.
const TOKEN_TAG: &str = "k1.";

/// The token for resuming after `key`: opaque to clients, printable, no separators.
pub fn encode_token(key: &[u8]) -> String {
    let mut out = String::with_capacity(TOKEN_TAG.len() + 2 * key.len());
    out.push_str(TOKEN_TAG);
    for b in key {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The key a token resumes after.
pub fn decode_token(token: &str) -> Result<Vec<u8>, BadToken> {
    let bad = || BadToken(token.chars().take(64).collect());
    let hex = token.strip_prefix(TOKEN_TAG).ok_or_else(bad)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err(bad());
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    };
    hex.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first key a listing may return: past `after` (if any) and not before `prefix`.
pub fn start_key(prefix: &[u8], after: Option<&[u8]>) -> Vec<u8> {
    match after {
        Some(a) if a >= prefix => {
            let mut k = a.to_vec();
            k.push(0);
            k
        }
        _ => prefix.to_vec(),
    }
}

#[cfg(test)]
mod tests;
