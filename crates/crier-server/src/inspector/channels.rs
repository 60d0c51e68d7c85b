//! The channel list: every topic with a subscriber on this node, searchable by name.

use serde::{Deserialize, Serialize};

use crier_protocol::events::TOPIC_PREFIX;

use super::Inspector;
use crate::node::Shared;

/// The most rows one answer holds.
const MAX_ROWS: usize = 500;
/// Rows when the request does not say.
const DEFAULT_ROWS: usize = 100;

/// A `channels` request: the rows whose name contains `search` (case-insensitive), the
/// busiest first, at most `limit`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChannelsQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// The answer to a `channels` request.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelList {
    /// Topics that matched, before the limit.
    matched: usize,
    /// Topics on this node.
    total: usize,
    channels: Vec<ChannelRow>,
}

/// One topic of the list.
#[derive(Debug, Serialize)]
struct ChannelRow {
    /// The channel name (the topic without `realtime:`).
    name: String,
    /// A private channel (its messages and presences are apart from the public one's).
    private: bool,
    /// Sockets subscribed on this node.
    subscribers: usize,
    /// Presence entries tracked (cluster-wide in a cluster; a key on two tabs is two).
    presences: usize,
    /// Broadcasts per second delivered here, over the last second.
    rate: f64,
}

/// The channels `query` asks for, the most subscribed first (then by name).
pub(crate) fn channel_list(
    shared: &Shared,
    inspector: &Inspector,
    query: &ChannelsQuery,
) -> ChannelList {
    let search = query.search.to_lowercase();
    let limit = query.limit.unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS);
    let topics = shared.registry.topics();
    let total = topics.len();
    let mut matching: Vec<_> = topics
        .into_iter()
        .map(|topic| {
            let name = topic.name();
            let name = name.strip_prefix(TOPIC_PREFIX).unwrap_or(name).to_owned();
            (topic, name)
        })
        .filter(|(_, name)| search.is_empty() || name.to_lowercase().contains(&search))
        .map(|(topic, name)| (topic.subscriber_count(), topic, name))
        .collect();
    let matched = matching.len();
    matching.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    matching.truncate(limit);
    let channels = matching
        .into_iter()
        .map(|(subscribers, topic, name)| ChannelRow {
            private: topic.key() != topic.name(),
            presences: topic.presence_count(),
            rate: inspector.rate_of(topic.key()),
            subscribers,
            name,
        })
        .collect();
    ChannelList {
        matched,
        total,
        channels,
    }
}
