//! The failure detector's rules: when each peer is pinged, and when it counts as up or down.
//!
//! A peer is pinged every `interval`, each on its own schedule, so one that doesn't answer
//! never delays the others. It is down after `down_after` without an answer and back up at
//! its first answer. Liveness is local: it is not gossiped.
//!
//! Time comes in as a [`Duration`] since an origin the caller chooses (the node's start,
//! or a simulator's virtual clock); nothing here reads a clock.

use std::collections::BTreeMap;
use std::time::Duration;

/// What the detector knows of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    up: bool,
    last_ok: Option<Duration>,
    /// The peer's actor epoch, from its last answer.
    epoch: Option<u64>,
}

impl Liveness {
    /// Whether the peer counts as up. A peer never heard from is down.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records a ping's outcome at `now`; returns whether the peer's liveness flipped. An
    /// answer brings it up at once; a failure takes it down only once it has been silent for
    /// `down_after`.
    pub fn observe(&mut self, ok: bool, now: Duration, down_after: Duration) -> bool {
        let was = self.up;
        if ok {
            self.last_ok = Some(now);
            self.up = true;
        } else {
            let silent_for = self.last_ok.map(|t| now.saturating_sub(t));
            if silent_for.is_none_or(|d| d >= down_after) {
                self.up = false;
            }
        }
        was != self.up
    }

    /// Records the epoch the peer answered with; true if it differs from the one seen
    /// before, i.e. the peer came back with a new or empty data directory.
    pub fn observe_epoch(&mut self, epoch: u64) -> bool {
        let changed = self.epoch.is_some_and(|e| e != epoch);
        self.epoch = Some(epoch);
        changed
    }
}

/// How long one ping may take: twice the interval (at least 200 ms), but no more than
/// twice `down_after`, so a hung ping can't hide a peer's death for long.
pub fn ping_timeout(interval: Duration, down_after: Duration) -> Duration {
    interval.max(Duration::from_millis(200)).min(down_after) * 2
}

/// When each peer's next ping is due.
#[derive(Clone, Debug)]
pub struct Schedule {
    interval: Duration,
    /// Every peer ever seen: when its next ping is due, or when the ping in flight started.
    /// A member that left stays: it still learns that it left from the answers it gets.
    peers: BTreeMap<String, Slot>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Due(Duration),
    InFlight { started: Duration },
}

impl Schedule {
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            peers: BTreeMap::new(),
        }
    }

    /// Adds peers not seen before; their first ping is due at once.
    pub fn track<'a>(&mut self, peers: impl IntoIterator<Item = &'a str>, now: Duration) {
        for p in peers {
            if !self.peers.contains_key(p) {
                self.peers.insert(p.to_string(), Slot::Due(now));
            }
        }
    }

    /// The peers whose ping is due at `now`, marked in flight: the caller starts one ping
    /// for each and reports its end with [`Schedule::finished`].
    pub fn start_due(&mut self, now: Duration) -> Vec<String> {
        let mut out = Vec::new();
        for (peer, slot) in self.peers.iter_mut() {
            if matches!(*slot, Slot::Due(t) if t <= now) {
                *slot = Slot::InFlight { started: now };
                out.push(peer.clone());
            }
        }
        out
    }

    /// A ping to `peer` ended at `now`: the next is due an interval after this one started,
    /// or at once if it took longer than that.
    pub fn finished(&mut self, peer: &str, now: Duration) {
        if let Some(slot) = self.peers.get_mut(peer) {
            if let Slot::InFlight { started } = *slot {
                *slot = Slot::Due((started + self.interval).max(now));
            }
        }
    }

    /// The earliest time a ping is due, if any is scheduled (none while all are in flight).
    pub fn next_due(&self) -> Option<Duration> {
        self.peers
            .values()
            .filter_map(|s| match s {
                Slot::Due(t) => Some(*t),
                Slot::InFlight { .. } => None,
            })
            .min()
    }

    /// Every tracked peer.
    pub fn peers(&self) -> impl Iterator<Item = &str> + '_ {
        self.peers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn down_after_silence_up_on_first_answer() {
        let d = ms(1500);
        let mut b = Liveness::default();
        assert!(!b.is_up(), "unknown liveness starts down");
        assert!(!b.observe(false, ms(0), d), "never heard: stays down");
        assert!(b.observe(true, ms(100), d));
        assert!(b.is_up());
        assert!(
            !b.observe(false, ms(1000), d),
            "900 ms of silence isn't down"
        );
        assert!(!b.observe(false, ms(1599), d));
        assert!(b.observe(false, ms(1600), d), "1500 ms of silence is");
        assert!(!b.is_up());
        assert!(
            b.observe(true, ms(1700), d),
            "the first answer brings it back"
        );
        assert!(!b.observe(true, ms(1800), d));
    }

    #[test]
    fn a_new_epoch_means_the_peer_lost_its_data() {
        let mut b = Liveness::default();
        assert!(!b.observe_epoch(7), "first sighting");
        assert!(!b.observe_epoch(7));
        assert!(b.observe_epoch(8));
    }

    #[test]
    fn each_peer_is_pinged_on_its_own_schedule() {
        let mut s = Schedule::new(ms(300));
        s.track(["a", "b"], ms(0));
        assert_eq!(s.start_due(ms(0)), vec!["a", "b"]);
        assert_eq!(s.next_due(), None, "both in flight");
        assert!(
            s.start_due(ms(10)).is_empty(),
            "no second ping while one is in flight"
        );
        // a answers quickly: due an interval after its start.
        s.finished("a", ms(20));
        assert_eq!(s.next_due(), Some(ms(300)));
        // b hangs past the interval: due again at once when it ends, a unaffected.
        assert_eq!(s.start_due(ms(300)), vec!["a"]);
        s.finished("b", ms(700));
        assert_eq!(s.next_due(), Some(ms(700)));
        assert_eq!(s.start_due(ms(700)), vec!["b"]);
        // A new member is pinged at once; a known one isn't rescheduled by tracking it.
        s.track(["a", "c"], ms(710));
        assert_eq!(s.start_due(ms(710)), vec!["c"]);
        assert_eq!(s.peers().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        // Finishing a ping that isn't in flight changes nothing.
        s.finished("zzz", ms(720));
        s.finished("a", ms(720));
        s.finished("a", ms(5000));
        assert_eq!(
            s.next_due(),
            Some(ms(720)),
            "a took 420 ms: due when it ended"
        );
    }

    #[test]
    fn a_ping_times_out_within_twice_the_silence_that_marks_down() {
        assert_eq!(ping_timeout(ms(300), ms(1500)), ms(600));
        assert_eq!(ping_timeout(ms(50), ms(1500)), ms(400));
        assert_eq!(ping_timeout(ms(5000), ms(1500)), ms(3000));
    }
}
