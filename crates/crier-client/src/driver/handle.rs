//! The handles' end of the driver: where commands go in and what the driver publishes
//! comes out. [`crate::Client`] and every [`crate::Channel`] of it share one.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::command::Command;
use crate::Error;
use crate::events::ConnectionStatus;
use crate::heartbeat::HeartbeatEvent;
use crate::options::ClientOptions;

/// A running driver, seen from the handles. The driver stops when the last one is
/// dropped (its command queue closes).
pub(crate) struct DriverHandle {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// The settings the driver runs with.
    pub(crate) options: Arc<ClientOptions>,
    pub(crate) status: watch::Receiver<ConnectionStatus>,
    pub(crate) heartbeats: broadcast::Sender<HeartbeatEvent>,
    /// The current access token, mirrored by the driver for the REST calls (which do not
    /// go through the driver).
    pub(crate) token: Arc<Mutex<Option<String>>>,
    /// Pushes dropped from the full offline buffer, counted by the driver.
    pub(crate) dropped_pushes: Arc<AtomicU64>,
}

impl DriverHandle {
    /// Queues a command; fails only once the driver is gone.
    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::ClientClosed)
    }

    /// Sends the command `make` builds around a fresh oneshot and waits for its answer.
    pub(crate) async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| Error::ClientClosed)
    }
}
