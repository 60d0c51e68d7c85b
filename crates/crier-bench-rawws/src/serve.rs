//! The accept loop and the upgrade, the same as Crier's (`crier-server/src/serve.rs` and
//! `http/socket.rs`): hyper HTTP/1.1 with upgrades and a header read timeout,
//! `TCP_NODELAY`, and axum's WebSocket with Crier's default buffer sizes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::registry::Registry;
use crate::session;
use crate::tuning;

/// What every socket shares.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Serves the raw protocol on `listener` until the process ends. Every path upgrades;
/// a request that is not a WebSocket upgrade gets axum's rejection.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let shared = Arc::new(Shared::default());
    let router = Router::new().fallback(upgrade).with_state(shared);
    loop {
        let Ok((stream, _remote)) = listener.accept().await else {
            // Out of file descriptors or a handshake the peer gave up on: back off
            // rather than spin, and keep serving the connections we have.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                router.clone().oneshot(request.map(Body::new))
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(tuning::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let max_frame = tuning::MAX_FRAME_BYTES;
    ws.read_buffer_size(tuning::READ_BUFFER_BYTES)
        .write_buffer_size(tuning::WRITE_BUFFER_BYTES)
        .max_write_buffer_size(tuning::WRITE_BUFFER_BYTES + 2 * max_frame + 64)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| session::run(shared, socket))
}
