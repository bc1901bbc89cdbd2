//! Ring validation: structural checks and the full set of placement guarantees.
//!
//! Separate from the accessors because it is only run when a ring is built or
//! decoded, and because it restates the guarantees independently of the code
//! that establishes them.

use super::Ring;
use crate::partition::{check_partition_count, member_hash, mix};
use crate::zones::Layout;
use crate::MAX_MEMBERS;

impl Ring {
    /// Structural validity: what accessors rely on to never panic.
    pub(super) fn check_structure(&self) -> Result<(), String> {
        check_partition_count(self.partition_count).map_err(|e| e.to_string())?;
        if self.replicas == 0 {
            return Err("replicas is zero".into());
        }
        let m = self.members.len();
        if m == 0 || m > MAX_MEMBERS {
            return Err(format!("member count {m} out of range"));
        }
        if self.members.iter().any(|x| x.id.is_empty()) {
            return Err("empty member id".into());
        }
        if self.members.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err("members not sorted by unique id".into());
        }
        if self.orders.len() != self.partition_count as usize * m {
            return Err(format!(
                "orders hold {} entries, expected {}",
                self.orders.len(),
                self.partition_count as usize * m
            ));
        }
        let mut seen = vec![u32::MAX; m];
        for (p, row) in self.orders.chunks(m).enumerate() {
            for &v in row {
                match seen.get_mut(v as usize) {
                    Some(s) if *s != p as u32 => *s = p as u32,
                    _ => return Err(format!("partition {p} is not a permutation of the members")),
                }
            }
        }
        Ok(())
    }

    /// Checks every guarantee this crate's placement makes (not only
    /// structure), returning a description of the first violation:
    ///
    /// * every order is a permutation of the members;
    /// * per partition, each zone's count among the first `k` lies in that
    ///   zone's bounds: at least 1 when there are at most `k` zones, and at
    ///   most `min(zone size, t)` where `t` is the smallest cap under which
    ///   `k` slots can still be filled (so `1` when there are `≥ k` zones);
    /// * members of the same zone hold first-`k` counts within one of each
    ///   other, and when all zones are the same size every member holds
    ///   `⌊Pk/m⌋` or `⌈Pk/m⌉`;
    /// * each member is first in `⌊c/k⌋..=⌈c/k⌉` partitions, `c` being its
    ///   first-`k` count;
    /// * positions after `k` are in descending [`rendezvous_score`](crate::rendezvous_score) order.
    ///
    /// [`Ring::new`] and [`Ring::rebalance`] return an error rather than a
    /// ring that breaks the first two, and debug-assert the rest. A ring
    /// deserialized from elsewhere is only guaranteed to be structurally
    /// valid.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.verify(true)
    }

    /// Structure and zone bounds; with `full`, also balance, coordinator
    /// spread and fallback order.
    pub(super) fn verify(&self, full: bool) -> Result<(), String> {
        self.check_structure()?;
        let m = self.members.len();
        let k = self.balanced_slots();
        let parts = self.partition_count as usize;
        let lay = Layout::new(&self.members, k);
        let nz = lay.zones.len();
        let mut count = vec![0u64; m];
        let mut first = vec![0u64; m];
        let mut zc = vec![0u32; nz];
        let hashes: Vec<u64> = if full {
            self.members.iter().map(|x| member_hash(&x.id)).collect()
        } else {
            Vec::new()
        };
        for p in 0..self.partition_count {
            let row = self.row(p);
            zc.iter_mut().for_each(|c| *c = 0);
            for &v in &row[..k] {
                count[v as usize] += 1;
                zc[lay.zone_of[v as usize]] += 1;
            }
            first[row[0] as usize] += 1;
            for (z, &c) in zc.iter().enumerate() {
                if c < lay.lo[z] || c > lay.hi[z] {
                    return Err(format!(
                        "partition {p}: zone #{z} holds {c} of the first {k}, allowed {}..={}",
                        lay.lo[z], lay.hi[z]
                    ));
                }
            }
            let score = |v: u16| mix(hashes[v as usize], p);
            if full && row[k..].windows(2).any(|w| score(w[0]) < score(w[1])) {
                return Err(format!("partition {p}: fallbacks not in rendezvous order"));
            }
        }
        if !full {
            return Ok(());
        }
        for zm in &lay.zones {
            let lo = zm.iter().map(|&v| count[v]).min().unwrap_or(0);
            let hi = zm.iter().map(|&v| count[v]).max().unwrap_or(0);
            if hi > lo + 1 {
                return Err(format!(
                    "zone of {:?}: member counts range {lo}..={hi}",
                    self.members[zm[0]].id
                ));
            }
        }
        if lay.zones.iter().all(|zm| zm.len() == lay.zones[0].len()) {
            let total = (parts * k) as u64;
            let (lo, hi) = (total / m as u64, total.div_ceil(m as u64));
            if let Some(v) = (0..m).find(|&v| count[v] < lo || count[v] > hi) {
                return Err(format!(
                    "{:?} holds {} slots, expected {lo}..={hi}",
                    self.members[v].id, count[v]
                ));
            }
        }
        let k64 = k as u64;
        if let Some(v) =
            (0..m).find(|&v| first[v] < count[v] / k64 || first[v] > count[v].div_ceil(k64))
        {
            return Err(format!(
                "{:?} is first in {} partitions but holds {} slots (k = {k})",
                self.members[v].id, first[v], count[v]
            ));
        }
        Ok(())
    }
}
