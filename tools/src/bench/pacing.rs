//! Open-loop pacing: when each operation is meant to start, and a waiter that meets that
//! instant to within tens of microseconds.
//!
//! Operation `i` is due at exactly `start + i / rate` (integer nanoseconds, so nothing
//! accumulates over a long run). Tokio's timer has a 1 ms resolution, which would add up to
//! a millisecond to every send, so the pacer runs on a thread of its own: it sleeps until
//! [`SPIN`] before the instant, then spins, yielding the core, until the instant. What is
//! left (the thread waking late, the runtime picking the operation up late) is the
//! generator's own send lag, which the engine measures and reports; latency counts from the
//! due instant, so that lag is never hidden from it either.

use std::time::{Duration, Instant};

use super::args::Stop;

/// How long before a due instant the pacer stops sleeping and starts spinning: more than a
/// thread sleep typically oversleeps by (the kernel's timer slack is 50 µs).
pub(super) const SPIN: Duration = Duration::from_micros(200);

/// The open loop's timetable.
#[derive(Clone, Copy, Debug)]
pub(super) struct Schedule {
    rate: u64,
    stop: Stop,
}

impl Schedule {
    /// `rate` operations per second (at least 1), until `stop`.
    pub(super) fn new(rate: u64, stop: Stop) -> Schedule {
        Schedule {
            rate: rate.max(1),
            stop,
        }
    }

    /// When operation `i` is due, from the start of the run: `i / rate` seconds, rounded down
    /// to the nanosecond.
    pub(super) fn offset(&self, i: u64) -> Duration {
        let ns = u128::from(i) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Whether operation `i` is part of the run.
    pub(super) fn includes(&self, i: u64) -> bool {
        match self.stop {
            Stop::Ops(n) => i < n,
            Stop::After(d) => self.offset(i) < d,
        }
    }
}

/// Blocks the thread until `due`, and returns the instant it got there (never before `due`).
pub(super) fn wait_until(due: Instant) -> Instant {
    loop {
        let now = Instant::now();
        if now >= due {
            return now;
        }
        let left = due - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs the schedule on the calling thread (a blocking one: it sleeps and spins). Each
/// operation goes to `send` with its index and due instant once that instant has come.
/// Returns how many were sent.
pub(super) fn pace(schedule: &Schedule, start: Instant, mut send: impl FnMut(u64, Instant)) -> u64 {
    let mut i = 0;
    while schedule.includes(i) {
        let due = start + schedule.offset(i);
        wait_until(due);
        send(i, due);
        i += 1;
    }
    i
}

/// How late an operation went out: from its due instant to when it actually started.
pub(super) fn send_lag(due: Instant, sent: Instant) -> Duration {
    sent.saturating_duration_since(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_instants_are_exact_and_do_not_drift() {
        let s = Schedule::new(3, Stop::Ops(u64::MAX));
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        // A million seconds in, still on the second.
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        let fast = Schedule::new(1_000_000, Stop::Ops(u64::MAX));
        assert_eq!(fast.offset(1), Duration::from_micros(1));
        assert_eq!(fast.offset(1_234_567), Duration::from_micros(1_234_567));
    }

    /// Negative control: the old way (a rounded interval times i) drifts, and the exactness
    /// test above would catch it.
    #[test]
    fn a_rounded_interval_would_drift() {
        let interval = Duration::from_secs_f64(1.0 / 3.0);
        let old = interval.mul_f64(3_000_000.0);
        assert_ne!(old, Duration::from_secs(1_000_000));
        assert!(Duration::from_secs(1_000_000) - old >= Duration::from_millis(1));
    }

    #[test]
    fn the_run_ends_by_count_or_by_time() {
        let by_count = Schedule::new(1000, Stop::Ops(5));
        assert!(by_count.includes(4) && !by_count.includes(5));
        // 1000/s for 2 s: operations 0..2000, the last due at 1.999 s.
        let by_time = Schedule::new(1000, Stop::After(Duration::from_secs(2)));
        assert!(by_time.includes(1999) && !by_time.includes(2000));
        let slow = Schedule::new(3, Stop::After(Duration::from_secs(1)));
        assert!(slow.includes(2) && !slow.includes(3));
    }

    #[test]
    fn the_pacer_sends_each_operation_at_or_after_its_instant_in_order() {
        let s = Schedule::new(20_000, Stop::Ops(200));
        let start = Instant::now();
        let mut seen = Vec::new();
        let sent = pace(&s, start, |i, due| seen.push((i, due, Instant::now())));
        assert_eq!(sent, 200);
        for (n, (i, due, at)) in seen.iter().enumerate() {
            assert_eq!(*i, n as u64);
            assert_eq!(*due, start + s.offset(*i));
            assert!(at >= due, "operation {i} went out before its instant");
        }
    }

    #[test]
    fn lag_is_the_time_past_the_due_instant() {
        let due = Instant::now();
        assert_eq!(send_lag(due, due), Duration::ZERO);
        assert_eq!(
            send_lag(due, due + Duration::from_micros(37)),
            Duration::from_micros(37)
        );
        // Never negative: the waiter does not send early, and a clock read before the due
        // instant counts as on time.
        assert_eq!(
            send_lag(due + Duration::from_micros(5), due),
            Duration::ZERO
        );
        let target = Instant::now() + Duration::from_millis(3);
        assert!(wait_until(target) >= target);
    }
}
