//! The socket end of a session: batched writes that notice a client that takes no data,
//! close frames, and the clean close after an oversized frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crier_protocol::codes::CloseCode;
use futures_util::SinkExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::frame::Frame;
use crate::outbound::{OutboundQueue, WriteProgress};

/// A server-side WebSocket over an upgraded HTTP/1.1 connection.
pub(crate) type Socket = WebSocketStream<Metered<TokioIo<Upgraded>>>;

/// The connection under a WebSocket, counting the bytes it writes: a write that waits
/// makes progress or does not, whatever the size of the frames in it, and that is how
/// a client that reads slowly is told from one that stopped.
#[derive(Debug)]
pub(crate) struct Metered<IO> {
    inner: IO,
    written: Arc<WriteProgress>,
}

impl<IO> Metered<IO> {
    pub(crate) fn new(inner: IO, written: Arc<WriteProgress>) -> Self {
        Metered { inner, written }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written.add(n);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

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

/// How a batch went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// At once: the socket had room.
    AtOnce,
    /// After waiting for the socket (the queue was told it stalled).
    AfterWaiting,
}

/// Writes `frames` (emptying it) and flushes once. Nearly every write completes at once;
/// one that has to wait tells the queue its socket is stalled (publishers stop waiting
/// for it once it takes too little for their patience), and fails once the socket has
/// taken no byte at all for `stall_limit`. Any progress restarts that clock, so a client
/// that reads slowly but steadily is not taken for one that stopped.
pub(super) async fn write_batch(
    ws: &mut Socket,
    frames: &mut Vec<Frame>,
    queue: &OutboundQueue,
    stall_limit: Duration,
) -> Result<Written, WriteError> {
    let written = async {
        for frame in frames.drain(..) {
            ws.feed(frame.into_message()).await?;
        }
        ws.flush().await
    };
    tokio::pin!(written);
    // The stall timer is armed only for a write that waits, which saves a timer
    // registration and a runtime wakeup per flush.
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first_poll {
        return result
            .map(|()| Written::AtOnce)
            .map_err(|_| WriteError::Gone);
    }
    // Boxed: its timer would otherwise sit in every session's future, idle or not.
    Box::pin(finish_stalled(written, queue, stall_limit)).await
}

/// The rest of a write that had to wait (see [`write_batch`]).
async fn finish_stalled(
    mut written: Pin<&mut impl Future<Output = Result<(), tungstenite::Error>>>,
    queue: &OutboundQueue,
    stall_limit: Duration,
) -> Result<Written, WriteError> {
    queue.write_stalled();
    let stall = sleep(stall_limit);
    tokio::pin!(stall);
    let mut seen = queue.bytes_written();
    loop {
        tokio::select! {
            result = &mut written => {
                return result.map(|()| Written::AfterWaiting).map_err(|_| WriteError::Gone);
            }
            () = &mut stall => {
                let now_written = queue.bytes_written();
                if now_written == seen {
                    return Err(WriteError::Stalled);
                }
                seen = now_written;
                stall.as_mut().reset(Instant::now() + stall_limit);
            }
            () = queue.overflowed() => return Err(WriteError::Overflowed),
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
