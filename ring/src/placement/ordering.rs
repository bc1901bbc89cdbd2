//! Ordering: turning each partition's balanced set into an ordered list.
//!
//! Runs after the sets are final and balances who is first, second, ... per
//! position, so shorter preference lists and coordinators stay even; then
//! appends the fallbacks by rendezvous score.

use super::Engine;
use crate::RingError;
use std::cmp::Reverse;
use std::collections::VecDeque;

impl Engine {
    /// Orders each partition's balanced set, position by position.
    ///
    /// Position `j` of partition `p` is chosen among the members not yet
    /// placed (`w = k - j` of them). A member with `r` unplaced slots gets
    /// `⌊r/w⌋` or `⌈r/w⌉` position-`j` duties; this is always achievable (each
    /// partition spreads `1/w` over its unplaced members fractionally) and
    /// is enforced with augmenting paths. Before that, a best-effort pass aims
    /// at the tighter target "within one of `c·(j+1)/k` after `j+1`
    /// positions" so that shorter preference lists are balanced too. The
    /// starting choice is the slot order (the previous ring's order, with a
    /// newcomer in the position of the member it replaced), so positions are
    /// kept unless balance needs them to change.
    pub(super) fn order_sets(&self) -> Result<Vec<u16>, RingError> {
        let (k, m) = (self.k, self.m);
        // Slot order is the starting order: rank order for a fresh ring, the
        // previous order (replacements in place) for a rebalance.
        let mut rows = self.slots.clone();
        let c: Vec<i64> = self.cnt.clone();
        let mut pre = vec![0i64; m];
        for j in 0..k.saturating_sub(1) {
            let w = (k - j) as i64;
            let mut layer = Layer {
                e: self,
                rows: &mut rows,
                j,
                choice: vec![j; self.parts],
                cnt: vec![0; m],
                lo: vec![0; m],
                hi: vec![0; m],
            };
            for p in 0..self.parts {
                layer.cnt[layer.rows[p * k + j] as usize] += 1;
            }
            let kk = k as i64;
            let mut g_lo = vec![0; m];
            let mut g_hi = vec![0; m];
            for v in 0..m {
                let rem = c[v] - pre[v];
                g_lo[v] = rem.div_euclid(w);
                g_hi[v] = (rem + w - 1).div_euclid(w);
                let d_lo = (c[v] * (j as i64 + 1)).div_euclid(kk) - pre[v];
                let d_hi = (c[v] * (j as i64 + 1) + kk - 1).div_euclid(kk) - pre[v];
                let (lo, hi) = (g_lo[v].max(d_lo), g_hi[v].min(d_hi));
                (layer.lo[v], layer.hi[v]) = if lo <= hi {
                    (lo, hi)
                } else {
                    (g_lo[v], g_hi[v])
                };
            }
            layer.balance(false)?;
            layer.lo = g_lo;
            layer.hi = g_hi;
            layer.balance(true)?;
            let (choice, cnt) = (layer.choice, layer.cnt);
            for p in 0..self.parts {
                rows[p * k + j..=p * k + choice[p]].rotate_right(1);
            }
            for v in 0..m {
                pre[v] += cnt[v];
            }
        }
        Ok(rows)
    }

    /// Appends the fallbacks (by rendezvous score) to each ordered set.
    pub(super) fn full_orders(&self, sets: &[u16]) -> Vec<u16> {
        let (k, m) = (self.k, self.m);
        let mut out = Vec::with_capacity(self.parts * m);
        let mut rest: Vec<(Reverse<u64>, u16)> = Vec::with_capacity(m);
        let mut in_set = vec![false; m];
        for p in 0..self.parts {
            let set = &sets[p * k..(p + 1) * k];
            out.extend_from_slice(set);
            set.iter().for_each(|&v| in_set[v as usize] = true);
            rest.clear();
            rest.extend(
                (0..m)
                    .filter(|&v| !in_set[v])
                    .map(|v| (Reverse(self.score(p, v)), v as u16)),
            );
            set.iter().for_each(|&v| in_set[v as usize] = false);
            rest.sort_unstable();
            out.extend(rest.iter().map(|&(_, v)| v));
        }
        out
    }
}

/// Balancing state for one position (`j`) of every partition's order.
struct Layer<'a> {
    e: &'a Engine,
    rows: &'a mut Vec<u16>,
    j: usize,
    /// Index into the partition's row of the member chosen for position `j`
    /// (always `>= j`: positions before `j` are settled).
    choice: Vec<usize>,
    cnt: Vec<i64>,
    lo: Vec<i64>,
    hi: Vec<i64>,
}

impl Layer<'_> {
    fn chosen(&self, p: usize) -> usize {
        self.rows[p * self.e.k + self.choice[p]] as usize
    }

    /// Row index of `v` among the unplaced members of `p`.
    fn find(&self, p: usize, v: usize) -> Option<usize> {
        let k = self.e.k;
        (self.j..k).find(|&i| self.rows[p * k + i] as usize == v)
    }

    fn assign(&mut self, p: usize, i: usize) {
        let old = self.chosen(p);
        self.cnt[old] -= 1;
        self.choice[p] = i;
        let new = self.chosen(p);
        self.cnt[new] += 1;
    }

    /// Applies `lo`/`hi` with augmenting paths. Strict mode fails if a bound
    /// cannot be met (only used with bounds proven feasible).
    fn balance(&mut self, strict: bool) -> Result<(), RingError> {
        let m = self.e.m;
        let parts = self.e.parts;
        let mut budget = 4 * parts + 16;
        // Push counts down to `hi`; nobody drops below `lo` doing so.
        loop {
            let over: Vec<usize> = (0..m).filter(|&v| self.cnt[v] > self.hi[v]).collect();
            if over.is_empty() {
                break;
            }
            budget = budget.checked_sub(1).ok_or_else(|| {
                RingError::Placement("position balancing did not converge".into())
            })?;
            if self.direct(true) {
                continue;
            }
            match self.path(&over, |l, w| l.cnt[w] < l.hi[w], true) {
                Some(path) => path.into_iter().for_each(|(p, i)| self.assign(p, i)),
                None if strict => {
                    return Err(RingError::Placement(
                        "position balance infeasible (upper)".into(),
                    ))
                }
                None => break,
            }
        }
        // Lift counts up to `lo`; donors stay at or above `lo`, takers at or below `hi`.
        loop {
            let under: Vec<usize> = (0..m).filter(|&v| self.cnt[v] < self.lo[v]).collect();
            if under.is_empty() {
                break;
            }
            budget = budget.checked_sub(1).ok_or_else(|| {
                RingError::Placement("position balancing did not converge".into())
            })?;
            if self.direct(false) {
                continue;
            }
            match self.path(&under, |l, w| l.cnt[w] > l.lo[w], false) {
                Some(path) => path.into_iter().for_each(|(p, i)| self.assign(p, i)),
                None if strict => {
                    return Err(RingError::Placement(
                        "position balance infeasible (lower)".into(),
                    ))
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Moves position-`j` duty straight from members that must give to
    /// members that may take, wherever one partition holds both, in a single
    /// pass over the partitions. `upper` selects which bound is being fixed.
    /// Within a partition the most preferred (earliest) taker wins.
    fn direct(&mut self, upper: bool) -> bool {
        let k = self.e.k;
        let m = self.e.m;
        let (mut give, mut take): (Vec<i64>, Vec<i64>) = if upper {
            (
                (0..m).map(|v| self.cnt[v] - self.hi[v]).collect(),
                (0..m).map(|v| self.hi[v] - self.cnt[v]).collect(),
            )
        } else {
            (
                (0..m).map(|v| self.cnt[v] - self.lo[v]).collect(),
                (0..m).map(|v| self.lo[v] - self.cnt[v]).collect(),
            )
        };
        let mut moved = false;
        for p in 0..self.e.parts {
            let u = self.chosen(p);
            if give[u] <= 0 {
                continue;
            }
            let to = (self.j..k).find(|&i| {
                let w = self.rows[p * k + i] as usize;
                w != u && take[w] > 0
            });
            if let Some(i) = to {
                let w = self.rows[p * k + i] as usize;
                self.assign(p, i);
                give[u] -= 1;
                take[w] -= 1;
                moved = true;
            }
        }
        moved
    }

    /// Shortest chain of duty hand-overs between `sources` and a member
    /// satisfying `goal`, as `(partition, new choice index)` steps.
    /// Forward (`true`): sources give duty away along the chain and the goal
    /// member receives it. Backward: the goal member gives, sources receive.
    fn path(
        &self,
        sources: &[usize],
        goal: impl Fn(&Self, usize) -> bool,
        forward: bool,
    ) -> Option<Vec<(usize, usize)>> {
        let (k, m, parts) = (self.e.k, self.e.m, self.e.parts);
        // Edge u → w via p: p's position-j member is u and w is unplaced in p;
        // following it hands p's duty from u to w.
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); m];
        for p in 0..parts {
            let u = self.chosen(p);
            for i in self.j..k {
                let w = self.rows[p * k + i] as usize;
                if w == u {
                    continue;
                }
                if forward {
                    adj[u].push(p);
                } else {
                    adj[w].push(p);
                }
                if forward {
                    break;
                }
            }
        }
        let mut seen_member = vec![false; m];
        let mut seen_part = vec![false; parts];
        // For a member: (partition it was reached through, member it came from).
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; m];
        let mut queue = VecDeque::new();
        for &s in sources {
            seen_member[s] = true;
            queue.push_back(s);
        }
        while let Some(u) = queue.pop_front() {
            if !sources.contains(&u) && goal(self, u) {
                // Walk back to a source, collecting hand-overs.
                let mut steps = Vec::new();
                let mut cur = u;
                while let Some((p, from)) = parent[cur] {
                    // Forward: p's duty goes from `from` to `cur`.
                    // Backward: p's duty goes from `cur` to `from`.
                    let to = if forward { cur } else { from };
                    steps.push((p, self.find(p, to)?));
                    cur = from;
                }
                return Some(steps);
            }
            for &p in &adj[u] {
                if seen_part[p] {
                    continue;
                }
                seen_part[p] = true;
                if forward {
                    for i in self.j..k {
                        let w = self.rows[p * k + i] as usize;
                        if !seen_member[w] {
                            seen_member[w] = true;
                            parent[w] = Some((p, u));
                            queue.push_back(w);
                        }
                    }
                } else {
                    let w = self.chosen(p);
                    if !seen_member[w] {
                        seen_member[w] = true;
                        parent[w] = Some((p, u));
                        queue.push_back(w);
                    }
                }
            }
        }
        None
    }
}
