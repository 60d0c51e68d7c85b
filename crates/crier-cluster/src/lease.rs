//! [`NodeLease`]: a node's name, held in Redis for as long as the node lives.
//!
//! The key `crier:node:<name>` holds a random token with a 15 s expiry, renewed every
//! 5 s. A second node asking for a name that is held is refused at start; a node that
//! dies without a goodbye frees its name when the key expires. Expiry is Redis's clock,
//! so a node whose own clock is off does not matter.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::ClusterError;

const TTL: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Holds a node's name until dropped.
#[derive(Debug)]
pub struct NodeLease {
    name: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl NodeLease {
    /// Takes `name` in the Redis at `url`, or says who has it.
    pub async fn acquire(url: &str, name: &str) -> Result<NodeLease, ClusterError> {
        let client = crate::reach(url).await?;
        let mut connection = client
            .get_connection_manager()
            .await
            .map_err(ClusterError::from_redis)?;
        let key = format!("crier:node:{name}");
        let token = format!("{:032x}", rand::random::<u128>());
        if !take(&mut connection, &key, &token).await? {
            return Err(ClusterError::NameTaken(name.to_owned()));
        }
        let renewal = tokio::spawn(renew(connection, key, token));
        Ok(NodeLease {
            name: name.to_owned(),
            renewal,
        })
    }

    /// The name held.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// `SET key token NX PX ttl`: whether it was free.
async fn take(
    connection: &mut ConnectionManager,
    key: &str,
    token: &str,
) -> Result<bool, ClusterError> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(connection)
        .await
        .map_err(ClusterError::from_redis)?;
    Ok(set.is_some())
}

/// Renews the lease while it is ours; takes it again after Redis lost it (a restart).
async fn renew(mut connection: ConnectionManager, key: String, token: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let renewed: Result<i64, _> = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
             elseif redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
                 return 1 \
             else return 0 end",
        )
        .key(&key)
        .arg(&token)
        .arg(TTL.as_millis() as u64)
        .invoke_async(&mut connection)
        .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => tracing::error!(key, "another node has taken this node's name"),
            Err(err) => {
                tracing::warn!(key, error = %err, "could not renew the node's name in Redis");
            }
        }
    }
}
