//! hyper answers a request it cannot parse by itself, before the router sees anything:
//! 400 for a malformed request line or header, 414 for a request URI over 64 KiB, 431
//! for headers over its buffer. Those answers carry no body, and no setting changes
//! that. This wrapper around each connection recognises them as hyper writes them and
//! sends the same status with a JSON body instead, so that every error Crier answers has
//! one, as clients that read `{"message": ...}` expect.
//!
//! hyper's own answers are told apart by the head alone: one of those statuses with no
//! `content-type`. Every answer of Crier's router has a content type (JSON for errors,
//! see `http::errors`), so nothing else matches. Once a WebSocket upgrade (101) has gone
//! out, the connection carries WebSocket frames and the wrapper only passes bytes on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bodiless parse-error answers from hyper get JSON bodies.
#[derive(Debug)]
pub(super) struct JsonParseErrors<IO> {
    inner: IO,
    /// A replacement answer not yet fully written.
    pending: Bytes,
    /// Upgraded to a WebSocket: nothing more to look at.
    upgraded: bool,
    /// The last write took only part of its buffer: the next one goes on with it, and
    /// does not start an answer.
    continuing: bool,
}

impl<IO> JsonParseErrors<IO> {
    pub(super) fn new(inner: IO) -> Self {
        JsonParseErrors {
            inner,
            pending: Bytes::new(),
            upgraded: false,
            continuing: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> JsonParseErrors<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonParseErrors<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if !this.upgraded && !this.continuing {
            if buf.starts_with(b"HTTP/1.1 101 ") {
                this.upgraded = true;
            } else if let Some(answer) = with_json_body(buf) {
                // The original is taken as written; the replacement goes out in its
                // place, now or from the next write, flush or shutdown.
                this.pending = answer;
                let _ = this.poll_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.continuing = n < buf.len();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Unvectored, so that hyper writes each answer's head in one piece this can read.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The JSON-bodied replacement for `head`, if it is one of hyper's parse-error answers.
fn with_json_body(head: &[u8]) -> Option<Bytes> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let (status, message) = match rest.get(..3)? {
        b"400" => (
            "400 Bad Request",
            "The request could not be parsed as HTTP/1.1",
        ),
        b"414" => (
            "414 URI Too Long",
            "The request URI is longer than 65,534 bytes",
        ),
        b"431" => (
            "431 Request Header Fields Too Large",
            "The request headers are too large",
        ),
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let has_content_type = head[..end]
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:"));
    if has_content_type {
        return None;
    }
    let body = json!({"message": message}).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some(Bytes::from(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_answers_get_a_json_body() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 10:00:00 GMT\r\n\r\n";
        let answer = with_json_body(head).unwrap();
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body["message"],
            "The request URI is longer than 65,534 bytes"
        );
        assert!(text.contains(&format!(
            "content-length: {}\r\n",
            text.len() - text.find("\r\n\r\n").unwrap() - 4
        )));
    }

    #[test]
    fn answers_with_a_content_type_and_other_statuses_pass() {
        let json = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\r\n";
        assert!(with_json_body(json).is_none());
        assert!(with_json_body(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            with_json_body(b"\x81\x05hello").is_none(),
            "a WebSocket frame"
        );
    }
}
