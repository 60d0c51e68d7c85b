//! Coalesced, bounded authorization checks.
//!
//! A check runs as its own task, so it finishes (and frees its connection) whether or
//! not anyone still waits for it: a join that gave up must not strand a permit. Callers
//! wait on a shared handle to that task. The task removes its entry from the in-flight
//! map just before it answers, so a caller that arrives later starts a fresh check and
//! never gets an answer older than its own request.
//!
//! Why a semaphore and not just the pool: the pool would also queue callers, but then
//! every caller waiting for a connection would be a separate query once it got one.
//! Queuing *before* the query, in the in-flight map, lets every identical caller that
//! arrives while the first waits share its one query.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{AuthorizationError, ChannelAuthorizer, ChannelCheck, Extension, ReadAccess};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Question {
    Read(ChannelCheck),
    Write(ChannelCheck, Extension),
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Read(ReadAccess),
    Write(bool),
}

type Outcome = Result<Answer, AuthorizationError>;
type InFlight = Mutex<HashMap<Question, Shared<BoxFuture<'static, Outcome>>>>;

/// The figures [`Checks`] keeps (registered by `Metrics`).
#[derive(Debug, Clone)]
pub(crate) struct CheckMetrics {
    /// Every check asked for, shared or not.
    pub(crate) asked: Counter,
    /// Checks that reached the authorizer (database round trips with `PgAuthorizer`).
    pub(crate) queries: Counter,
    /// Checks that ended in an error (refused by a failing policy, unavailable, late).
    pub(crate) failed: Counter,
    /// Time from asking to answer of each query, waiting for a permit included.
    pub(crate) seconds: Histogram,
}

impl CheckMetrics {
    pub(crate) fn new() -> Self {
        CheckMetrics {
            asked: Counter::default(),
            queries: Counter::default(),
            failed: Counter::default(),
            // 100 us .. ~6.5 s.
            seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1e-4, 4.0, 9,
            )),
        }
    }
}

/// The checks the node runs: see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Checks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    authorizer: Arc<dyn ChannelAuthorizer>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    in_flight: InFlight,
    metrics: CheckMetrics,
}

impl Checks {
    pub(crate) fn new(
        authorizer: Arc<dyn ChannelAuthorizer>,
        max_concurrent: usize,
        timeout: Duration,
        metrics: CheckMetrics,
    ) -> Self {
        Checks {
            inner: Arc::new(Inner {
                authorizer,
                permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
                timeout,
                in_flight: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// Which parts of the channel the caller may read.
    pub(crate) fn read(
        &self,
        check: ChannelCheck,
    ) -> impl Future<Output = Result<ReadAccess, AuthorizationError>> + Send + 'static {
        let answer = self.ask(Question::Read(check));
        async move {
            match answer.await? {
                Answer::Read(access) => Ok(access),
                Answer::Write(_) => unreachable!("a read question gets a read answer"),
            }
        }
    }

    /// The stored broadcasts a private join replays (not shared: each join has its own
    /// `since`; bounded by the same permits and timeout as the checks).
    pub(crate) fn replay(
        &self,
        topic: String,
        since_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<super::StoredMessage>, AuthorizationError>> + Send + 'static
    {
        let inner = Arc::clone(&self.inner);
        async move {
            tokio::time::timeout(inner.timeout, async {
                let _permit = inner.permits.acquire().await.expect("never closed");
                inner.authorizer.replay(&topic, since_ms, limit).await
            })
            .await
            .unwrap_or(Err(AuthorizationError::TimedOut(inner.timeout)))
        }
    }

    /// Whether the caller may write `extension` messages.
    pub(crate) fn write(
        &self,
        check: ChannelCheck,
        extension: Extension,
    ) -> impl Future<Output = Result<bool, AuthorizationError>> + Send + 'static {
        let answer = self.ask(Question::Write(check, extension));
        async move {
            match answer.await? {
                Answer::Write(allowed) => Ok(allowed),
                Answer::Read(_) => unreachable!("a write question gets a write answer"),
            }
        }
    }

    fn ask(&self, question: Question) -> Shared<BoxFuture<'static, Outcome>> {
        self.inner.metrics.asked.inc();
        let mut in_flight = self.inner.in_flight.lock();
        if let Some(running) = in_flight.get(&question) {
            return running.clone();
        }
        let task = tokio::spawn(Arc::clone(&self.inner).run(question.clone()));
        let shared = async move {
            task.await
                .unwrap_or_else(|_| Err(AuthorizationError::Unavailable("the check failed".into())))
        }
        .boxed()
        .shared();
        in_flight.insert(question, shared.clone());
        shared
    }
}

impl Inner {
    async fn run(self: Arc<Self>, question: Question) -> Outcome {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, async {
            let _permit = self
                .permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.metrics.queries.inc();
            match &question {
                Question::Read(check) => self.authorizer.read(check).await.map(Answer::Read),
                Question::Write(check, extension) => self
                    .authorizer
                    .write(check, *extension)
                    .await
                    .map(Answer::Write),
            }
        })
        .await
        .unwrap_or(Err(AuthorizationError::TimedOut(self.timeout)));
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        if outcome.is_err() {
            self.metrics.failed.inc();
        }
        // Before answering: whoever asks from now on asks afresh.
        self.in_flight.lock().remove(&question);
        outcome
    }
}
