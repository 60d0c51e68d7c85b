//! A worker holds a share of a run's connections and does what the coordinator says:
//! open subscribers or virtual users, publish, switch epochs, report tallies.
//!
//! A worker is one thread with a current-thread runtime, either inside the coordinator's
//! process or in a process of its own (`crier bench-worker`) when a run needs more
//! sockets than one process may open. Either way it talks to the coordinator through
//! the same [`Command`] and [`Event`] messages.

mod conn;
pub mod link;
mod publisher;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::client::Dialer;
use crate::failures::Failures;
use crate::stats::{EpochReport, Recorder};
use crate::wire::Target;

pub use link::{Launch, Pool, WorkerHandle};

/// Members of a virtual users' group channel (the Supabase broadcast benchmark's 6).
pub const GROUP_SIZE: usize = 6;

/// Everything a worker needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Position among the run's workers (worker 0 also publishes in fan-out runs).
    pub index: usize,
    /// The server.
    pub target: Target,
    /// Local address for this worker's sockets.
    pub source: Option<IpAddr>,
    /// Connects in flight at once.
    pub concurrency: usize,
    /// Read buffer per socket, in bytes.
    pub read_buffer: usize,
}

/// Which topics a batch of subscribers joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicPlan {
    /// Every subscriber on this one topic.
    One {
        /// The topic.
        topic: String,
    },
    /// Subscriber `i` on `<prefix>-<i % count>`.
    Spread {
        /// Topic name prefix.
        prefix: String,
        /// Number of distinct topics.
        count: usize,
    },
}

impl TopicPlan {
    fn topic(&self, i: usize) -> String {
        match self {
            TopicPlan::One { topic } => topic.clone(),
            TopicPlan::Spread { prefix, count } => format!("{prefix}-{}", i % (*count).max(1)),
        }
    }
}

/// What the fan-out publisher does now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PublishPlan {
    /// Messages per second; `None` publishes as fast as deliveries come back, keeping
    /// `window` messages per subscriber in flight; `Some(0.0)` pauses.
    pub rate: Option<f64>,
    /// Size of each payload object, in bytes.
    pub payload_bytes: usize,
    /// Messages in flight per subscriber when `rate` is `None`.
    pub window: u64,
    /// Subscribers (over all workers) each message should reach.
    pub recipients: u64,
}

impl PublishPlan {
    /// Not publishing.
    pub const PAUSED: PublishPlan = PublishPlan {
        rate: Some(0.0),
        payload_bytes: 0,
        window: 0,
        recipients: 0,
    };
}

/// A coordinator's instruction. Each is answered by exactly one final [`Event`]
/// (`Joined`, `Done`, `Report` or `Failed`), possibly after `Progress` events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open `count` subscriber connections.
    Subscribe {
        /// How many.
        count: usize,
        /// Their topics.
        topics: TopicPlan,
        /// Numbering offset, so spread topics continue across workers.
        first: usize,
    },
    /// Open `groups` × [`GROUP_SIZE`] virtual users, numbered from
    /// `first_group * GROUP_SIZE`, and start them publishing.
    AddVus {
        /// First group number.
        first_group: usize,
        /// Number of groups.
        groups: usize,
        /// Payload object size, in bytes.
        payload_bytes: usize,
        /// Each virtual user publishes to each of its two topics every this many ms.
        period_ms: u64,
    },
    /// Open the fan-out publisher's connection (it starts paused).
    OpenPublisher {
        /// The topic it publishes to.
        topic: String,
    },
    /// Change what the publisher does.
    Publish {
        /// The new plan.
        plan: PublishPlan,
    },
    /// Stamp messages sent from now on with this epoch.
    Epoch {
        /// The epoch.
        epoch: u32,
    },
    /// Report an epoch's tallies (and forget older epochs).
    Report {
        /// The epoch.
        epoch: u32,
    },
    /// Close every connection and stop.
    Quit,
}

/// A worker's answer or news.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Connections opened so far in the current batch.
    Progress {
        /// Joined so far.
        joined: usize,
        /// Failed so far.
        failed: usize,
    },
    /// A batch of connections is open.
    Joined {
        /// Connections that subscribed.
        joined: usize,
        /// Connections that failed.
        failed: usize,
        /// A few failure messages, with counts.
        errors: Vec<(String, u64)>,
        /// How long the batch took.
        seconds: f64,
    },
    /// The command was carried out.
    Done,
    /// An epoch's tallies.
    Report {
        /// The tallies.
        stats: EpochReport,
        /// Connections lost since the worker started.
        lost: u64,
        /// A few reasons they were lost.
        lost_samples: Vec<(String, u64)>,
    },
    /// The command (or the worker) failed.
    Failed {
        /// Why.
        message: String,
    },
}

/// State shared by a worker's tasks (all on its one thread).
struct Shared {
    recorder: RefCell<Recorder>,
    /// Woken on every receipt; the max-rate publisher waits on it.
    receipts: Notify,
    lost: RefCell<Failures>,
    /// Subscribers joined in this worker (the publisher paces on their receipts).
    subscribers: RefCell<u64>,
}

/// Runs a worker until `Quit` or until its command channel closes. Must run inside a
/// `LocalSet`.
pub async fn run(
    spec: WorkerSpec,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let dialer = match Dialer::new(spec.target.clone(), spec.source, spec.read_buffer).await {
        Ok(dialer) => Rc::new(dialer),
        Err(message) => {
            let _ = events.send(Event::Failed { message });
            return;
        }
    };
    let shared = Rc::new(Shared {
        recorder: RefCell::new(Recorder::default()),
        receipts: Notify::new(),
        lost: RefCell::new(Failures::default()),
        subscribers: RefCell::new(0),
    });
    let gate = Rc::new(Semaphore::new(spec.concurrency.max(1)));
    let (stop_tx, stop) = watch::channel(false);
    let mut publisher: Option<watch::Sender<PublishPlan>> = None;

    while let Some(command) = commands.recv().await {
        let answer = match command {
            Command::Subscribe {
                count,
                topics,
                first,
            } => {
                let batch = (0..count).map(|i| conn::Role::Subscriber {
                    topic: topics.topic(first + i),
                });
                open_batch(batch.collect(), &dialer, &shared, &gate, &stop, &events).await
            }
            Command::AddVus {
                first_group,
                groups,
                payload_bytes,
                period_ms,
            } => {
                let batch = (first_group..first_group + groups).flat_map(|group| {
                    (0..GROUP_SIZE).map(move |member| conn::Role::VirtualUser {
                        id: group * GROUP_SIZE + member,
                        group,
                        payload_bytes,
                        period_ms,
                    })
                });
                open_batch(batch.collect(), &dialer, &shared, &gate, &stop, &events).await
            }
            Command::OpenPublisher { topic } => {
                match publisher::open(&dialer, topic, shared.clone(), stop.clone()).await {
                    Ok(plan) => {
                        publisher = Some(plan);
                        Event::Done
                    }
                    Err(message) => Event::Failed { message },
                }
            }
            Command::Publish { plan } => match &publisher {
                Some(sender) => {
                    let _ = sender.send(plan);
                    Event::Done
                }
                None => Event::Failed {
                    message: "no publisher in this worker".into(),
                },
            },
            Command::Epoch { epoch } => {
                shared.recorder.borrow_mut().current_epoch = epoch;
                Event::Done
            }
            Command::Report { epoch } => {
                let mut recorder = shared.recorder.borrow_mut();
                let stats = recorder.epoch(epoch).to_wire();
                recorder.forget_before(epoch);
                let lost = shared.lost.borrow();
                Event::Report {
                    stats,
                    lost: lost.count,
                    lost_samples: lost.samples(),
                }
            }
            Command::Quit => {
                let _ = stop_tx.send(true);
                // Give the connection tasks a turn to send their close frames.
                tokio::task::yield_now().await;
                let _ = events.send(Event::Done);
                return;
            }
        };
        if events.send(answer).is_err() {
            break;
        }
    }
    let _ = stop_tx.send(true);
}

/// Opens every connection of a batch (at most `gate` at once), reporting progress, and
/// starts each one's read loop as soon as it is subscribed. Virtual users start
/// publishing only when the whole batch is in, so no one publishes to a group whose
/// members are still joining.
async fn open_batch(
    roles: Vec<conn::Role>,
    dialer: &Rc<Dialer>,
    shared: &Rc<Shared>,
    gate: &Rc<Semaphore>,
    stop: &watch::Receiver<bool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Event {
    let started = Instant::now();
    let total = roles.len();
    let (go_tx, go) = watch::channel(false);
    let (done_tx, mut done) = mpsc::unbounded_channel::<Result<(), String>>();
    // Group sizes as actually joined, so a member that failed is not expected.
    let group_members: Rc<RefCell<BTreeMap<usize, u64>>> = Rc::default();
    for role in roles {
        let (dialer, shared, gate, stop, go, done_tx, group_members) = (
            dialer.clone(),
            shared.clone(),
            gate.clone(),
            stop.clone(),
            go.clone(),
            done_tx.clone(),
            group_members.clone(),
        );
        tokio::task::spawn_local(async move {
            let permit = gate.acquire().await.expect("semaphore never closes");
            let opened = dialer.open(&role.topics()).await;
            drop(permit);
            let conn = match opened {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                    return;
                }
            };
            if let conn::Role::VirtualUser { group, .. } = &role {
                *group_members.borrow_mut().entry(*group).or_default() += 1;
            } else {
                *shared.subscribers.borrow_mut() += 1;
            }
            let _ = done_tx.send(Ok(()));
            drop(done_tx);
            conn::serve(conn, role, shared, stop, go, group_members).await;
        });
    }
    drop(done_tx);
    let mut failures = Failures::default();
    let mut joined = 0;
    let mut last_progress = Instant::now();
    // Each task reports once and then lives on, so count answers rather than waiting for
    // the channel to close.
    for _ in 0..total {
        let Some(result) = done.recv().await else {
            break;
        };
        match result {
            Ok(()) => joined += 1,
            Err(e) => failures.record(e),
        }
        if last_progress.elapsed().as_millis() >= 250 {
            last_progress = Instant::now();
            let _ = events.send(Event::Progress {
                joined,
                failed: failures.count as usize,
            });
        }
    }
    let _ = go_tx.send(true);
    Event::Joined {
        joined,
        failed: failures.count as usize,
        errors: failures.samples(),
        seconds: started.elapsed().as_secs_f64(),
    }
}
