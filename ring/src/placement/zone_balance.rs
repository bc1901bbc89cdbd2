//! Zone balancing: bringing each zone's slot total to its target.
//!
//! A transportation problem solved with direct moves and 0-1 BFS augmenting
//! paths that prefer moves creating no new replica. It is the largest and
//! most intricate pass, so it is kept apart from the simpler repairs.

use super::{Engine, NONE};
use crate::RingError;
use std::cmp::Reverse;
use std::collections::VecDeque;

/// One move of an augmenting path: in partition `.0`, a slot of zone `.1`
/// goes to zone `.2`.
type Step = (usize, usize, usize);

impl Engine {
    /// Brings every zone's slot total to its target (and so the empty
    /// pseudo-zone to zero) while keeping every partition within its zone
    /// bounds: a transportation problem solved by augmenting paths.
    pub(super) fn balance_zones(&mut self) -> Result<(), RingError> {
        let zn = self.empty + 1;
        let mut budget = 4 * self.parts * self.k + 16;
        loop {
            let over: Vec<usize> = (0..zn).filter(|&z| self.col[z] > self.target[z]).collect();
            let under: Vec<usize> = (0..zn).filter(|&z| self.col[z] < self.target[z]).collect();
            if over.is_empty() && under.is_empty() {
                return Ok(());
            }
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| RingError::Placement("zone balancing did not converge".into()))?;
            if self.direct_zone_moves(&over, &under, false) {
                continue;
            }
            let Some((cost, path)) = self.cheapest_zone_path() else {
                return Err(RingError::Placement(
                    "zone balancing found no augmenting path".into(),
                ));
            };
            // `cost` counts one per step plus the net slots the path
            // creates. If it creates any, a direct move (which creates
            // exactly one) is as cheap as any route, and can be done in bulk.
            if cost as usize > path.len() && self.direct_zone_moves(&over, &under, true) {
                continue;
            }
            let steps: Vec<(usize, usize, u32)> = path
                .iter()
                .map(|&(p, a, b)| (a, b, self.give_cost(p, a) + self.add_cost(p, b)))
                .collect();
            for (p, a, b) in path {
                if !self.move_unit(p, a, b) {
                    return Err(RingError::Placement(
                        "augmenting path became invalid".into(),
                    ));
                }
            }
            self.repeat_path(&steps);
        }
    }

    /// Re-applies a just-used route (the same zone sequence, each step no
    /// dearer than before) through other partitions for as long as its ends
    /// stay over and under target. Searching is the expensive part; when
    /// many units need the same detour this does them in one sweep.
    fn repeat_path(&mut self, steps: &[(usize, usize, u32)]) {
        let (Some(&(first, _, _)), Some(&(_, last, _))) = (steps.first(), steps.last()) else {
            return;
        };
        let mut cursor = vec![0usize; steps.len()];
        let mut rows = vec![0usize; steps.len()];
        'unit: while self.col[first] > self.target[first] && self.col[last] < self.target[last] {
            for (i, &(a, b, cost)) in steps.iter().enumerate() {
                let found = (cursor[i]..self.parts).find(|&p| {
                    self.xz(p, a) > self.lo[a]
                        && self.xz(p, b) < self.hi[b]
                        && !rows[..i].contains(&p)
                        && self.give_cost(p, a) + self.add_cost(p, b) <= cost
                });
                match found {
                    Some(p) => {
                        rows[i] = p;
                        cursor[i] = p + 1;
                    }
                    None => break 'unit,
                }
            }
            // Distinct partitions, each valid now: applying in order keeps
            // every step valid and leaves intermediate zones unchanged.
            for (i, &(a, b, _)) in steps.iter().enumerate() {
                self.move_unit(rows[i], a, b);
            }
        }
    }

    /// Moves slots straight from over-target to under-target zones, in bulk.
    fn direct_zone_moves(&mut self, over: &[usize], under: &[usize], allow_costly: bool) -> bool {
        // Most constrained pairs first: a zone that can give (or take) in only
        // a few partitions must not find them used up by zones with plenty of
        // choice, or it would need a detour that costs an extra move.
        let mut pairs: Vec<(i64, usize, usize)> = Vec::new();
        for &a in over {
            for &b in under {
                let need = (self.col[a] - self.target[a]).min(self.target[b] - self.col[b]);
                if need > 0 {
                    let room = (0..self.parts)
                        .filter(|&p| self.can_move(p, a, b, allow_costly))
                        .count();
                    pairs.push((room as i64 - need, a, b));
                }
            }
        }
        pairs.sort_unstable();
        let mut moved = false;
        for (_, a, b) in pairs {
            moved |= self.direct_pair(a, b, allow_costly);
        }
        moved
    }

    fn can_move(&self, p: usize, a: usize, b: usize, allow_costly: bool) -> bool {
        self.xz(p, a) > self.lo[a]
            && self.xz(p, b) < self.hi[b]
            && (allow_costly || self.give_cost(p, a) == 0)
    }

    /// Moves as many slots from zone `a` to zone `b` as both need, cheapest
    /// first.
    fn direct_pair(&mut self, a: usize, b: usize, allow_costly: bool) -> bool {
        let need = (self.col[a] - self.target[a]).min(self.target[b] - self.col[b]);
        if need <= 0 {
            return false;
        }
        let mut cand: Vec<(u32, Reverse<u64>, usize)> = (0..self.parts)
            .filter(|&p| self.can_move(p, a, b, allow_costly))
            .map(|p| {
                let s = match self.pick_addition(p, b) {
                    Some(v) if v != NONE => self.score(p, v as usize),
                    _ => 0,
                };
                (self.give_cost(p, a), Reverse(s), p)
            })
            .collect();
        cand.sort_unstable();
        // A move's true price: the slot it creates, minus one if it undoes a
        // slot created this round, plus one if the member pushed out drops
        // below quota (it will need a slot elsewhere). Take the cheapest
        // moves first; surplus changes as we go.
        let mut left = need;
        let mut used = vec![false; cand.len()];
        for max_price in 0..=2 {
            for (ci, &(c, _, p)) in cand.iter().enumerate() {
                if left == 0 {
                    return true;
                }
                if used[ci] || self.xz(p, a) <= self.lo[a] || self.xz(p, b) >= self.hi[b] {
                    continue;
                }
                let surplus = match self.pick_removal(p, a).map(|i| self.row(p)[i]) {
                    Some(s) if s != NONE => self.cnt[s as usize] > self.quota[s as usize],
                    _ => true,
                };
                if c + u32::from(!surplus) > max_price {
                    continue;
                }
                used[ci] = true;
                if self.move_unit(p, a, b) {
                    left -= 1;
                }
            }
        }
        left < need
    }

    /// Cheapest augmenting path from an over-target zone to an under-target
    /// zone, as `(partition, from zone, to zone)` steps. The graph alternates
    /// zones and partitions: zone `a` → partition `p` if `p` can spare an `a`
    /// slot, partition `p` → zone `b` if `p` has room for another `b`.
    ///
    /// A step replaces member `u` by `w` in one partition, changing the number
    /// of newly created slots by `[w new] - [u new]`; adding 1 per step makes
    /// that non-negative and splits into the two 0/1 edge weights
    /// `[u kept from before]` and `[w new]`. So 0-1 BFS finds the path
    /// minimising (slots created + steps), which prefers re-routing this
    /// round's placements and restoring previous ones over creating more.
    fn cheapest_zone_path(&self) -> Option<(u32, Vec<Step>)> {
        let zn = self.empty + 1;
        let total = zn + self.parts;
        let mut dist = vec![u32::MAX; total];
        let mut parent = vec![usize::MAX; total];
        let mut done = vec![false; total];
        let mut queue = VecDeque::new();
        for (z, d) in dist.iter_mut().enumerate().take(zn) {
            if self.col[z] > self.target[z] {
                *d = 0;
                queue.push_back(z);
            }
        }
        while let Some(u) = queue.pop_front() {
            if done[u] {
                continue;
            }
            done[u] = true;
            if u < zn {
                if self.col[u] < self.target[u] {
                    let mut path = Vec::new();
                    let mut b = u;
                    while parent[b] != usize::MAX {
                        let node = parent[b];
                        let a = parent[node];
                        path.push((node - zn, a, b));
                        b = a;
                    }
                    path.reverse();
                    return Some((dist[u], path));
                }
                for p in 0..self.parts {
                    let node = zn + p;
                    if done[node] || self.xz(p, u) <= self.lo[u] {
                        continue;
                    }
                    let c = self.give_cost(p, u);
                    let nd = dist[u] + c;
                    if nd < dist[node] {
                        dist[node] = nd;
                        parent[node] = u;
                        if c == 0 {
                            queue.push_front(node);
                        } else {
                            queue.push_back(node);
                        }
                    }
                }
            } else {
                let p = u - zn;
                for b in 0..zn {
                    if done[b] || self.xz(p, b) >= self.hi[b] {
                        continue;
                    }
                    let c = self.add_cost(p, b);
                    let nd = dist[u] + c;
                    if nd < dist[b] {
                        dist[b] = nd;
                        parent[b] = u;
                        if c == 0 {
                            queue.push_front(b);
                        } else {
                            queue.push_back(b);
                        }
                    }
                }
            }
        }
        None
    }
}
