//! Presence across nodes: each topic's entries in a Redis hash, changes on the topic's
//! channel.
//!
//! `crier:presence:<topic key>` maps `<node>|<connection>` to `[key, meta]` for every
//! entry of every node, with `#epoch` and `#seq`. One Lua script ([`CHANGE`]) applies a
//! node's change to the hash, counts it in `#seq`, and publishes it with that position on
//! the topic's channel, atomically; the hash is deleted when its last entry goes, and the
//! next change starts a new epoch. So a node that subscribes to the channel and then
//! reads the hash (a snapshot) knows exactly which later changes the snapshot already
//! holds, and notices one it missed by a jump in `#seq`: it reads the snapshot again.
//!
//! A node applies its own changes at once ([`Replica`]); other nodes' come in on the
//! broker's subscriber task and are handed to the node's [`PresenceSink`]. The set
//! `crier:presence-topics:<node>` lists the topics where a node has entries, so that
//! when it dies another node can clear them (`crate::liveness`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crier_protocol::presence::{PresenceDiff, PresenceGroups, PresenceMeta};
use crier_server::presence::{
    NodeNo, Owner, PresenceSink, RemoteChange, RemoteEntry, Replica, TopicPresence,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::broker::channel_of;
use crate::outbox::Outbox;

/// Applies one node's change to a topic's hash and publishes it with its position.
///
/// KEYS: the topic's hash, the node's topic set, the topic's channel.
/// ARGV: node, clear (1: drop the node's entries first), number of entries to set,
/// number to delete, frame head, change body, topic key, whether the node has no entry
/// left in the topic, then field/value pairs to set, then fields to delete.
const CHANGE: &str = r"
local hash = KEYS[1]
if ARGV[2] == '1' then
  local prefix = ARGV[1] .. '|'
  for _, field in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', hash, field) end
  end
end
local i = 9
for _ = 1, tonumber(ARGV[3]) do redis.call('HSET', hash, ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, tonumber(ARGV[4]) do redis.call('HDEL', hash, ARGV[i]); i = i + 1 end
local epoch = redis.call('HGET', hash, '#epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. '.' .. now[2]
  redis.call('HSET', hash, '#epoch', epoch)
end
local seq = redis.call('HINCRBY', hash, '#seq', 1)
if redis.call('HLEN', hash) <= 2 then redis.call('DEL', hash) end
if tonumber(ARGV[3]) > 0 then redis.call('SADD', KEYS[2], ARGV[7])
elseif ARGV[8] == '1' then redis.call('SREM', KEYS[2], ARGV[7]) end
redis.call('PUBLISH', KEYS[3], ARGV[5] .. epoch .. ' ' .. seq .. '\n' .. ARGV[6])
return seq
";

/// A node's change to one topic's presence, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// The node whose entries change.
    pub(crate) node: String,
    /// All the node's entries go first (it pushes them again, or it died).
    #[serde(default)]
    pub(crate) clear: bool,
    /// Entries set: connection, key, meta.
    #[serde(default)]
    pub(crate) set: Vec<(Owner, String, PresenceMeta)>,
    /// Connections whose entry goes.
    #[serde(default)]
    pub(crate) del: Vec<Owner>,
}

/// Where a change sits in its topic's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    /// Changes when the topic's hash is created again; empty when there is none.
    pub(crate) epoch: String,
    pub(crate) seq: u64,
}

/// The Redis key of a topic's presence hash.
pub(crate) fn hash_of(topic: &str) -> String {
    format!("crier:presence:{topic}")
}

/// The Redis key of the set of topics where `node` has entries.
pub(crate) fn topics_of(node: &str) -> String {
    format!("crier:presence-topics:{node}")
}

/// The script call that applies `change` to `topic`, published as from `head`.
pub(crate) fn change_command(
    topic: &str,
    change: &Change,
    head: &[u8],
    node_empty: bool,
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CHANGE)
        .arg(3)
        .arg(hash_of(topic))
        .arg(topics_of(&change.node))
        .arg(channel_of(topic))
        .arg(&change.node)
        .arg(if change.clear { "1" } else { "0" })
        .arg(change.set.len())
        .arg(change.del.len())
        .arg(head)
        .arg(serde_json::to_string(change).expect("a change serializes"))
        .arg(topic)
        .arg(if node_empty { "1" } else { "0" });
    for (owner, key, meta) in &change.set {
        cmd.arg(format!("{}|{owner}", change.node))
            .arg(serde_json::to_string(&(key, meta)).expect("an entry serializes"));
    }
    for owner in &change.del {
        cmd.arg(format!("{}|{owner}", change.node));
    }
    cmd
}

/// What the broker's parts share about presence.
#[derive(Debug)]
pub(crate) struct Presence {
    node: Arc<str>,
    /// The start of this node's presence frames (`envelope::presence_head`).
    head: Vec<u8>,
    /// The publisher's queue: changes go out in the order they were made.
    outbox: Arc<Outbox>,
    numbers: Mutex<HashMap<String, NodeNo>>,
    /// Entries this node tracks, over all topics.
    local_entries: AtomicU64,
    /// The topics where it tracks any, with how many.
    local_topics: Mutex<HashMap<String, usize>>,
    sink: OnceLock<Weak<dyn PresenceSink>>,
}

impl Presence {
    pub(crate) fn new(node: Arc<str>, outbox: Arc<Outbox>) -> Self {
        Presence {
            head: crate::envelope::presence_head(&node),
            node,
            outbox,
            numbers: Mutex::default(),
            local_entries: AtomicU64::new(0),
            local_topics: Mutex::default(),
            sink: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, sink: Weak<dyn PresenceSink>) {
        let _ = self.sink.set(sink);
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn PresenceSink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// Entries this node tracks, over all topics.
    pub(crate) fn local_entries(&self) -> u64 {
        self.local_entries.load(Ordering::Relaxed)
    }

    /// Clears this node's entries in every topic Redis lists for it where it tracks
    /// nothing now: leaves that never reached Redis (dropped while it was away), or a
    /// previous run of a node of the same name.
    pub(crate) async fn resync(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<()> {
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(topics_of(&self.node))
            .query_async(connection)
            .await?;
        let stale: Vec<String> = {
            let local = self.local_topics.lock();
            listed
                .into_iter()
                .filter(|topic| !local.contains_key(topic))
                .collect()
        };
        let cleared = Change {
            node: self.node.to_string(),
            clear: true,
            set: Vec::new(),
            del: Vec::new(),
        };
        for topic in &stale {
            change_command(topic, &cleared, &self.head, true)
                .query_async::<()>(connection)
                .await?;
        }
        if !stale.is_empty() {
            tracing::info!(
                topics = stale.len(),
                "cleared this node's stale presences in Redis"
            );
        }
        Ok(())
    }

    fn counted(&self, topic: &str, added: bool) {
        let mut local = self.local_topics.lock();
        if added {
            self.local_entries.fetch_add(1, Ordering::Relaxed);
            *local.entry(topic.to_owned()).or_default() += 1;
        } else {
            self.local_entries.fetch_sub(1, Ordering::Relaxed);
            if let Some(count) = local.get_mut(topic) {
                *count -= 1;
                if *count == 0 {
                    local.remove(topic);
                }
            }
        }
    }

    /// The number [`Replica`] knows node `name` by.
    fn number(&self, name: &str) -> NodeNo {
        let mut numbers = self.numbers.lock();
        let next = numbers.len() as NodeNo + 1;
        *numbers.entry(name.to_owned()).or_insert(next)
    }

    fn send(&self, topic: &str, change: &Change, node_empty: bool) {
        let command = change_command(topic, change, &self.head, node_empty);
        // Presence changes are few: measuring one exactly costs little.
        let bytes = command.get_packed_command().len();
        self.outbox.presence(command, bytes);
    }

    /// Opens a topic's presence on this node.
    pub(crate) fn open(self: &Arc<Self>, topic: &str) -> Box<dyn TopicPresence> {
        Box::new(ClusterTopic {
            topic: topic.to_owned(),
            replica: Replica::new(),
            presence: Arc::clone(self),
        })
    }

    /// The changes for [`PresenceSink::merge`] that `change` from another node makes.
    pub(crate) fn remote_changes(&self, change: Change) -> Vec<RemoteChange> {
        let node = self.number(&change.node);
        let entries = |set: Vec<(Owner, String, PresenceMeta)>| {
            set.into_iter()
                .map(|(owner, key, meta)| RemoteEntry {
                    node,
                    owner,
                    key,
                    meta,
                })
                .collect::<Vec<_>>()
        };
        if change.clear {
            return vec![RemoteChange::ReplaceNode {
                node,
                entries: entries(change.set),
            }];
        }
        let untracks = change
            .del
            .into_iter()
            .map(|owner| RemoteChange::Untrack { node, owner });
        entries(change.set)
            .into_iter()
            .map(RemoteChange::Track)
            .chain(untracks)
            .collect()
    }

    /// The change a topic's first change after its hash was (re)created makes: it holds
    /// the whole hash, so other nodes' entries are exactly its own.
    pub(crate) fn fresh_start(&self, change: Change) -> RemoteChange {
        if change.node == *self.node {
            return RemoteChange::Reset(Vec::new());
        }
        let node = self.number(&change.node);
        RemoteChange::Reset(
            change
                .set
                .into_iter()
                .map(|(owner, key, meta)| RemoteEntry {
                    node,
                    owner,
                    key,
                    meta,
                })
                .collect(),
        )
    }

    /// Reads a topic's snapshot: its position and other nodes' entries.
    pub(crate) async fn snapshot(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        topic: &str,
    ) -> redis::RedisResult<(Cursor, Vec<RemoteEntry>)> {
        let fields: HashMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
            .arg(hash_of(topic))
            .query_async(connection)
            .await?;
        let mut cursor = Cursor::default();
        let mut entries = Vec::new();
        // Another program's bytes in the hash are skipped, never fatal.
        let fields = fields.into_iter().filter_map(|(field, value)| {
            Some((
                String::from_utf8(field).ok()?,
                String::from_utf8(value).ok()?,
            ))
        });
        for (field, value) in fields {
            match field.as_str() {
                "#epoch" => cursor.epoch = value,
                "#seq" => cursor.seq = value.parse().unwrap_or(0),
                _ => {
                    let Some((node, owner)) = field.rsplit_once('|') else {
                        continue;
                    };
                    if node == &*self.node {
                        continue;
                    }
                    let parsed = owner
                        .parse::<Owner>()
                        .ok()
                        .zip(serde_json::from_str::<(String, PresenceMeta)>(&value).ok());
                    match parsed {
                        Some((owner, (key, meta))) => entries.push(RemoteEntry {
                            node: self.number(node),
                            owner,
                            key,
                            meta,
                        }),
                        None => tracing::warn!(
                            topic,
                            field,
                            "ignoring an unreadable presence entry in Redis"
                        ),
                    }
                }
            }
        }
        Ok((cursor, entries))
    }
}

/// Whether epoch `a` began before epoch `b` (epochs are Redis's `TIME` at a hash's
/// creation, `seconds.microseconds`).
pub(crate) fn older(a: &str, b: &str) -> bool {
    let parse = |epoch: &str| -> Option<(u64, u64)> {
        let (seconds, micros) = epoch.split_once('.')?;
        Some((seconds.parse().ok()?, micros.parse().ok()?))
    };
    matches!((parse(a), parse(b)), (Some(a), Some(b)) if a < b)
}

/// Reads a presence frame's body: its position and the change.
pub(crate) fn parse(text: &str) -> Option<(Cursor, Change)> {
    let (position, body) = text.split_once('\n')?;
    let (epoch, seq) = position.split_once(' ')?;
    let change = serde_json::from_str(body).ok()?;
    Some((
        Cursor {
            epoch: epoch.to_owned(),
            seq: seq.parse().ok()?,
        },
        change,
    ))
}

/// One topic's presence on a node of the cluster.
#[derive(Debug)]
struct ClusterTopic {
    topic: String,
    replica: Replica,
    presence: Arc<Presence>,
}

impl ClusterTopic {
    fn change(&self) -> Change {
        Change {
            node: self.presence.node.to_string(),
            clear: false,
            set: Vec::new(),
            del: Vec::new(),
        }
    }
}

impl TopicPresence for ClusterTopic {
    fn track(
        &mut self,
        owner: Owner,
        key: &str,
        meta: Map<String, Value>,
        new_ref: &dyn Fn() -> String,
    ) -> Option<PresenceDiff> {
        let before = self.replica.local_len();
        let diff = self.replica.track(owner, key, meta, new_ref)?;
        if self.replica.local_len() > before {
            self.presence.counted(&self.topic, true);
        }
        let (key, meta) = self.replica.local(owner).expect("just tracked");
        let mut change = self.change();
        change.set.push((owner, key.to_owned(), meta.clone()));
        self.presence.send(&self.topic, &change, false);
        Some(diff)
    }

    fn untrack(&mut self, owner: Owner) -> Option<PresenceDiff> {
        let diff = self.replica.untrack(owner)?;
        self.presence.counted(&self.topic, false);
        let mut change = self.change();
        change.del.push(owner);
        self.presence
            .send(&self.topic, &change, self.replica.local_len() == 0);
        Some(diff)
    }

    fn state(&self) -> PresenceGroups {
        self.replica.state()
    }

    fn len(&self) -> usize {
        self.replica.entries()
    }

    fn is_empty(&self) -> bool {
        self.replica.local_len() == 0
    }

    fn merge(&mut self, change: RemoteChange) -> Option<PresenceDiff> {
        self.replica.merge(change)
    }

    fn republish(&mut self) {
        let mut change = self.change();
        change.clear = true;
        change.set = self
            .replica
            .locals()
            .into_iter()
            .map(|(owner, key, meta)| (owner, key.to_owned(), meta.clone()))
            .collect();
        if !change.set.is_empty() {
            self.presence.send(&self.topic, &change, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_compare_by_time_not_text() {
        assert!(older("99.5", "100.1"));
        assert!(older("100.5", "100.10"));
        assert!(!older("100.10", "100.5"));
        assert!(!older("100.1", "100.1"));
        assert!(!older("", "100.1"), "no epoch yet is not older");
    }

    #[test]
    fn a_frame_body_reads_back() {
        let change = Change {
            node: "a|b".into(),
            clear: true,
            set: vec![(
                7,
                "ana".into(),
                PresenceMeta {
                    phx_ref: "r".into(),
                    phx_ref_prev: None,
                    payload: Map::new(),
                },
            )],
            del: vec![3],
        };
        let text = format!("1700.5 9\n{}", serde_json::to_string(&change).unwrap());
        let (cursor, read) = parse(&text).unwrap();
        assert_eq!(
            cursor,
            Cursor {
                epoch: "1700.5".into(),
                seq: 9
            }
        );
        assert_eq!(read, change);
        assert_eq!(parse("no position"), None);
        assert_eq!(parse("1 x\n{}"), None);
    }
}
