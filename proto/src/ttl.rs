//! Time to live of a written value: the limits every edge (client, CLI, node) checks.

use std::time::Duration;

/// The longest TTL a write may carry: ten years. Longer ones are almost surely unit
/// mistakes, and the cap keeps every expiry far inside the timestamp range.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Checks a TTL: more than zero and at most [`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl.is_zero() {
        return Err("a TTL must be more than zero".into());
    }
    if ttl > MAX_TTL {
        return Err(format!(
            "a TTL of {} s is more than the maximum of {} s (ten years)",
            ttl.as_secs(),
            MAX_TTL.as_secs()
        ));
    }
    Ok(())
}

/// A TTL as sent on the wire: whole milliseconds, at least 1 (a TTL under a millisecond
/// rounds up, so it never turns into "no TTL").
pub fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_over_the_cap_are_refused() {
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(MAX_TTL + Duration::from_secs(1)).is_err());
        assert!(check_ttl(Duration::from_secs(90)).is_ok());
        assert!(check_ttl(MAX_TTL).is_ok());
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
    }
}
