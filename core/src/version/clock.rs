//! The version vector: a compact, downward-closed set of dots, an object's clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Actor, Dot, VersionError};

/// A map `actor -> max counter`, read as the downward-closed set of dots
/// `{(a, 1..=vv[a])}`.
///
/// Zero entries are never stored (they mean the same as absent ones), so equal
/// sets compare and encode equal. Serialized as a sequence of `(actor, counter)`
/// pairs in actor order, which also works for formats without struct map keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: BTreeMap<Actor, u64>,
}

impl VersionVector {
    /// The empty vector (covers no dot).
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// The max counter seen for `actor`, 0 if none.
    pub fn get(&self, actor: &Actor) -> u64 {
        self.entries.get(actor).copied().unwrap_or(0)
    }

    /// Whether `dot` is in the set (`dot.counter <= self[dot.actor]`).
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// Pointwise max: the union of the two dot sets.
    pub fn join(&mut self, other: &VersionVector) {
        for (actor, &counter) in &other.entries {
            self.raise(actor, counter);
        }
    }

    /// Whether every dot of `other` is covered by `self` (`other <= self`).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other
            .entries
            .iter()
            .all(|(actor, &counter)| counter <= self.get(actor))
    }

    /// Whether no dot is covered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of actors with a non-zero counter.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64)> + '_ {
        self.entries
            .iter()
            .map(|(actor, &counter)| (actor, counter))
    }

    /// Build from decoded pairs: a repeated actor is ambiguous and rejected,
    /// zero counters are dropped to keep the canonical form.
    pub(super) fn from_entries(pairs: Vec<(Actor, u64)>) -> Result<VersionVector, VersionError> {
        let mut entries = BTreeMap::new();
        for (actor, counter) in pairs {
            if entries.contains_key(&actor) {
                return Err(VersionError::DuplicateActor(actor));
            }
            entries.insert(actor, counter);
        }
        entries.retain(|_, counter| *counter != 0);
        Ok(VersionVector { entries })
    }

    /// `self[actor] = max(self[actor], counter)`, never storing zeros.
    pub(crate) fn raise(&mut self, actor: &Actor, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.get_mut(actor) {
            Some(current) => *current = (*current).max(counter),
            None => {
                self.entries.insert(actor.clone(), counter);
            }
        }
    }
}

/// Collects with join semantics: repeated actors keep the max, zeros vanish.
impl FromIterator<(Actor, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (actor, counter) in iter {
            vv.raise(&actor, counter);
        }
        vv
    }
}

impl Serialize for VersionVector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries.iter())
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(Actor, u64)>::deserialize(deserializer)?;
        VersionVector::from_entries(pairs).map_err(serde::de::Error::custom)
    }
}
