//! The transport ceiling for `crier bench`: Crier minus the protocol.
//!
//! A WebSocket pub/sub server built from exactly the parts Crier's data path is built
//! from (the same axum `ws` stack and buffer sizes, the same hyper accept loop, a topic
//! registry and bounded per-socket queues shaped like Crier's, batched writes), but
//! speaking a trivial text protocol instead of Phoenix Channels. Whatever Crier delivers
//! below what this server delivers is what the Supabase Realtime protocol layer costs.
//!
//! The protocol, one text frame per command:
//!
//! | client sends              | server does                                              |
//! |---------------------------|----------------------------------------------------------|
//! | `sub <topic>`             | subscribes the socket, replies `ok <topic>`              |
//! | `pub <topic> <payload>`   | sends `<payload>` verbatim to every subscriber of topic  |
//! | `ping`                    | replies `pong`                                           |
//! | anything else             | replies `err <reason>`; the socket stays open            |
//!
//! Any path and query are accepted. Closing the socket unsubscribes it everywhere.

mod queue;
mod registry;
mod serve;
mod session;

pub use serve::serve;

/// Settings shared with Crier's defaults, so both servers run with the same tuning.
pub mod tuning {
    use std::time::Duration;

    /// WebSocket read buffer per socket (Crier `SocketConfig::read_buffer_bytes`).
    pub const READ_BUFFER_BYTES: usize = 4 << 10;
    /// Bytes gathered before a write (Crier `SocketConfig::write_buffer_bytes`).
    pub const WRITE_BUFFER_BYTES: usize = 16 << 10;
    /// Largest frame accepted (Crier `Limits::max_frame_bytes`).
    pub const MAX_FRAME_BYTES: usize = 5_000_000;
    /// Bytes a socket's queue may hold (each frame counted with its slot) before the
    /// client counts as too slow: Crier uses the larger of `FlowConfig::slow_consumer_bytes`
    /// (16 MiB) and two maximal frames. Like Crier's, the queue has no bound on the number
    /// of frames.
    pub const QUEUE_BYTES: usize = if 16 << 20 > 2 * MAX_FRAME_BYTES {
        16 << 20
    } else {
        2 * MAX_FRAME_BYTES
    };
    /// A write making no progress this long disconnects the client (Crier
    /// `FlowConfig::slow_consumer_timeout`).
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a client may take to send its HTTP request headers (Crier
    /// `SocketConfig::header_read_timeout`).
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
}
