//! The membership schedule of a run with membership changes: now and then a spare node
//! joins, a live member is asked to leave, or a member is killed and removed (sometimes to
//! come back later, unaware at first that it was removed). A change is made only while at
//! least N members would stay active; a remove loses the node's copies, so it counts as a
//! disk fault (one at a time) until its partitions have moved.

use chorus_core::membership::MemberState;
use rand::Rng;

use super::{Ev, World};
use crate::engine::SEC;
use crate::nemesis::Fault;
use crate::node::{membership, Start};

#[derive(Clone, Copy, Debug)]
enum Change {
    Join(usize),
    Leave(usize),
    Remove(usize),
}

impl World {
    pub(super) fn membership_tick(&mut self) {
        if !self.running {
            return;
        }
        let latest = self.latest();
        let active: Vec<usize> = {
            let place = &self.nodes[latest].place;
            self.nodes[latest]
                .cluster
                .active()
                .iter()
                .filter_map(|m| place.index(&m.id))
                .collect()
        };
        let mut options = Vec::new();
        if let Some(spare) = (0..self.nodes.len()).find(|&i| !self.started[i]) {
            options.push(Change::Join(spare));
        }
        if active.len() > self.cfg.n {
            let up: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| self.nodes[i].is_up())
                .collect();
            if !up.is_empty() {
                options.push(Change::Leave(up[self.rng.random_range(0..up.len())]));
            }
            if !self.disk_fault() {
                let victim = active[self.rng.random_range(0..active.len())];
                options.push(Change::Remove(victim));
            }
        }
        if !options.is_empty() {
            let change = options[self.rng.random_range(0..options.len())];
            self.change(change);
        }
        let next = self.rng.random_range(6 * SEC..12 * SEC);
        self.q.after(next, Ev::MembershipTick);
    }

    fn note_change(&mut self, name: &'static str, change: Change) {
        *self.faults.entry(name).or_insert(0) += 1;
        self.trace
            .note(&[b"membership", format!("{change:?}").as_bytes()]);
        if self.cfg.watch.is_some() {
            println!("{:>9} membership {change:?}", self.q.now());
        }
    }

    fn change(&mut self, change: Change) {
        match change {
            Change::Join(n) => {
                self.note_change("join", change);
                self.started[n] = true;
                self.start_node(n, Start::Clean);
            }
            Change::Leave(n) => {
                if self.ask_some_node(n, MemberState::Leaving) {
                    self.note_change("leave", change);
                }
            }
            Change::Remove(n) => {
                // Killed first: `remove` is for dead nodes. Peers see it down after a while.
                self.note_change("remove", change);
                self.removing = Some(n);
                self.nodes[n].crash();
                self.q.after(2 * SEC, Ev::Remove(n));
                if self.rng.random_bool(0.5) {
                    let back = 2 * SEC + self.rng.random_range(SEC..8 * SEC);
                    self.q.after(back, Ev::Fault(Fault::Restart(n)));
                }
            }
        }
    }

    /// The `remove` request for a node killed two seconds ago.
    pub(super) fn remove(&mut self, n: usize) {
        if !self.ask_some_node(n, MemberState::Left) {
            self.removing = None;
        }
    }

    /// Hands a leave or remove request to the running members in turn, from a random one,
    /// until one accepts it.
    fn ask_some_node(&mut self, target: usize, to: MemberState) -> bool {
        let admins: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != target && self.started[i] && self.nodes[i].is_up())
            .collect();
        if admins.is_empty() {
            return false;
        }
        let first = self.rng.random_range(0..admins.len());
        for k in 0..admins.len() {
            let admin = admins[(first + k) % admins.len()];
            let mut accepted = false;
            self.with_node(admin, |node, env| {
                accepted = membership::change_member(node, env, target, to);
            });
            if accepted {
                return true;
            }
        }
        false
    }
}
