//! Randomness from the operating system, for secrets and actor epochs.

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| "the operating system's random source failed".to_string())
}

/// A new random cluster secret.
pub fn cluster_secret() -> Result<crate::context::ClusterSecret, String> {
    let mut b = [0u8; 32];
    random_bytes(&mut b)?;
    Ok(crate::context::ClusterSecret::from_bytes(b))
}
