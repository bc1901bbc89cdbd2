//! The discrete-event engine: virtual time, an event queue ordered by (time, sequence
//! number), the one seeded RNG every random choice draws from, and the trace hash that proves
//! a seed replays byte for byte.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Virtual time in microseconds since the start of the run.
pub type Time = u64;

/// One millisecond of virtual time.
pub const MS: Time = 1_000;
/// One second of virtual time.
pub const SEC: Time = 1_000_000;

/// The RNG of a run: every choice (latencies, faults, workloads, epochs) comes from it, in
/// event order, so a seed fixes the whole history.
pub type SimRng = ChaCha8Rng;

/// The RNG for `seed`.
pub fn rng_for(seed: u64) -> SimRng {
    ChaCha8Rng::seed_from_u64(seed)
}

struct Scheduled<E> {
    at: Time,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    // Ties in time go by insertion order, so the order never depends on the payload.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events waiting for their time.
pub struct Queue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
    now: Time,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
        }
    }
}

impl<E> Queue<E> {
    /// The time of the event last popped.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Schedules `event` `delay` after now.
    pub fn after(&mut self, delay: Time, event: E) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// Schedules `event` at `at` (never before now).
    pub fn at(&mut self, at: Time, event: E) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            event,
        });
    }

    /// The next event with its time and sequence number, advancing now.
    pub fn pop(&mut self) -> Option<(Time, u64, E)> {
        let s = self.heap.pop()?;
        self.now = s.at;
        Some((s.at, s.seq, s.event))
    }

    /// Events scheduled (for the report).
    pub fn scheduled(&self) -> u64 {
        self.seq
    }
}

/// A running hash of everything that happened, in order.
pub struct Trace {
    hasher: blake3::Hasher,
    events: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            hasher: blake3::Hasher::new(),
            events: 0,
        }
    }
}

impl Trace {
    /// Adds one record.
    pub fn note(&mut self, parts: &[&[u8]]) {
        self.events += 1;
        for p in parts {
            self.hasher.update(&(p.len() as u64).to_le_bytes());
            self.hasher.update(p);
        }
    }

    /// Records noted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The hash of the trace so far, as hex.
    pub fn hex(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.at(5, "c");
        q.at(1, "a");
        q.at(5, "d");
        q.at(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, _, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}
