//! The checks layer over a scripted authorizer: sharing, the concurrency bound, the
//! timeout. On paused time, so "never answers" is tested without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::*;

/// Answers "broadcast read, no presence read, writes allowed" once `gate` lets it,
/// counting calls and the most it ever ran at once.
#[derive(Debug)]
struct Scripted {
    gate: Arc<Semaphore>,
    calls: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Scripted {
    fn new() -> Arc<Self> {
        Arc::new(Scripted {
            gate: Arc::new(Semaphore::new(0)),
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        })
    }

    async fn pass(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ChannelAuthorizer for Scripted {
    async fn read(&self, _check: &ChannelCheck) -> Result<ReadAccess, AuthorizationError> {
        self.pass().await;
        Ok(ReadAccess {
            broadcast: true,
            presence: false,
        })
    }

    async fn write(
        &self,
        _check: &ChannelCheck,
        _extension: Extension,
    ) -> Result<bool, AuthorizationError> {
        self.pass().await;
        Ok(true)
    }
}

fn check(role: &str) -> ChannelCheck {
    ChannelCheck {
        topic: "room".into(),
        role: role.into(),
        claims: format!(r#"{{"role":"{role}"}}"#),
        sub: String::new(),
        headers: "{}".into(),
    }
}

/// The checks layer over `authorizer`, and a handle on its figures.
fn checks(authorizer: &Arc<Scripted>, max_concurrent: usize) -> (Checks, CheckMetrics) {
    let metrics = CheckMetrics::new();
    let checks = Checks::new(
        Arc::clone(authorizer) as Arc<dyn ChannelAuthorizer>,
        max_concurrent,
        Duration::from_secs(5),
        metrics.clone(),
    );
    (checks, metrics)
}

/// Lets the runtime run everything that is ready.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn identical_checks_in_flight_share_one_query() {
    let authorizer = Scripted::new();
    let (checks, metrics) = checks(&authorizer, 4);
    let waiting: Vec<_> = (0..100)
        .map(|_| tokio::spawn(checks.read(check("anon"))))
        .collect();
    settle().await;
    authorizer.gate.add_permits(1);
    for answer in waiting {
        let access = answer.await.unwrap().unwrap();
        assert!(access.broadcast && !access.presence);
    }
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.asked.get(), 100);
    assert_eq!(metrics.queries.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_check_after_the_answer_asks_again() {
    let authorizer = Scripted::new();
    authorizer.gate.add_permits(2);
    let (checks, _) = checks(&authorizer, 4);
    assert!(checks.read(check("anon")).await.unwrap().broadcast);
    assert!(checks.read(check("anon")).await.unwrap().broadcast);
    assert_eq!(
        authorizer.calls.load(Ordering::SeqCst),
        2,
        "answers are not cached"
    );
}

#[tokio::test(start_paused = true)]
async fn different_callers_and_questions_are_separate_queries() {
    let authorizer = Scripted::new();
    authorizer.gate.add_permits(3);
    let (checks, _) = checks(&authorizer, 4);
    let (a, b, c) = tokio::join!(
        checks.read(check("anon")),
        checks.read(check("authenticated")),
        checks.write(check("anon"), Extension::Broadcast),
    );
    assert!(a.unwrap().broadcast && b.unwrap().broadcast && c.unwrap());
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_bound_run_at_once() {
    let authorizer = Scripted::new();
    let (checks, _) = checks(&authorizer, 2);
    let waiting: Vec<_> = (0..6)
        .map(|n| tokio::spawn(checks.read(check(&format!("role{n}")))))
        .collect();
    settle().await;
    assert_eq!(
        authorizer.running.load(Ordering::SeqCst),
        2,
        "the rest wait their turn"
    );
    authorizer.gate.add_permits(6);
    for answer in waiting {
        answer.await.unwrap().unwrap();
    }
    assert_eq!(authorizer.most_running.load(Ordering::SeqCst), 2);
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn a_check_without_an_answer_times_out_and_frees_its_place() {
    let authorizer = Scripted::new();
    let (checks, metrics) = checks(&authorizer, 1);
    let started = tokio::time::Instant::now();
    let answer = checks.read(check("anon")).await;
    assert_eq!(
        answer,
        Err(AuthorizationError::TimedOut(Duration::from_secs(5)))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(metrics.failed.get(), 1);
    // The permit came back with the timed-out query: the next one runs.
    authorizer.gate.add_permits(1);
    assert!(checks.read(check("anon")).await.unwrap().broadcast);
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_function_authorizer_answers_per_extension() {
    let authorizer = FnAuthorizer::new(|check, access| {
        Ok(match access {
            Access::Read(Extension::Broadcast) => true,
            Access::Read(Extension::Presence) => check.role == "authenticated",
            Access::Write(_) => false,
        })
    });
    let anon = authorizer.read(&check("anon")).await.unwrap();
    assert!(anon.broadcast && !anon.presence);
    let user = authorizer.read(&check("authenticated")).await.unwrap();
    assert!(user.broadcast && user.presence);
    assert!(
        !authorizer
            .write(&check("anon"), Extension::Broadcast)
            .await
            .unwrap()
    );
}
