//! Streams over broadcast channels: how the handles hand out what the driver publishes.
//! A listener that falls behind skips events instead of holding the driver back.

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// A stream over a broadcast channel, filtered and mapped by `pick`. A receiver that
/// falls more than the channel's capacity behind skips the oldest events (logged).
pub(crate) fn broadcast_stream<E: Clone + Send + 'static, T: Send + 'static>(
    rx: broadcast::Receiver<E>,
    pick: impl FnMut(E) -> Option<T> + Send + 'static,
) -> BoxStream<'static, T> {
    stream::unfold((rx, pick), |(mut rx, mut pick)| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if let Some(item) = pick(event) {
                        return Some((item, (rx, pick)));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        skipped,
                        "a stream fell behind and skipped its oldest events"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}
