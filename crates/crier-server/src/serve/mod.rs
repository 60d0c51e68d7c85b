//! The accept loop: HTTP/1.1 with upgrades, a header read timeout, `TCP_NODELAY`, JSON
//! bodies on hyper's own error answers, and a graceful stop when the node shuts down.
//!
//! `axum::serve` would do, but it cannot set hyper's header read timeout, and without one
//! a client that trickles header bytes holds a connection forever (slowloris).

mod parse_errors;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::node::Node;
use parse_errors::JsonParseErrors;

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`). Std's 128 drops SYNs when thousands of clients connect at once,
/// and each dropped SYN costs its client a one-second retransmit.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with a backlog fit for connection storms (4096 pending connections).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // What std does too: a restarted server can bind while old sockets sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `node.router()` on `listener` until [`Node::shutdown`] is called.
pub async fn serve(listener: TcpListener, node: Node) -> std::io::Result<()> {
    let router = node.router();
    let shutdown = node.shared.shutdown.clone();
    let header_timeout = node.config().socket.header_read_timeout;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return Ok(()),
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, or the peer gave up mid-handshake: back off a
                // moment rather than spin, and keep serving the connections we have.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            Some(remote),
            router.clone(),
            shutdown.clone(),
            header_timeout,
        ));
    }
}

/// Serves one connection over any byte stream (a Unix socket, an in-memory pipe in
/// tests) until it closes or [`Node::shutdown`] is called, as [`serve`] serves each TCP
/// connection. It builds the router on every call: to serve many connections, use
/// [`serve`].
pub async fn serve_connection<IO>(io: IO, node: &Node)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = node.config().socket.header_read_timeout;
    connection(
        io,
        None,
        node.router(),
        node.shared.shutdown.clone(),
        header_timeout,
    )
    .await;
}

/// One HTTP/1.1 connection with upgrades, ended gracefully when the node shuts down.
async fn connection<IO>(
    io: IO,
    remote: Option<SocketAddr>,
    router: axum::Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        if let Some(remote) = remote {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
        }
        router.clone().oneshot(request.map(Body::new))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(JsonParseErrors::new(io)), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, ?remote, "HTTP connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
