//! Placement: assigning every partition's balanced slots and ordering them.
//!
//! Per-member *quotas* (how many of the `P·k` balanced slots each member
//! holds) are fixed first by water-filling: equal shares, clamped so every
//! zone can meet its per-partition bounds; rounding favours members that
//! hold more slots now, so nobody gives up a slot it would get back. Then
//! slots are assigned to meet the quotas exactly: a fresh ring fills
//! positions rank by rank with each partition's highest-scoring eligible
//! member (rendezvous hashing with capacities, so co-replica sets look
//! random and a failed node's load spreads over all others); a rebalanced
//! ring starts from the previous assignment with departed members' slots
//! empty. Whatever remains (empty slots, zone violations, members over or
//! under quota) is repaired with augmenting paths. This is a flow problem
//! whose fractional solution ("every partition holds `quota/P` of every
//! member") always exists, so the repair always finishes. Finally each
//! partition's `k` members are ordered position by position with the same
//! technique, keeping previous positions where possible.
//!
//! This module holds the shared state and the per-partition repairs; the
//! zone-level flow and the position ordering are in their own submodules.

mod ordering;
mod zone_balance;

use crate::partition::{member_hash, mix};
use crate::zones::{quotas, Layout};
use crate::{Member, Ring, RingError};
use std::cmp::Reverse;

/// Marks an unassigned balanced slot during placement (never stored in a ring).
const NONE: u16 = u16::MAX;

/// Computes all partition orders (flattened) for `members` (sorted, valid).
pub(crate) fn place(
    partition_count: u32,
    replicas: usize,
    members: &[Member],
    prev: Option<&Ring>,
) -> Result<Vec<u16>, RingError> {
    let mut e = Engine::new(partition_count as usize, replicas, members, prev);
    if prev.is_none() {
        e.greedy_fill();
    }
    e.enforce_row_bounds()?;
    e.balance_zones()?;
    e.balance_within_zones()?;
    let sets = e.order_sets()?;
    Ok(e.full_orders(&sets))
}

/// Mutable placement state plus the fixed problem description.
struct Engine {
    parts: usize,
    m: usize,
    k: usize,
    hash: Vec<u64>,
    lay: Layout,
    /// Index of the pseudo-zone of empty slots (one past the real zones).
    empty: usize,
    /// Per-partition bounds per zone, including the empty pseudo-zone.
    lo: Vec<u32>,
    hi: Vec<u32>,
    /// Target slot total per zone (0 for the empty pseudo-zone).
    target: Vec<i64>,
    quota: Vec<i64>,
    /// `p * m + v` → position of member `v` in the previous ring's order of
    /// partition `p` (`NONE` if it was not a member); empty for a fresh ring.
    prev_pos: Vec<u16>,
    prev_k: usize,
    /// `p * k + i`: the balanced slots (unordered while balancing).
    slots: Vec<u16>,
    /// `p * (zones + 1) + z`: members of zone `z` in partition `p`'s slots.
    x: Vec<u32>,
    col: Vec<i64>,
    cnt: Vec<i64>,
}

impl Engine {
    fn new(parts: usize, replicas: usize, members: &[Member], prev: Option<&Ring>) -> Engine {
        let m = members.len();
        let k = replicas.min(m);
        let lay = Layout::new(members, k);
        let empty = lay.zones.len();
        let mut lo = lay.lo.clone();
        let mut hi = lay.hi.clone();
        lo.push(0);
        hi.push(k as u32);
        let hash: Vec<u64> = members.iter().map(|x| member_hash(&x.id)).collect();

        let mut slots = vec![NONE; parts * k];
        let mut prev_pos = Vec::new();
        let mut prev_k = 0;
        if let Some(prev) = prev {
            let old_to_new: Vec<Option<u16>> = prev
                .members()
                .iter()
                .map(|o| {
                    members
                        .binary_search_by(|x| x.id.cmp(&o.id))
                        .ok()
                        .map(|i| i as u16)
                })
                .collect();
            prev_k = prev.balanced_slots();
            prev_pos = vec![NONE; parts * m];
            let mut overflow = Vec::new();
            for p in 0..parts.min(prev.partition_count() as usize) {
                overflow.clear();
                for (pos, &old) in prev.row(p as u32).iter().enumerate() {
                    let Some(Some(v)) = old_to_new.get(old as usize) else {
                        continue;
                    };
                    prev_pos[p * m + *v as usize] = pos as u16;
                    // Survivors keep their balanced slots *and positions*; a
                    // departed member's slot starts out empty and whoever
                    // fills it inherits its position, so shorter preference
                    // lists move as little as the full one.
                    if pos < prev_k.min(k) {
                        slots[p * k + pos] = *v;
                    } else if pos < prev_k {
                        overflow.push(*v);
                    }
                }
                // Only when k shrank (fewer members than replicas): all
                // survivors still fit, in the empty slots.
                for &v in &overflow {
                    if let Some(i) = (0..k).find(|&i| slots[p * k + i] == NONE) {
                        slots[p * k + i] = v;
                    }
                }
            }
        }

        let mut e = Engine {
            parts,
            m,
            k,
            hash,
            empty,
            lo,
            hi,
            target: Vec::new(),
            quota: Vec::new(),
            prev_pos,
            prev_k,
            slots,
            x: Vec::new(),
            col: Vec::new(),
            cnt: Vec::new(),
            lay,
        };
        e.recount();
        // Rank members for rounding: most slots held now first, then by hash
        // (so a fresh ring's rounding is spread pseudo-randomly, not by id).
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by_key(|&v| (Reverse(e.cnt[v]), e.hash[v], v));
        let mut rank = vec![0; m];
        for (r, &v) in order.iter().enumerate() {
            rank[v] = r;
        }
        e.quota = quotas(parts as u64, k as u64, &e.lay, &rank);
        e.target = e
            .lay
            .zones
            .iter()
            .map(|zm| zm.iter().map(|&v| e.quota[v]).sum())
            .collect();
        e.target.push(0);
        e
    }

    fn recount(&mut self) {
        let zn = self.empty + 1;
        self.x = vec![0; self.parts * zn];
        self.col = vec![0; zn];
        self.cnt = vec![0; self.m];
        for p in 0..self.parts {
            for i in 0..self.k {
                let s = self.slots[p * self.k + i];
                let z = self.zone(s);
                self.x[p * zn + z] += 1;
                self.col[z] += 1;
                if s != NONE {
                    self.cnt[s as usize] += 1;
                }
            }
        }
    }

    fn zone(&self, s: u16) -> usize {
        if s == NONE {
            self.empty
        } else {
            self.lay.zone_of[s as usize]
        }
    }

    fn xz(&self, p: usize, z: usize) -> u32 {
        self.x[p * (self.empty + 1) + z]
    }

    fn row(&self, p: usize) -> &[u16] {
        &self.slots[p * self.k..(p + 1) * self.k]
    }

    fn has(&self, p: usize, v: usize) -> bool {
        self.row(p).contains(&(v as u16))
    }

    fn score(&self, p: usize, v: usize) -> u64 {
        mix(self.hash[v], p as u32)
    }

    /// Whether `v` held a balanced slot of `p` in the previous ring; keeping
    /// or restoring such a slot moves no data.
    fn was_in(&self, p: usize, v: usize) -> bool {
        self.prev_pos
            .get(p * self.m + v)
            .is_some_and(|&pos| (pos as usize) < self.prev_k)
    }

    fn set(&mut self, p: usize, i: usize, new: u16) {
        let zn = self.empty + 1;
        let old = self.slots[p * self.k + i];
        let (zo, znew) = (self.zone(old), self.zone(new));
        self.x[p * zn + zo] -= 1;
        self.col[zo] -= 1;
        if old != NONE {
            self.cnt[old as usize] -= 1;
        }
        self.x[p * zn + znew] += 1;
        self.col[znew] += 1;
        if new != NONE {
            self.cnt[new as usize] += 1;
        }
        self.slots[p * self.k + i] = new;
    }

    /// Fresh ring: fill slots rank by rank, each partition taking its
    /// highest-scoring member that still has quota and zone room. This is
    /// rendezvous hashing with capacities, so co-replica sets look random
    /// (a failed node's load spreads over all others); the few slots it
    /// cannot fill are left to the repair passes.
    fn greedy_fill(&mut self) {
        for r in 0..self.k {
            for p in 0..self.parts {
                if self.slots[p * self.k + r] != NONE {
                    continue;
                }
                // Once the remaining slots are all needed for missing zones,
                // only those zones qualify.
                let missing: u32 = (0..self.empty)
                    .map(|z| self.lo[z].saturating_sub(self.xz(p, z)))
                    .sum();
                let restrict = missing as usize >= self.k - r;
                let mut best: Option<(u64, usize)> = None;
                for v in 0..self.m {
                    let z = self.lay.zone_of[v];
                    if self.cnt[v] >= self.quota[v]
                        || self.xz(p, z) >= self.hi[z]
                        || (restrict && self.xz(p, z) >= self.lo[z])
                        || self.has(p, v)
                    {
                        continue;
                    }
                    let s = self.score(p, v);
                    match best {
                        Some((bs, _)) if bs >= s => {}
                        _ => best = Some((s, v)),
                    }
                }
                if let Some((_, v)) = best {
                    self.set(p, r, v as u16);
                }
            }
        }
    }

    /// Slot index to vacate when zone `a` gives up a slot in `p`: prefer a
    /// slot created this round (free to undo), then the member most over
    /// quota, then the lowest score.
    fn pick_removal(&self, p: usize, a: usize) -> Option<usize> {
        let row = self.row(p);
        if a == self.empty {
            return row.iter().position(|&s| s == NONE);
        }
        row.iter()
            .enumerate()
            .filter(|&(_, &s)| s != NONE && self.lay.zone_of[s as usize] == a)
            .min_by_key(|&(_, &s)| {
                let v = s as usize;
                (
                    self.was_in(p, v),
                    Reverse(self.cnt[v] - self.quota[v]),
                    self.score(p, v),
                )
            })
            .map(|(i, _)| i)
    }

    /// Member of zone `b` to put into `p`: most under quota, then one that
    /// held the slot before, then the highest score. `NONE` for the empty zone.
    fn pick_addition(&self, p: usize, b: usize) -> Option<u16> {
        if b == self.empty {
            return Some(NONE);
        }
        self.lay.zones[b]
            .iter()
            .copied()
            .filter(|&v| !self.has(p, v))
            .min_by_key(|&v| {
                (
                    Reverse(self.quota[v] - self.cnt[v]),
                    !self.was_in(p, v),
                    Reverse(self.score(p, v)),
                )
            })
            .map(|v| v as u16)
    }

    /// Replaces a zone-`a` slot of `p` with a zone-`b` member.
    fn move_unit(&mut self, p: usize, a: usize, b: usize) -> bool {
        match (self.pick_removal(p, a), self.pick_addition(p, b)) {
            (Some(i), Some(v)) => {
                self.set(p, i, v);
                true
            }
            _ => false,
        }
    }

    /// 0 if zone `a` can give up a slot of `p` without undoing a previous
    /// placement, else 1 (the moved-out data has to be re-replicated).
    fn give_cost(&self, p: usize, a: usize) -> u32 {
        let free = a == self.empty
            || self.row(p).iter().any(|&s| {
                s != NONE && self.lay.zone_of[s as usize] == a && !self.was_in(p, s as usize)
            });
        u32::from(!free)
    }

    /// 0 if adding a zone-`b` member to `p` restores a previous slot (or
    /// `b` is the empty pseudo-zone), else 1.
    fn add_cost(&self, p: usize, b: usize) -> u32 {
        match self.pick_addition(p, b) {
            Some(NONE) => 0,
            Some(v) => u32::from(!self.was_in(p, v as usize)),
            None => 1,
        }
    }

    /// Makes every partition satisfy its zone bounds (empty slots count as
    /// their own zone with no minimum).
    fn enforce_row_bounds(&mut self) -> Result<(), RingError> {
        for p in 0..self.parts {
            for z in 0..self.empty {
                while self.xz(p, z) > self.hi[z] {
                    if !self.move_unit(p, z, self.empty) {
                        return Err(RingError::Placement("cannot shed zone excess".into()));
                    }
                }
            }
            for z in 0..self.empty {
                while self.xz(p, z) < self.lo[z] {
                    let from = if self.xz(p, self.empty) > 0 {
                        Some(self.empty)
                    } else {
                        (0..self.empty)
                            .filter(|&a| a != z && self.xz(p, a) > self.lo[a])
                            .max_by_key(|&a| (self.col[a] - self.target[a], Reverse(a)))
                    };
                    if !from.is_some_and(|a| self.move_unit(p, a, z)) {
                        return Err(RingError::Placement("cannot place a required zone".into()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Evens out member counts inside each zone. Quotas within a zone differ
    /// by at most one, so an over-quota member always holds more partitions
    /// than an under-quota one and a direct swap always exists.
    fn balance_within_zones(&mut self) -> Result<(), RingError> {
        for z in 0..self.empty {
            let zm = self.lay.zones[z].clone();
            if zm.len() < 2 {
                continue;
            }
            for _round in 0..=zm.len() + 1 {
                let mut over: Vec<usize> = zm
                    .iter()
                    .copied()
                    .filter(|&v| self.cnt[v] > self.quota[v])
                    .collect();
                let mut under: Vec<usize> = zm
                    .iter()
                    .copied()
                    .filter(|&v| self.cnt[v] < self.quota[v])
                    .collect();
                if over.is_empty() && under.is_empty() {
                    break;
                }
                over.sort_by_key(|&v| (Reverse(self.cnt[v] - self.quota[v]), v));
                under.sort_by_key(|&v| (Reverse(self.quota[v] - self.cnt[v]), v));
                for &u in &over {
                    for &v in &under {
                        let need = (self.cnt[u] - self.quota[u]).min(self.quota[v] - self.cnt[v]);
                        if need <= 0 {
                            continue;
                        }
                        let mut cand: Vec<(bool, Reverse<u64>, usize, usize)> = Vec::new();
                        for p in 0..self.parts {
                            if self.has(p, v) {
                                continue;
                            }
                            if let Some(i) = self.row(p).iter().position(|&s| s as usize == u) {
                                cand.push((self.was_in(p, u), Reverse(self.score(p, v)), p, i));
                            }
                        }
                        cand.sort_unstable();
                        for &(_, _, p, i) in cand.iter().take(need as usize) {
                            self.set(p, i, v as u16);
                        }
                    }
                }
            }
            if zm.iter().any(|&v| self.cnt[v] != self.quota[v]) {
                return Err(RingError::Placement(
                    "zone members could not be balanced".into(),
                ));
            }
        }
        Ok(())
    }
}
