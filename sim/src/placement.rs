//! Which nodes replicate which key: a `chorus-ring` ring over the simulated nodes, with the
//! preference list of every partition resolved to node indices once.

use chorus_ring::{partition_for, Member, Ring, RingError};

/// The cluster's placement (fixed for a run: the simulator has no membership changes yet).
#[derive(Clone, Debug)]
pub struct Placement {
    partitions: u32,
    names: Vec<String>,
    prefs: Vec<Vec<usize>>,
}

impl Placement {
    /// A ring of `names` with `partitions` partitions and `n` replicas per key.
    pub fn new(names: &[String], partitions: u32, n: usize) -> Result<Placement, RingError> {
        let members = names.iter().map(Member::new).collect();
        let ring = Ring::new(partitions, n, members)?;
        let prefs = (0..partitions)
            .map(|p| {
                ring.preference_list(p, n)
                    .into_iter()
                    .filter_map(|name| names.iter().position(|x| x == name))
                    .collect()
            })
            .collect();
        Ok(Placement {
            partitions,
            names: names.to_vec(),
            prefs,
        })
    }

    /// The partition of `key` (all simulated keys live in one bucket).
    pub fn partition(&self, key: &str) -> u32 {
        partition_for(self.partitions, crate::BUCKET, key.as_bytes())
    }

    /// The replicas of a partition, in preference order.
    pub fn pref(&self, partition: u32) -> &[usize] {
        self.prefs
            .get(partition as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The replicas of `key`.
    pub fn pref_of(&self, key: &str) -> &[usize] {
        self.pref(self.partition(key))
    }

    /// Partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// A node's name (as it appears in actors and quorums).
    pub fn name(&self, node: usize) -> &str {
        self.names.get(node).map(String::as_str).unwrap_or("?")
    }

    /// The index of a named node.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Node names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}
