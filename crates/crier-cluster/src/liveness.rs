//! Which nodes live: a lease per node, renewed every 2 s, and a watcher that clears the
//! presences of a node whose lease has lapsed.
//!
//! `crier:node:<name>` holds a node's random token with a 6 s expiry; the set
//! `crier:nodes` lists every node that took one. Every 2 s each node renews its lease,
//! reports how many presence entries it tracks and how many sockets it serves, and
//! checks the others' leases (their remaining time says when each was renewed): a node
//! listed whose lease is gone died without a goodbye (or lost Redis for 6 s), and the
//! first node to notice clears its entries in every topic, which sends `leave` diffs to
//! every subscriber. So a dead node's presences go within about 8 s. Expiry is Redis's
//! clock, so no node's own clock matters. A node that finds its lease gone takes it
//! again and pushes its presences again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crier_server::broker::LocalDelivery;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use crate::ClusterError;
use crate::presence::{Change, Presence, change_command, topics_of};

/// How long a lease lasts without renewal.
const TTL: Duration = Duration::from_secs(6);
/// How often a node renews its lease and checks the others'.
const EVERY: Duration = Duration::from_secs(2);
/// The set of every node that took a lease.
const NODES: &str = "crier:nodes";
/// Each node's number of presence entries.
const COUNTS: &str = "crier:presence-counts";
/// Each node's number of connections (its load, for the inspector).
const CONNECTIONS: &str = "crier:node-connections";

fn lease_of(node: &str) -> String {
    format!("crier:node:{node}")
}

/// Renews a lease, or takes it again when it has lapsed: 1 renewed, 2 taken again, 0
/// held by another node. Also lists the node and records its presence and connection
/// counts.
const RENEW: &str = r"
local result
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); result = 1
elseif redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  result = 2
else
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[5])
return result
";

/// A node as the watcher last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeSeen {
    pub(crate) name: String,
    pub(crate) presence_entries: u64,
    pub(crate) connections: u64,
    /// How long before `seen_at` it renewed its lease (from the lease's remaining time
    /// in Redis).
    pub(crate) renewed_ms_ago: Option<u64>,
    /// When this node looked.
    pub(crate) seen_at: std::time::Instant,
}

impl NodeSeen {
    /// How long ago, now, it renewed its lease.
    pub(crate) fn renewed_ms_ago_now(&self) -> Option<u64> {
        let since = u64::try_from(self.seen_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.renewed_ms_ago.map(|ago| ago.saturating_add(since))
    }
}

/// A new lease token.
pub(crate) fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Takes `node`'s lease with `token`, or says another live node holds the name.
pub(crate) async fn take(
    client: &redis::Client,
    node: &str,
    token: &str,
) -> Result<(), ClusterError> {
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(ClusterError::from_redis)?;
    let set: Option<String> = redis::cmd("SET")
        .arg(lease_of(node))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(&mut connection)
        .await
        .map_err(ClusterError::from_redis)?;
    if set.is_none() {
        return Err(ClusterError::NameTaken(node.to_owned()));
    }
    redis::cmd("SADD")
        .arg(NODES)
        .arg(node)
        .query_async::<()>(&mut connection)
        .await
        .map_err(ClusterError::from_redis)
}

/// Renews this node's lease and watches the others' until aborted.
pub(crate) async fn watch(
    client: redis::Client,
    token: String,
    presence: Arc<Presence>,
    load: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
    nodes: Arc<Mutex<Vec<NodeSeen>>>,
    healthy: Arc<AtomicBool>,
) {
    // Answers may come late on a busy machine; three late renewals in a row would let the
    // lease lapse, so each may take most of the 2 s between them.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_millis(1_900)));
    let mut connection = loop {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(connection) => break connection,
            Err(err) => {
                healthy.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot reach Redis to renew this node's lease");
                tokio::time::sleep(EVERY).await;
            }
        }
    };
    loop {
        let connections = load
            .get()
            .and_then(Weak::upgrade)
            .map_or(0, |node| node.connections());
        match round(&mut connection, &token, &presence, connections).await {
            Ok((seen, held)) => {
                // A node whose name another holds is not a healthy member either.
                healthy.store(held, Ordering::Relaxed);
                *nodes.lock() = seen;
            }
            Err(err) => {
                healthy.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot renew this node's lease in Redis");
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// One renewal and check: the live nodes with their presence counts, and whether this
/// node still holds its name.
async fn round(
    connection: &mut ConnectionManager,
    token: &str,
    presence: &Arc<Presence>,
    connections: u64,
) -> redis::RedisResult<(Vec<NodeSeen>, bool)> {
    let node = presence.node();
    let renewed: i64 = redis::Script::new(RENEW)
        .key(lease_of(node))
        .key(NODES)
        .key(COUNTS)
        .key(CONNECTIONS)
        .arg(token)
        .arg(TTL.as_millis() as u64)
        .arg(node)
        .arg(presence.local_entries())
        .arg(connections)
        .invoke_async(connection)
        .await?;
    match renewed {
        0 => tracing::error!(node, "another node has taken this node's name"),
        2 => {
            // The lease had lapsed: other nodes may have cleared this node's presences.
            tracing::warn!(
                node,
                "this node's lease had lapsed in Redis; taking it again"
            );
            if let Some(sink) = presence.sink() {
                sink.republish(None);
            }
            presence.resync(connection).await?;
        }
        _ => {}
    }
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(NODES)
        .query_async(connection)
        .await?;
    let mut check = redis::pipe();
    for name in &names {
        // The lease's remaining time: -2 when it is gone (-1, no expiry, cannot happen).
        check.cmd("PTTL").arg(lease_of(name));
        check.cmd("HGET").arg(COUNTS).arg(name);
        check.cmd("HGET").arg(CONNECTIONS).arg(name);
    }
    let answers: Vec<(i64, Option<u64>, Option<u64>)> = if names.is_empty() {
        Vec::new()
    } else {
        check.query_async(connection).await?
    };
    let mut seen = Vec::new();
    let ttl = TTL.as_millis() as u64;
    for (name, (left_ms, count, connections)) in names.into_iter().zip(answers) {
        let alive = left_ms != -2;
        if alive || name == node {
            seen.push(NodeSeen {
                name,
                presence_entries: count.unwrap_or(0),
                connections: connections.unwrap_or(0),
                renewed_ms_ago: u64::try_from(left_ms)
                    .ok()
                    .map(|left| ttl.saturating_sub(left)),
                seen_at: std::time::Instant::now(),
            });
        } else {
            // On a task of its own: a node with many topics takes many round trips, and
            // this node's own renewal must not wait for them.
            let (mut connection, presence) = (connection.clone(), Arc::clone(presence));
            tokio::spawn(async move {
                if let Err(err) = reap(&mut connection, &name, &presence).await {
                    tracing::warn!(node = name, error = %err, "could not clear a lapsed node's presences; trying again");
                }
            });
        }
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((seen, renewed != 0))
}

/// Clears a dead node's presences in every topic (the first node to notice does it).
async fn reap(
    connection: &mut ConnectionManager,
    dead: &str,
    presence: &Presence,
) -> redis::RedisResult<()> {
    let claimed: Option<String> = redis::cmd("SET")
        .arg(format!("crier:reaping:{dead}"))
        .arg(presence.node())
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query_async(connection)
        .await?;
    if claimed.is_none() {
        return Ok(()); // another node is at it
    }
    let back: bool = redis::cmd("EXISTS")
        .arg(lease_of(dead))
        .query_async(connection)
        .await?;
    if back {
        return Ok(()); // it renewed in between: alive after all
    }
    let topics: Vec<String> = redis::cmd("SMEMBERS")
        .arg(topics_of(dead))
        .query_async(connection)
        .await?;
    let gone = Change {
        node: dead.to_owned(),
        clear: true,
        set: Vec::new(),
        del: Vec::new(),
    };
    for topic in &topics {
        change_command(topic, &gone, presence.head(), true)
            .query_async::<()>(connection)
            .await?;
    }
    // Each topic left the node's set with its clearing (the set itself is not deleted: a
    // node that came back meanwhile has put its new topics in it).
    redis::pipe()
        .cmd("SREM")
        .arg(NODES)
        .arg(dead)
        .ignore()
        .cmd("HDEL")
        .arg(COUNTS)
        .arg(dead)
        .ignore()
        .cmd("HDEL")
        .arg(CONNECTIONS)
        .arg(dead)
        .ignore()
        .query_async::<()>(connection)
        .await?;
    tracing::info!(
        node = dead,
        topics = topics.len(),
        "a node's lease lapsed: its presences are cleared"
    );
    Ok(())
}
