//! [`MemoryHistory`]: every topic's stream in this process.
//!
//! A stream is a `VecDeque` of entries behind its own mutex, so publishers of different
//! topics never wait for each other. The node-wide byte bound needs to know which entry
//! is the oldest of all topics: a second queue records every append in order, `(topic,
//! offset)`, and eviction pops from its front. An entry that a per-topic bound dropped
//! first is simply not found there any more. No two locks are ever held at once.
//!
//! The same store is a node's copy of a cluster's shared history
//! ([`MemoryHistory::copy_of_shared`]): then the bus numbers the broadcasts
//! ([`HistoryStore::append_at`]) and the store only keeps the recent ones and checks that
//! each follows the last.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_protocol::join::ResumeFrom;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Attached, Entry, Fetched, Gap, HistoryConfig, HistoryStats, HistoryStore, Position};
use crate::fanout::Content;

/// How long a copy of a shared stream that nothing touched is kept: as long as the
/// cluster's Redis keeps an idle topic's epoch.
const COPY_IDLE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What an entry costs beyond its payload: the deque slot, the `Arc`, the content's
/// other fields.
const ENTRY_OVERHEAD: usize = 96;

/// Streams in memory; lost on restart, which is why every stream's epoch is new then.
#[derive(Debug)]
pub(crate) struct MemoryHistory {
    config: HistoryConfig,
    /// A copy of a cluster's shared history: positions come from the bus.
    copy: bool,
    streams: DashMap<Arc<str>, Arc<Mutex<Stream>>>,
    /// Every entry kept, in append order across topics: the node-wide bound's queue.
    order: Mutex<VecDeque<(Arc<str>, u64)>>,
    bytes: AtomicUsize,
    messages: AtomicUsize,
    evicted: AtomicU64,
    /// Woken when a copy's stream moves, for `caught_up`; only when someone waits.
    moved: tokio::sync::Notify,
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    /// The offset of the newest broadcast ever appended (0: none).
    last: u64,
    entries: VecDeque<Kept>,
    /// Whether `epoch` and `last` say where the stream stands: always for a stream of
    /// this node's own; for a copy, once the bus has said so.
    known: bool,
    /// The last append or join: a stream left empty is dropped a retention after it.
    touched: Instant,
}

#[derive(Debug)]
struct Kept {
    offset: u64,
    at: Instant,
    bytes: usize,
    content: Arc<Content>,
}

impl MemoryHistory {
    /// Empty, keeping what `config` allows.
    pub(crate) fn new(config: HistoryConfig) -> Self {
        MemoryHistory::with(config, false)
    }

    /// Empty, as this node's copy of a cluster's shared history (see the module doc).
    pub(crate) fn copy_of_shared(config: HistoryConfig) -> Self {
        MemoryHistory::with(config, true)
    }

    fn with(config: HistoryConfig, copy: bool) -> Self {
        MemoryHistory {
            config,
            copy,
            streams: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            moved: tokio::sync::Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The stream of `key` (made when missing), with the map's own copy of the key, so
    /// the append-order queue shares it instead of allocating one per broadcast.
    fn stream(&self, key: &str) -> (Arc<str>, Arc<Mutex<Stream>>) {
        if let Some(stream) = self.streams.get(key) {
            return (Arc::clone(stream.key()), Arc::clone(&stream));
        }
        let entry = self.streams.entry(Arc::from(key)).or_insert_with(|| {
            Arc::new(Mutex::new(Stream {
                epoch: if self.copy {
                    Arc::from("")
                } else {
                    new_epoch()
                },
                last: 0,
                known: !self.copy,
                entries: VecDeque::new(),
                touched: Instant::now(),
            }))
        });
        (Arc::clone(entry.key()), Arc::clone(&entry))
    }

    /// Keeps `content` as `stream`'s entry `offset`, within the stream's bounds.
    fn keep(&self, stream: &mut Stream, offset: u64, content: &Arc<Content>, now: Instant) {
        let bytes = content.len() + ENTRY_OVERHEAD;
        stream.entries.push_back(Kept {
            offset,
            at: now,
            bytes,
            content: Arc::clone(content),
        });
        stream.touched = now;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.trim(stream, now);
    }

    /// Drops `stream`'s entries past the count bound and the age bound.
    fn trim(&self, stream: &mut Stream, now: Instant) {
        while let Some(front) = stream.entries.front() {
            let too_many = stream.entries.len() > self.config.size;
            let too_old = now.saturating_duration_since(front.at) > self.config.ttl;
            if !(too_many || too_old) {
                break;
            }
            let gone = stream.entries.pop_front().expect("front exists");
            self.forget(gone.bytes, 1);
        }
    }

    fn forget(&self, bytes: usize, messages: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.messages.fetch_sub(messages, Ordering::Relaxed);
        self.evicted.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// Starts a new epoch: what was kept goes. `last` goes on counting (the append-order
    /// queue names entries by offset).
    fn end_epoch(&self, stream: &mut Stream) {
        self.start_again(stream, new_epoch());
    }

    /// Drops what `stream` kept, and names its run `epoch`.
    fn start_again(&self, stream: &mut Stream, epoch: Arc<str>) {
        stream.epoch = epoch;
        let gone = std::mem::take(&mut stream.entries);
        let bytes = gone.iter().map(|kept| kept.bytes).sum();
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.messages.fetch_sub(gone.len(), Ordering::Relaxed);
    }

    /// Wakes `caught_up` waiters, if any.
    fn moved(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.moved.notify_waiters();
        }
    }

    /// Whether the copy of `key` has reached `offset` of `epoch`, or follows another.
    fn reached(&self, key: &str, epoch: &str, offset: u64) -> bool {
        self.streams.get(key).is_some_and(|stream| {
            let stream = stream.lock();
            stream.known && (*stream.epoch != *epoch || stream.last >= offset)
        })
    }

    /// Evicts the oldest entries of any topic while the node holds too many bytes.
    fn enforce_bytes(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.config.max_bytes {
            let Some((key, offset)) = self.order.lock().pop_front() else {
                return;
            };
            let Some(stream) = self.streams.get(&key).map(|s| Arc::clone(&s)) else {
                continue;
            };
            let mut stream = stream.lock();
            while stream.entries.front().is_some_and(|e| e.offset <= offset) {
                let gone = stream.entries.pop_front().expect("front exists");
                self.forget(gone.bytes, 1);
            }
        }
    }
}

impl HistoryStore for MemoryHistory {
    fn append(&self, key: &str, content: &Arc<Content>, then: &mut dyn FnMut(&Position)) {
        let (key, stream) = self.stream(key);
        let now = Instant::now();
        let offset = {
            let mut stream = stream.lock();
            stream.last += 1;
            let offset = stream.last;
            self.keep(&mut stream, offset, content, now);
            then(&Position {
                epoch: Arc::clone(&stream.epoch),
                offset,
            });
            offset
        };
        let mut order = self.order.lock();
        order.push_back((key, offset));
        // Names of entries the per-topic bounds dropped stay queued until `sweep`; between
        // sweeps, cap them so a hot topic cannot grow the queue without bound.
        while order.len() > 4 * self.messages.load(Ordering::Relaxed) + 4096 {
            order.pop_front();
        }
        drop(order);
        self.enforce_bytes();
    }

    fn attach(
        &self,
        key: &str,
        resume: Option<&ResumeFrom>,
        fetched: Option<&Fetched>,
        then: &mut dyn FnMut() -> bool,
    ) -> Attached {
        let (_, stream) = self.stream(key);
        let now = Instant::now();
        let mut stream = stream.lock();
        if then() {
            if self.copy {
                // Until the bus says where the stream stands again.
                self.start_again(&mut stream, Arc::from(""));
                stream.known = false;
                stream.last = 0;
            } else {
                self.end_epoch(&mut stream);
            }
        }
        self.trim(&mut stream, now);
        stream.touched = now;
        let latest = Position {
            epoch: Arc::clone(&stream.epoch),
            offset: stream.last,
        };
        if self.copy {
            let missed = resume.map(|from| missed_in_copy(&stream, from, fetched));
            return Attached { latest, missed };
        }
        let missed = resume.map(|from| {
            if *from.epoch != *stream.epoch {
                return Err(Gap::EpochChanged);
            }
            if from.offset >= stream.last {
                return Ok(Vec::new());
            }
            let needed = from.offset + 1;
            match stream.entries.front() {
                Some(first) if first.offset <= needed => Ok(stream
                    .entries
                    .iter()
                    .filter(|kept| kept.offset > from.offset)
                    .map(|kept| Entry {
                        offset: kept.offset,
                        content: Arc::clone(&kept.content),
                    })
                    .collect()),
                _ => Err(Gap::TooOld { needed }),
            }
        });
        Attached { latest, missed }
    }

    fn append_at(
        &self,
        key: &str,
        at: &Position,
        content: &Arc<Content>,
        then: &mut dyn FnMut(bool),
    ) {
        let (key, stream) = self.stream(key);
        let now = Instant::now();
        {
            let mut stream = stream.lock();
            let same_run = stream.known && stream.epoch == at.epoch;
            // The bus never brings one broadcast twice: an offset that goes back means
            // the shared stream was rewound (a Redis restored from a snapshot).
            let follows = same_run && at.offset == stream.last + 1;
            // Before the bus said where the stream stood, the first broadcast says it.
            let jumped = stream.known && !follows;
            if !follows {
                self.start_again(&mut stream, Arc::clone(&at.epoch));
            }
            stream.known = true;
            stream.last = at.offset;
            self.keep(&mut stream, at.offset, content, now);
            then(jumped);
        }
        let mut order = self.order.lock();
        order.push_back((key, at.offset));
        while order.len() > 4 * self.messages.load(Ordering::Relaxed) + 4096 {
            order.pop_front();
        }
        drop(order);
        self.moved();
        self.enforce_bytes();
    }

    fn continue_after(&self, key: &str, at: &Position) -> bool {
        let (_, stream) = self.stream(key);
        let mut stream = stream.lock();
        if stream.known && stream.epoch == at.epoch && stream.last == at.offset {
            return false; // in step
        }
        let jumped = stream.known;
        self.start_again(&mut stream, Arc::clone(&at.epoch));
        stream.known = true;
        stream.last = at.offset;
        drop(stream);
        self.moved();
        jumped
    }

    fn caught_up<'a>(
        &'a self,
        key: &'a str,
        epoch: &'a str,
        offset: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // Counted before each check, so a move after the check sees the waiter.
            struct Waiting<'a>(&'a AtomicUsize);
            impl Drop for Waiting<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            loop {
                let moved = self.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if self.reached(key, epoch, offset) {
                    return;
                }
                moved.await;
            }
        })
    }

    fn follows(&self, key: &str) -> bool {
        self.streams
            .get(key)
            .is_some_and(|stream| stream.lock().known)
    }

    fn read(&self, key: &str, after: u64, limit: usize) -> Option<(Position, Vec<Entry>)> {
        let stream = Arc::clone(&*self.streams.get(key)?);
        let mut stream = stream.lock();
        self.trim(&mut stream, Instant::now());
        let entries = stream
            .entries
            .iter()
            .filter(|kept| kept.offset > after)
            .take(limit)
            .map(|kept| Entry {
                offset: kept.offset,
                content: Arc::clone(&kept.content),
            })
            .collect();
        let latest = Position {
            epoch: Arc::clone(&stream.epoch),
            offset: stream.last,
        };
        Some((latest, entries))
    }

    fn break_stream(&self, key: &str) {
        let Some(stream) = self.streams.get(key).map(|s| Arc::clone(&s)) else {
            return; // no stream: the next one starts with a new epoch anyway
        };
        self.end_epoch(&mut stream.lock());
    }

    fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.config.ttl;
        // A copy keeps where a stream stands while it may still follow it (the bus says
        // so only when it subscribes): as long as the shared stream keeps its epoch.
        let idle = if self.copy { ttl.max(COPY_IDLE) } else { ttl };
        self.streams.retain(|_, stream| {
            let mut stream = stream.lock();
            self.trim(&mut stream, now);
            !(stream.entries.is_empty() && now.saturating_duration_since(stream.touched) > idle)
        });
        // The append-order queue still names what the per-topic bounds dropped: keep
        // only the names of entries that are still there.
        self.order.lock().retain(|(key, offset)| {
            self.streams.get(key).is_some_and(|stream| {
                let stream = stream.lock();
                stream
                    .entries
                    .front()
                    .is_some_and(|first| first.offset <= *offset)
            })
        });
    }

    fn stats(&self) -> HistoryStats {
        HistoryStats {
            topics: self.streams.len(),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}

/// What a resume from `from` missed, from a copy of the shared stream and, for the part
/// the copy does not reach back to, from `fetched`. Every offset from the one after
/// `from` up to the copy's latest must be found, in order; the first one missing is the
/// gap.
fn missed_in_copy(
    stream: &Stream,
    from: &ResumeFrom,
    fetched: Option<&Fetched>,
) -> Result<Vec<Entry>, Gap> {
    if !stream.known {
        return Err(Gap::Unavailable);
    }
    if *from.epoch != *stream.epoch {
        return Err(Gap::EpochChanged);
    }
    if from.offset > stream.last {
        // The client saw more than this copy has, even after waiting for it.
        return Err(Gap::Unavailable);
    }
    if from.offset == stream.last {
        return Ok(Vec::new());
    }
    let kept = stream.entries.iter().map(|kept| Entry {
        offset: kept.offset,
        content: Arc::clone(&kept.content),
    });
    let reaches_back = stream
        .entries
        .front()
        .is_some_and(|first| first.offset <= from.offset + 1);
    let read = match fetched {
        _ if reaches_back => Vec::new(),
        Some(fetched) if fetched.latest.epoch == stream.epoch => fetched.entries.clone(),
        Some(_) => return Err(Gap::EpochChanged),
        None => return Err(Gap::Unavailable),
    };
    let mut missed = Vec::new();
    let mut next = from.offset + 1;
    for entry in read.into_iter().chain(kept) {
        if entry.offset < next {
            continue;
        }
        if entry.offset > next || next > stream.last {
            break;
        }
        missed.push(entry);
        next += 1;
    }
    if next <= stream.last {
        return Err(Gap::TooOld { needed: next });
    }
    Ok(missed)
}

/// A new epoch: random, so that one from before a restart never matches.
fn new_epoch() -> Arc<str> {
    Arc::from(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 9]>()))
}
