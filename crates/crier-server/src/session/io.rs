//! The socket end of a session: batched writes that notice a client that takes no data,
//! close frames, and the clean close after an oversized frame.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use crier_protocol::codes::CloseCode;
use futures_util::SinkExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::frame::Frame;
use crate::outbound::OutboundQueue;

/// A server-side WebSocket over an upgraded HTTP/1.1 connection.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// How long the rest of an oversized frame may take to arrive before the socket closes.
const DISCARD_TIME: Duration = Duration::from_secs(2);
/// Most bytes read and dropped after an oversized frame.
const DISCARD_BYTES: u64 = 64 << 20;
/// Once the oversized frame is through, how long the client may stay quiet before the
/// socket closes (its close reply, if any, comes at once).
const QUIET: Duration = Duration::from_millis(100);

/// Why a batch was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteError {
    /// The connection failed.
    Gone,
    /// The socket took no data for the slow-consumer timeout.
    Stalled,
    /// The queue went over its budget while the write waited.
    Overflowed,
}

/// Writes `frames` (emptying it) and flushes once. Nearly every write completes at once;
/// one that has to wait tells the queue its socket is stalled (publishers stop waiting
/// for it after their patience), and fails once no frame has gone out for `stall_limit`.
/// Progress resets that clock, so a client that reads slowly but steadily is not taken
/// for one that stopped reading.
pub(super) async fn write_batch(
    ws: &mut Socket,
    frames: &mut Vec<Frame>,
    queue: &OutboundQueue,
    stall_limit: Duration,
) -> Result<(), WriteError> {
    // Shared with the stall check below; an atomic only because the future must be Send.
    let fed = AtomicUsize::new(0);
    let written = async {
        for frame in frames.drain(..) {
            ws.feed(frame.into_message()).await?;
            fed.fetch_add(1, Ordering::Relaxed);
        }
        ws.flush().await
    };
    tokio::pin!(written);
    // The stall timer is armed only for a write that waits, which saves a timer
    // registration and a runtime wakeup per flush.
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first_poll {
        return result.map_err(|_| WriteError::Gone);
    }
    queue.write_stalled();
    let stall = sleep(stall_limit);
    tokio::pin!(stall);
    let mut seen = fed.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            result = &mut written => return result.map_err(|_| WriteError::Gone),
            () = &mut stall => {
                let now_fed = fed.load(Ordering::Relaxed);
                if now_fed == seen {
                    return Err(WriteError::Stalled);
                }
                seen = now_fed;
                stall.as_mut().reset(Instant::now() + stall_limit);
            }
            () = queue.slow().cancelled() => return Err(WriteError::Overflowed),
        }
    }
}

/// Sends a close frame, giving up after `limit` (a client that does not read will not
/// read this either).
pub(super) async fn send_close(
    ws: &mut Socket,
    code: CloseCode,
    reason: &'static str,
    limit: Duration,
) {
    let frame = CloseFrame {
        code: WsCloseCode::from(code.as_u16()),
        reason: reason.into(),
    };
    let _ = timeout(limit, ws.send(Message::Close(Some(frame)))).await;
}

/// After the close frame for an oversized frame: says it is done writing, then reads and
/// drops what the client still sends (the rest of that frame, its close reply) until it
/// closes, goes quiet once the frame is through, a bound is reached or time is up.
/// Closing with unread bytes would reset the connection, and a client can then lose the
/// close frame and see 1006 instead of 1009.
pub(super) async fn discard_incoming(ws: &mut Socket, expected: u64) {
    let io = ws.get_mut();
    let deadline = Instant::now() + DISCARD_TIME;
    let _ = timeout_at(deadline, io.shutdown()).await;
    let budget = expected.min(DISCARD_BYTES) + (64 << 10);
    // Part of the frame may already sit in the WebSocket's read buffer.
    let nearly_through = expected.saturating_sub(64 << 10);
    let mut buffer = vec![0u8; 16 << 10];
    let mut read = 0u64;
    while read < budget {
        let until = if read >= nearly_through {
            deadline.min(Instant::now() + QUIET)
        } else {
            deadline
        };
        match timeout_at(until, io.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => read += n as u64,
            _ => break,
        }
    }
}

/// How to answer a read error, when the socket can still take a close frame: the close
/// code and reason, and for an oversized frame how many bytes it claimed.
pub(super) fn read_error_close(err: &tungstenite::Error) -> Option<(CloseCode, &'static str, u64)> {
    use tungstenite::error::{CapacityError, Error as WsError};
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => Some((
            CloseCode::TooBig,
            "frame too large",
            u64::try_from(*size).unwrap_or(u64::MAX),
        )),
        WsError::Utf8(_) => Some((
            CloseCode::InvalidPayload,
            "invalid UTF-8 in a text frame",
            0,
        )),
        WsError::Protocol(_) => Some((CloseCode::ProtocolError, "WebSocket protocol error", 0)),
        _ => None,
    }
}
