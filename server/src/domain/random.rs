//! The one source of randomness for secrets, nonces and keys — the
//! operating system's CSPRNG, read per use (no user-space state to leak or
//! fork). Like [`super::SystemClock`] it is the real input; functions take
//! an `RngCore + CryptoRng` so tests pass their own.

/// The operating system's CSPRNG.
pub fn secure_rng() -> rand::rand_core::UnwrapErr<rand::rngs::OsRng> {
    use rand::TryRngCore;
    rand::rngs::OsRng.unwrap_err()
}
