//! The hybrid logical clock that stamps writes in `lww` buckets.
//!
//! A timestamp is one `u64`: wall-clock milliseconds since the Unix epoch in the high 48
//! bits and a logical counter in the low 16 ([`pack`]). [`Hlc::now`] never goes backwards,
//! never falls behind the wall clock it is given, and is greater than every timestamp
//! [`Hlc::observe`] accepted. So a write stamped by a node after it has seen another
//! write's timestamp always orders after it, whatever the two nodes' wall clocks say.
//!
//! A peer's timestamp more than `max_offset` ahead of the local wall clock is refused:
//! following it would drag this clock (and every later write it stamps) into the future of
//! a peer with a broken clock. The refused timestamp itself is still data (the write it
//! belongs to is kept and merged); the clock just does not jump to it. Time is passed in,
//! never read here.

use std::time::Duration;

/// Bits of a timestamp that hold the logical counter.
const LOGICAL_BITS: u32 = 16;

/// The timestamp at wall-clock `ms` with logical counter 0.
pub fn pack(ms: u64) -> u64 {
    ms.saturating_mul(1 << LOGICAL_BITS)
}

/// The wall-clock milliseconds part of a timestamp.
pub fn millis(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// A peer's timestamp was too far ahead of the local wall clock to follow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timestamp at {ahead_ms} ms past the local wall clock is more than the allowed {max_offset_ms} ms ahead; not followed")]
pub struct TooFarAhead {
    /// How far ahead of the local wall clock it was.
    pub ahead_ms: u64,
    /// The allowed offset.
    pub max_offset_ms: u64,
}

/// A hybrid logical clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    last: u64,
    max_offset_ms: u64,
}

impl Hlc {
    /// A clock that follows peers' timestamps up to `max_offset` ahead of its wall clock.
    pub fn new(max_offset: Duration) -> Hlc {
        Hlc {
            last: 0,
            max_offset_ms: u64::try_from(max_offset.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// A new timestamp at wall-clock `wall_ms`: greater than every one issued or accepted
    /// before, and at least the wall clock.
    pub fn now(&mut self, wall_ms: u64) -> u64 {
        self.last = self.last.saturating_add(1).max(pack(wall_ms));
        self.last
    }

    /// Takes in a peer's timestamp, so later [`Hlc::now`] values are greater. A timestamp
    /// more than the maximum offset ahead of `wall_ms` is refused and changes nothing.
    pub fn observe(&mut self, ts: u64, wall_ms: u64) -> Result<(), TooFarAhead> {
        let limit = pack(wall_ms.saturating_add(self.max_offset_ms));
        if ts > limit {
            return Err(TooFarAhead {
                ahead_ms: millis(ts).saturating_sub(wall_ms),
                max_offset_ms: self.max_offset_ms,
            });
        }
        self.last = self.last.max(ts);
        Ok(())
    }

    /// The last timestamp issued or accepted (0 before any).
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: Duration = Duration::from_millis(500);

    #[test]
    fn follows_the_wall_clock_and_breaks_ties_with_the_counter() {
        let mut c = Hlc::new(MAX);
        let a = c.now(1000);
        assert_eq!(a, pack(1000));
        let b = c.now(1000);
        assert_eq!(b, pack(1000) + 1, "same millisecond: the counter moves");
        let d = c.now(1005);
        assert_eq!(d, pack(1005), "the wall clock moved on");
        assert_eq!(millis(d), 1005);
    }

    #[test]
    fn a_wall_clock_stepping_back_never_takes_it_back() {
        let mut c = Hlc::new(MAX);
        let a = c.now(2000);
        let b = c.now(1000);
        assert!(b > a);
        assert_eq!(millis(b), 2000);
    }

    #[test]
    fn an_observed_timestamp_orders_later_writes_after_it() {
        let mut c = Hlc::new(MAX);
        c.now(1000);
        let peer = pack(1300) + 7;
        c.observe(peer, 1000).expect("within the offset");
        assert!(c.now(1000) > peer);
    }

    #[test]
    fn a_timestamp_too_far_ahead_is_refused_and_not_followed() {
        let mut c = Hlc::new(MAX);
        let before = c.now(1000);
        let err = c
            .observe(pack(1000 + 501), 1000)
            .expect_err("too far ahead");
        assert_eq!(err.ahead_ms, 501);
        assert_eq!(c.last(), before);
        assert_eq!(millis(c.now(1000)), 1000, "the clock did not jump");
        // Right at the limit is still followed (the negative control).
        c.observe(pack(1500), 1000).expect("at the limit");
        assert!(c.now(1000) > pack(1500));
    }

    proptest! {
        #[test]
        fn monotonic_and_never_behind_the_wall_clock(
            events in prop::collection::vec((0u64..5000, prop::option::of(0u64..6000)), 1..200)
        ) {
            let mut c = Hlc::new(MAX);
            let mut prev = 0;
            for (wall, peer) in events {
                if let Some(p) = peer {
                    let ts = pack(p);
                    let accepted = c.observe(ts, wall).is_ok();
                    prop_assert_eq!(accepted, p <= wall + 500);
                    if accepted {
                        prop_assert!(c.last() >= ts);
                    }
                }
                let t = c.now(wall);
                prop_assert!(t > prev, "went back: {} after {}", t, prev);
                prop_assert!(t >= pack(wall));
                prev = t;
            }
        }
    }
}
