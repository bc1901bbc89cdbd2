//! Which held hints are replayed and which are dropped. A hint is the full version of one
//! key for a replica that missed it; it is sent as soon as its target is up, and dropped
//! once older than the expiry (anti-entropy covers what an expired hint carried). The
//! expiry must be shorter than the tombstone grace period, so no hint older than a purge
//! can bring a purged value back.
//!
//! Time comes in as a [`Duration`] since an origin the caller chooses (hints record
//! wall-clock milliseconds, so the node passes the time since the Unix epoch).

use std::time::Duration;

/// Whether a hint stored at `created` has expired at `now`. A hint from the future (a clock
/// that stepped back) is kept.
pub fn expired(created: Duration, now: Duration, expiry: Duration) -> bool {
    created < now.saturating_sub(expiry)
}

/// The targets to replay to now: those holding hints that the failure detector sees up. A
/// target that is down is not a failure; its hints wait for it.
pub fn due<'a>(
    pending: impl IntoIterator<Item = (&'a str, u64)>,
    is_up: impl Fn(&str) -> bool,
) -> Vec<&'a str> {
    pending
        .into_iter()
        .filter(|(target, count)| *count > 0 && is_up(target))
        .map(|(target, _)| target)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_expires_once_older_than_the_expiry() {
        let h = Duration::from_secs(3600);
        let expiry = 3 * h;
        assert!(!expired(h, 4 * h, expiry), "exactly the expiry old: kept");
        assert!(expired(h - Duration::from_millis(1), 4 * h, expiry));
        assert!(!expired(5 * h, 4 * h, expiry), "from the future: kept");
        assert!(
            !expired(Duration::ZERO, h, expiry),
            "younger than the expiry"
        );
    }

    #[test]
    fn only_live_targets_with_hints_are_due() {
        let pending = [("a", 3), ("b", 0), ("c", 1), ("d", 2)];
        let up = |t: &str| t != "d";
        assert_eq!(due(pending, up), vec!["a", "c"]);
        assert!(due(pending, |_| false).is_empty());
    }
}
