//! Waiting in tests: every wait has a failure guard, and none is a fixed delay.

use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

/// The failure guard for every wait on real time.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test with `what` if it takes longer than `guard`.
pub async fn within<T>(guard: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(guard, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing within {guard:?}"),
    }
}

/// The next item of `stream`, failing the test if none comes within `guard` or the
/// stream ends.
pub async fn next<S: Stream + Unpin>(guard: Duration, stream: &mut S) -> S::Item {
    within(guard, "the next item", stream.next())
        .await
        .expect("the stream goes on")
}
