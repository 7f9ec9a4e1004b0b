//! Retrying calls whose errors say a retry can help, with exponential backoff, and giving up at
//! once on the others.

use std::future::Future;
use std::time::Duration;

/// An error that knows whether a retry can help.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for ferrum_chain::ChainError {
    fn is_transient(&self) -> bool {
        ferrum_chain::ChainError::is_transient(self)
    }
}

impl Transient for ferrum_common::StorageError {
    fn is_transient(&self) -> bool {
        ferrum_common::StorageError::is_transient(self)
    }
}

impl Transient for ferrum_common::data::DataError {
    fn is_transient(&self) -> bool {
        matches!(self, ferrum_common::data::DataError::Storage(s) if s.is_transient())
    }
}

impl Transient for ferrum_common::payload::FetchError {
    fn is_transient(&self) -> bool {
        matches!(self, ferrum_common::payload::FetchError::Storage(s) if s.is_transient())
    }
}

/// Backoff from `first`, doubling up to `max`, for at most `attempts` tries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_millis(200), max: Duration::from_secs(30), attempts: 12 }
    }
}

/// Runs `call` until it succeeds, fails with a final error, or the attempts run out; each
/// transient failure is logged with `what` and waited out.
pub async fn retry<T, E, F, Fut>(what: &str, backoff: Backoff, mut call: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = backoff.first;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < backoff.attempts => {
                tracing::warn!(attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_chain::ChainError;

    fn quick(attempts: u32) -> Backoff {
        Backoff { first: Duration::from_millis(1), max: Duration::from_millis(4), attempts }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_final_ones_are_not() {
        let mut calls = 0;
        let r: Result<u8, ChainError> = retry("call", quick(5), || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(ChainError::Connection("reset".into())) } else { Ok(7) } }
        })
        .await;
        assert_eq!((r, calls), (Ok(7), 3));

        let mut calls = 0;
        let r: Result<u8, ChainError> = retry("call", quick(5), || {
            calls += 1;
            async { Err(ChainError::NoSubnet { netuid: 3 }) }
        })
        .await;
        assert_eq!((r, calls), (Err(ChainError::NoSubnet { netuid: 3 }), 1));

        let mut calls = 0;
        let r: Result<u8, ChainError> = retry("call", quick(4), || {
            calls += 1;
            async { Err(ChainError::Timeout { call: "x".into(), secs: 1 }) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 4, "gives up after the attempts");
    }
}
