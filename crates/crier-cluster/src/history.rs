//! [`RedisHistory`]: the history every node of the cluster numbers its broadcasts in,
//! so that a subscriber resumes on any node (`crier_server::broker::SharedHistory`).
//!
//! Each topic's stream is two keys: a hash `crier:history-meta:<topic>` with the epoch
//! (`e`, from Redis's clock when the hash is made) and the last offset (`o`), and a
//! Redis stream `crier:history:<topic>` whose entry ids are `<offset>-1`, with the
//! broadcast (`d`, its kind and body as `crate::envelope::body` writes them) and when
//! it was kept (`t`, ms). One script ([`APPEND`]) numbers a broadcast, keeps it (trimmed
//! roughly by count; reads apply the exact bounds) and publishes it with its position on the topic's channel: Redis runs a
//! script whole, so the channel carries a topic's broadcasts in offset order, and a
//! broadcast is kept before any node can see it. Every node, the publishing one
//! included, delivers what the channel brings.
//!
//! After it subscribes a topic, a node runs [`MARK`], which publishes where the stream
//! stands on the same channel: in the channel's order, everything after that mark
//! reaches the node, which is how its copy of the stream knows where it starts.
//!
//! The stream expires a retention after its last broadcast, and the hash a day after
//! the stream's last use: an idle topic keeps its epoch, so a subscriber that missed
//! nothing resumes without a gap. A hash that is gone (expired, or Redis restarted
//! empty) gets a new epoch, and every resume from before it reports the gap. A Redis
//! restored from a snapshot would bring an old hash back with its epoch and number new
//! broadcasts again from an older offset: run the cluster's Redis without persistence
//! (docs/CLUSTER.md). Nodes notice the offsets going back (the mark after they reconnect
//! is behind their copy) and tell their subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crier_server::HistoryConfig;
use crier_server::broker::{
    BrokerError, BusFuture, OwnedPublication, Publication, SharedEntry, SharedHistory, SharedRead,
};
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::broker::{COMMAND_TIMEOUT, channel_of};
use crate::envelope::{self, Carried};
use crate::outbox::Outbox;

/// How long an idle topic keeps its epoch.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// The epoch of KEYS[1]'s stream, made (from Redis's clock, with offset 0 and the
/// stream KEYS[2] emptied) when missing; refreshes the hash's expiry (ARGV[1], ms).
const EPOCH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. '.' .. now[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
";

/// Numbers, keeps and publishes a broadcast. KEYS: meta, stream, the sender's applied
/// sequence number. ARGV: meta ttl ms, channel, frame head (`envelope::numbered_head`),
/// body, max entries, stream ttl ms, the sender's sequence number (added by the
/// publisher). A sequence number at or below the last applied one is a pipeline sent
/// again after a cut connection: already numbered, it is not numbered twice.
const APPEND: &str = r"
if tonumber(ARGV[7]) <= tonumber(redis.call('GET', KEYS[3]) or '0') then
  return 0
end
redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[1])
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], offset .. '-1', 't', ms, 'd', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. epoch .. ' ' .. offset .. '\n' .. ARGV[4])
return offset
";

/// Publishes where a topic's stream stands. KEYS: meta, stream. ARGV: meta ttl ms,
/// channel, frame head (`envelope::mark_head`).
const MARK: &str = r"
local offset = redis.call('HGET', KEYS[1], 'o')
redis.call('PUBLISH', ARGV[2], ARGV[3] .. epoch .. ' ' .. offset .. '\n')
return offset
";

/// Reads a stream after an offset. KEYS: meta, stream. ARGV: meta ttl ms, the first
/// offset wanted (`<offset>-0`, written by the caller: Lua's numbers lose digits), most
/// entries, stream ttl ms, entries kept. Returns the epoch, the latest offset, then each
/// kept entry's offset and body. The stream is trimmed roughly (`MAXLEN ~`, far cheaper
/// than exactly): what is past the count bound, or older than the ttl, counts as gone.
const READ: &str = r"
local latest = redis.call('HGET', KEYS[1], 'o')
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[4])
local first_kept = tonumber(latest) - tonumber(ARGV[5])
local out = {epoch, latest}
local found = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[2], '+')) do
  local fields = entry[2]
  local at, body = 0, ''
  for i = 1, #fields, 2 do
    if fields[i] == 't' then at = tonumber(fields[i + 1]) end
    if fields[i] == 'd' then body = fields[i + 1] end
  end
  local offset = string.match(entry[1], '^(%d+)')
  if at >= oldest and tonumber(offset) > first_kept then
    table.insert(out, offset)
    table.insert(out, body)
    found = found + 1
    if found >= tonumber(ARGV[3]) then break end
  end
end
return out
";

/// The scripts, each prefixed with [`EPOCH`].
struct Scripts {
    /// Called by its hash (`EVALSHA`) in the publisher's pipelines: sending it whole
    /// costs Redis a hash of its text per broadcast. A Redis that forgot it answers
    /// `NOSCRIPT`, and the publisher loads it ([`load_append`]) and sends again.
    append: redis::Script,
    mark: redis::Script,
    read: redis::Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        append: redis::Script::new(&format!("{EPOCH}{APPEND}")),
        mark: redis::Script::new(&format!("{EPOCH}{MARK}")),
        read: redis::Script::new(&format!("{EPOCH}{READ}")),
    })
}

fn meta_of(topic: &str) -> String {
    format!("crier:history-meta:{topic}")
}

fn stream_of(topic: &str) -> String {
    format!("crier:history:{topic}")
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().clamp(1, u64::MAX.into()) as u64
}

/// The shared history on the cluster's Redis (see the module doc). Made by
/// `RedisBroker`, whose tasks carry its publications and marks.
#[derive(Debug)]
pub(crate) struct RedisHistory {
    node: Arc<str>,
    config: HistoryConfig,
    outbox: Arc<Outbox>,
    /// The pub/sub connection is up: a broadcast sent now comes back to this node.
    subscribed: Arc<AtomicBool>,
    /// The last lease renewal went through: Redis answers.
    renewed: Arc<AtomicBool>,
    client: redis::Client,
    reader: OnceCell<ConnectionManager>,
    /// Where Redis keeps the last sequence number it applied of this node's appends
    /// (this run's: the publisher counts from 1 at start).
    applied: String,
}

impl RedisHistory {
    pub(crate) fn new(
        node: Arc<str>,
        config: HistoryConfig,
        outbox: Arc<Outbox>,
        (subscribed, renewed): (Arc<AtomicBool>, Arc<AtomicBool>),
        client: redis::Client,
    ) -> Self {
        RedisHistory {
            node,
            config,
            outbox,
            subscribed,
            renewed,
            client,
            reader: OnceCell::new(),
            applied: format!("crier:applied:{}", crate::liveness::token()),
        }
    }

    /// The [`APPEND`] call for a broadcast, without its sequence number (the publisher
    /// adds it), and its size as the outbox counts it.
    fn append_command(
        &self,
        topic: &str,
        publication: Publication<'_>,
        exclude: Option<u64>,
    ) -> (redis::Cmd, usize) {
        let body = envelope::body(publication);
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(scripts().append.get_hash())
            .arg(3)
            .arg(meta_of(topic))
            .arg(stream_of(topic))
            .arg(&self.applied)
            .arg(millis(META_TTL.max(self.config.ttl)))
            .arg(channel_of(topic))
            .arg(envelope::numbered_head(&self.node, exclude))
            .arg(body.as_ref())
            .arg(self.config.size)
            .arg(millis(self.config.ttl));
        (command, body.len() + 2 * topic.len() + 64)
    }

    async fn reader(&self) -> redis::RedisResult<ConnectionManager> {
        let config =
            redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
        self.reader
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
    }
}

impl SharedHistory for RedisHistory {
    fn append(
        &self,
        topic: &str,
        publication: Publication<'_>,
        exclude: Option<u64>,
    ) -> Result<(), BrokerError> {
        if !(self.subscribed.load(Ordering::Relaxed) && self.renewed.load(Ordering::Relaxed)) {
            // It would not come back here: this node delivers it itself, and the other
            // nodes hear of the gap once Redis is back.
            self.outbox.lose(topic);
            return Err(BrokerError::Unavailable(
                "the cluster bus (Redis) is unreachable".into(),
            ));
        }
        let (command, bytes) = self.append_command(topic, publication, exclude);
        self.outbox
            .numbered(topic, command, bytes)
            .map_err(|_| BrokerError::Unavailable("the bus has stopped".into()))
    }

    fn read(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'_, Result<SharedRead, BrokerError>> {
        let mut invocation = scripts().read.prepare_invoke();
        invocation
            .key(meta_of(topic))
            .key(stream_of(topic))
            .arg(millis(META_TTL.max(self.config.ttl)))
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg(limit)
            .arg(millis(self.config.ttl))
            .arg(self.config.size);
        Box::pin(async move {
            let unavailable = |err: redis::RedisError| BrokerError::Unavailable(err.to_string());
            let mut reader = self.reader().await.map_err(unavailable)?;
            let reply: Vec<Vec<u8>> = invocation
                .invoke_async(&mut reader)
                .await
                .map_err(unavailable)?;
            parse_read(reply).ok_or_else(|| {
                BrokerError::Unavailable("the cluster's history answered unreadably".into())
            })
        })
    }
}

fn parse_read(reply: Vec<Vec<u8>>) -> Option<SharedRead> {
    let mut items = reply.into_iter();
    let epoch = String::from_utf8(items.next()?).ok()?;
    let latest = std::str::from_utf8(&items.next()?).ok()?.parse().ok()?;
    let mut entries = Vec::new();
    while let (Some(offset), Some(body)) = (items.next(), items.next()) {
        let offset = std::str::from_utf8(&offset).ok()?.parse().ok()?;
        let publication = match envelope::decode_body(&body) {
            Ok(Carried::Json(body)) => OwnedPublication::Json(body),
            Ok(Carried::Binary(broadcast)) => OwnedPublication::Binary(broadcast),
            _ => continue, // unreadable: a resume that needs it reports a gap
        };
        entries.push(SharedEntry {
            offset,
            publication,
        });
    }
    Some(SharedRead {
        epoch,
        latest,
        entries,
    })
}

/// Loads the append script into a Redis that answered `NOSCRIPT` (it restarted).
pub(crate) async fn load_append(
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<()> {
    scripts().append.load_async(connection).await.map(drop)
}

/// Publishes where `topic`'s stream stands on its channel, as node `node` (see the
/// module doc); `meta_ttl` as the history's.
pub(crate) async fn mark(
    connection: &mut impl redis::aio::ConnectionLike,
    node: &str,
    topic: &str,
    config: &HistoryConfig,
) -> redis::RedisResult<()> {
    scripts()
        .mark
        .key(meta_of(topic))
        .key(stream_of(topic))
        .arg(millis(META_TTL.max(config.ttl)))
        .arg(channel_of(topic))
        .arg(envelope::mark_head(node))
        .invoke_async::<()>(connection)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pipeline_sent_again_does_not_number_its_broadcasts_twice() {
        let redis = crier_testkit::TestRedis::start().expect("redis-server");
        let client = redis::Client::open(redis.url()).unwrap();
        let (outbox, _queued) = Outbox::new(10, 1 << 20);
        let flags = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(true)),
        );
        let history = RedisHistory::new(
            Arc::from("n"),
            HistoryConfig::default(),
            Arc::new(outbox),
            flags,
            client.clone(),
        );
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        load_append(&mut connection).await.unwrap();
        let body = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let send = |sequence: u64| {
            let (mut command, _) = history.append_command("t", Publication::Json(&body), None);
            command.arg(sequence);
            command
        };
        let numbered = |command: redis::Cmd| {
            let mut connection = connection.clone();
            async move { command.query_async::<u64>(&mut connection).await.unwrap() }
        };
        assert_eq!(numbered(send(1)).await, 1);
        assert_eq!(numbered(send(2)).await, 2);
        assert_eq!(numbered(send(2)).await, 0, "sent again: not numbered");
        assert_eq!(numbered(send(1)).await, 0);
        assert_eq!(numbered(send(3)).await, 3);
        let read = history.read("t", 0, 10).await.unwrap();
        assert_eq!(read.latest, 3);
        assert_eq!(read.entries.len(), 3);
        let _: () = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}
