//! History: each topic's recent broadcasts as a stream with an epoch and offsets, so a
//! subscriber that reconnects can ask for what it missed and be told honestly whether it
//! got all of it.
//!
//! Every broadcast published on this node goes through [`HistoryStore::append`] once (in
//! the node's publish funnel, never per subscriber), which gives it the next offset of its
//! topic's stream and, while the stream is still locked, lets the funnel deliver it. A
//! join goes through [`HistoryStore::attach`], which reads what a resuming subscriber
//! missed and, under the same lock, lets the session subscribe. Every broadcast is then
//! either in what the join read or delivered to it live, never both and never neither:
//! that is the whole no-gap, no-duplicate guarantee, and it costs one short lock per
//! publish.
//!
//! An epoch names one unbroken run of a stream's offsets. A new one starts whenever
//! continuity is lost: the node restarted (the in-memory store starts empty), the
//! stream was dropped whole after it stayed empty past the retention, or broadcasts of
//! the topic from other nodes were lost ([`HistoryStore::break_stream`]). A subscriber that
//! resumes from another epoch cannot know what it missed.
//!
//! [`MemoryHistory`] is the in-process implementation, bounded per topic by count, by
//! age, and per node by bytes (the oldest go first). The conformance suite in `tests`
//! runs against each implementation.

#[cfg(test)]
mod copy_tests;
mod memory;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crier_protocol::join::ResumeFrom;

pub(crate) use memory::MemoryHistory;

use crate::fanout::Content;

/// A place in a topic's stream: the broadcast with `offset` in the run named `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// The stream's current run (opaque).
    pub(crate) epoch: Arc<str>,
    /// 1 for the run's first broadcast; 0 before it has any.
    pub(crate) offset: u64,
}

/// One broadcast kept in a stream.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    pub(crate) content: Arc<Content>,
}

/// Why a resume cannot be served: the app has to refetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The stream is not the one the subscriber saw.
    EpochChanged,
    /// History no longer holds the first broadcast the subscriber missed.
    TooOld {
        /// That broadcast's offset.
        needed: u64,
    },
    /// The cluster's shared history could not be read for this join (the bus is
    /// unreachable or late, or this node's copy of the stream is behind).
    Unavailable,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::EpochChanged => f.write_str("Resume gap: epoch changed"),
            Gap::TooOld { needed } => {
                write!(f, "Resume gap: history no longer reaches offset {needed}")
            }
            Gap::Unavailable => {
                f.write_str("Resume gap: the cluster's history could not be read for this join")
            }
        }
    }
}

/// What a join found in its topic's stream.
#[derive(Debug)]
pub(crate) struct Attached {
    /// The stream's latest position when the join subscribed: live delivery goes on from
    /// the offset after it.
    pub(crate) latest: Position,
    /// For a resuming join: the broadcasts after its offset, oldest first, or why they
    /// cannot be had.
    pub(crate) missed: Option<Result<Vec<Entry>, Gap>>,
}

/// What a resuming join read of the cluster's shared history before it attached, for
/// the part of the stream this node's copy does not reach back to.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The shared stream's epoch and latest offset when read.
    pub(crate) latest: Position,
    /// Its kept broadcasts after the join's offset, oldest first.
    pub(crate) entries: Vec<Entry>,
}

/// Totals for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HistoryStats {
    /// Streams kept.
    pub(crate) topics: usize,
    /// Broadcasts kept.
    pub(crate) messages: usize,
    /// Their bytes, as the node-wide bound counts them.
    pub(crate) bytes: usize,
    /// Broadcasts dropped by any bound, since start.
    pub(crate) evicted: u64,
}

/// How much history a node keeps (`crier serve --history-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Broadcasts kept per topic; 0 turns history (and resume) off.
    pub size: usize,
    /// How long a broadcast is kept.
    pub ttl: Duration,
    /// Bytes all topics' history may hold together on this node; past it the oldest
    /// broadcasts of any topic go first.
    pub max_bytes: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            size: 100,
            ttl: Duration::from_secs(300),
            max_bytes: 64 << 20,
        }
    }
}

/// The streams of every topic (keyed like the registry: `registry::topic_key`).
///
/// The callbacks run while the topic's stream is locked; they must not call back into
/// the store.
pub(crate) trait HistoryStore: Send + Sync + fmt::Debug {
    /// Appends `content` to the stream of `key` and calls `then` with its position before
    /// anything else can be appended to that stream.
    fn append(&self, key: &str, content: &Arc<Content>, then: &mut dyn FnMut(&Position));

    /// The stream's latest position and, when `resume` is given, what came after it.
    /// `then` runs first, before anything else can be appended (the join subscribes in
    /// it); when it returns true, the stream missed broadcasts before now (the topic
    /// had no subscriber here in a cluster) and its epoch ends as with
    /// [`HistoryStore::break_stream`].
    ///
    /// A copy of a shared history (see [`HistoryStore::append_at`]) instead forgets
    /// where the stream stands until the bus says it again. It serves a resume from
    /// what it keeps and, for what it does not reach back to, from `fetched` (read of
    /// the shared stream just before; `None` when that read failed).
    fn attach(
        &self,
        key: &str,
        resume: Option<&ResumeFrom>,
        fetched: Option<&Fetched>,
        then: &mut dyn FnMut() -> bool,
    ) -> Attached;

    /// For a copy of a cluster's shared history: keeps `content`, numbered `at` by the
    /// bus, and calls `then` while the stream is locked, unless this copy has it already
    /// (a duplicate is dropped). `then` is told `true` when the broadcast does not follow
    /// the last one kept (broadcasts were lost on their way here, or the shared stream
    /// began a new epoch): subscribers must be told.
    fn append_at(
        &self,
        key: &str,
        at: &Position,
        content: &Arc<Content>,
        then: &mut dyn FnMut(bool),
    );

    /// For a copy of a cluster's shared history: the bus says the stream of `key` stood
    /// at `at`, in order with its publications. A copy that does not know where it
    /// stands yet starts from there; one that is behind starts again from there, and
    /// `true` says subscribers must be told they missed broadcasts.
    fn continue_after(&self, key: &str, at: &Position) -> bool;

    /// For a copy of a cluster's shared history: whether it knows where the stream of
    /// `key` stands (the bus has said so, or a publication came).
    fn follows(&self, key: &str) -> bool;

    /// For a copy of a cluster's shared history: completes once the copy of `key`'s
    /// stream has reached `offset` of `epoch` (at once if it follows another epoch).
    fn caught_up<'a>(
        &'a self,
        key: &'a str,
        epoch: &'a str,
        offset: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

    /// Up to `limit` broadcasts after offset `after`, oldest first, with the latest
    /// position; `None` when the topic has no stream.
    fn read(&self, key: &str, after: u64, limit: usize) -> Option<(Position, Vec<Entry>)>;

    /// Ends the stream's epoch: broadcasts of the topic were lost on their way here (the
    /// cluster bus was cut), so a resume from before now must be told it has a gap. What
    /// was kept goes; later broadcasts start a new epoch.
    fn break_stream(&self, key: &str);

    /// Drops what has outlived the retention, and the streams left empty past it.
    fn sweep(&self);

    /// Totals for the metrics.
    fn stats(&self) -> HistoryStats;
}
