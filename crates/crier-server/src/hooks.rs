//! Callbacks an embedding application registers to learn about connections.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crier_protocol::Vsn;

/// What a hook learns about a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Unique id of the connection on this node.
    pub id: u64,
    /// The peer address, when the server was started with [`crate::serve`] (or the
    /// router was served with axum's `ConnectInfo`).
    pub remote_addr: Option<SocketAddr>,
    /// The `role` claim of the connect token.
    pub role: String,
    /// The `sub` claim of the connect token.
    pub sub: Option<String>,
    /// The serializer the client chose.
    pub vsn: Vsn,
}

pub(crate) type Hook = Arc<dyn Fn(&ConnectionInfo) + Send + Sync>;

/// The registered hooks. Hooks run on the connection's task: keep them short and
/// non-blocking (spawn if there is real work to do).
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    pub(crate) on_connect: Vec<Hook>,
    pub(crate) on_disconnect: Vec<Hook>,
}

impl Hooks {
    pub(crate) fn connected(&self, info: &ConnectionInfo) {
        for hook in &self.on_connect {
            hook(info);
        }
    }

    pub(crate) fn disconnected(&self, info: &ConnectionInfo) {
        for hook in &self.on_disconnect {
            hook(info);
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.len())
            .field("on_disconnect", &self.on_disconnect.len())
            .finish()
    }
}
