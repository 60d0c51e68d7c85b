//! The shared history conformance suite: what every [`SharedHistory`] must do, run
//! against each implementation: here against [`super::MemoryBus::sharing_history`], and by
//! `crier-cluster` against Redis (feature `conformance`). Waits are bounded, as in the
//! broker suite.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::conformance::TestBus;
use super::{Broker, LocalDelivery, Publication, SharedHistory, StreamPosition};
use crate::HistoryConfig;

/// What a node was told, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// A numbered broadcast: topic, epoch, offset, body, excluded connection.
    Numbered(String, String, u64, String, Option<u64>),
    /// Where a stream stands: topic, epoch, offset.
    Continues(String, String, u64),
}

struct Recorder(mpsc::UnboundedSender<Told>);

impl LocalDelivery for Recorder {
    fn deliver(&self, _topic: &str, _publication: Publication<'_>) {
        panic!("a broadcast numbered by the shared history comes with its position");
    }

    fn deliver_at(
        &self,
        topic: &str,
        publication: Publication<'_>,
        at: StreamPosition<'_>,
        exclude: Option<u64>,
    ) {
        let Publication::Json(body) = publication else {
            panic!("the suite publishes JSON");
        };
        let told = Told::Numbered(
            topic.into(),
            at.epoch.into(),
            at.offset,
            body.get().into(),
            exclude,
        );
        let _ = self.0.send(told);
    }

    fn continues(&self, topic: &str, at: StreamPosition<'_>) {
        let _ = self
            .0
            .send(Told::Continues(topic.into(), at.epoch.into(), at.offset));
    }
}

/// A node with its broker, shared history and what it was told.
struct TestNode {
    broker: Arc<dyn Broker>,
    history: Arc<dyn SharedHistory>,
    told: mpsc::UnboundedReceiver<Told>,
    _delivery: Arc<dyn LocalDelivery>,
}

/// Three broadcasts kept per topic.
fn config() -> HistoryConfig {
    HistoryConfig {
        size: 3,
        ..HistoryConfig::default()
    }
}

impl TestNode {
    /// A node on `bus`, ready: its bus is connected.
    async fn join(bus: &impl TestBus) -> Self {
        let broker = bus.broker();
        let history = broker
            .shared_history(&config())
            .expect("the bus keeps a shared history");
        let (tx, told) = mpsc::unbounded_channel();
        let delivery: Arc<dyn LocalDelivery> = Arc::new(Recorder(tx));
        broker.attach(Arc::downgrade(&delivery));
        broker.synced().await;
        let connected = async {
            while broker.status().is_some_and(|status| !status.connected) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), connected)
            .await
            .expect("the bus connects within 5 s");
        TestNode {
            broker,
            history,
            told,
            _delivery: delivery,
        }
    }

    /// Subscribes `topic`, and returns where the bus says its stream stands.
    async fn subscribe(&mut self, topic: &str) -> (String, u64) {
        self.broker.subscribe(topic);
        self.broker.synced().await;
        match self.next().await {
            Told::Continues(at, epoch, offset) if at == topic => (epoch, offset),
            other => panic!("expected where {topic} stands, got {other:?}"),
        }
    }

    fn append(&self, topic: &str, body: &str, exclude: Option<u64>) {
        let raw = RawValue::from_string(body.to_owned()).unwrap();
        self.history
            .append(topic, Publication::Json(&raw), exclude)
            .expect("appended");
    }

    async fn next(&mut self) -> Told {
        tokio::time::timeout(Duration::from_secs(5), self.told.recv())
            .await
            .expect("told within 5 s")
            .expect("the recorder lives")
    }
}

fn numbered(topic: &str, epoch: &str, offset: u64, body: &str, exclude: Option<u64>) -> Told {
    Told::Numbered(topic.into(), epoch.into(), offset, body.into(), exclude)
}

/// Every subscribed node, the publisher included, gets each broadcast with the same
/// position, in one order, whichever node appended it; one node's appends keep their
/// order (two nodes' may interleave either way).
pub async fn numbers_in_one_order_for_every_node(bus: impl TestBus) {
    let mut a = TestNode::join(&bus).await;
    let mut b = TestNode::join(&bus).await;
    let (epoch, start) = a.subscribe("realtime:t").await;
    assert_eq!(start, 0, "a new stream");
    assert_eq!(b.subscribe("realtime:t").await, (epoch.clone(), 0));
    for n in 1..=6 {
        let on = if n % 2 == 0 { &b } else { &a };
        on.append("realtime:t", &format!(r#"{{"n":{n}}}"#), None);
    }
    let mut seen = Vec::new();
    for offset in 1..=6 {
        let Told::Numbered(topic, at_epoch, at, body, None) = a.next().await else {
            panic!("a numbered broadcast");
        };
        assert_eq!(
            (topic.as_str(), at_epoch.as_str(), at),
            ("realtime:t", &*epoch, offset)
        );
        seen.push(body);
    }
    for (offset, body) in (1..).zip(&seen) {
        assert_eq!(
            b.next().await,
            numbered("realtime:t", &epoch, offset, body, None)
        );
    }
    let position = |n: u64| {
        seen.iter()
            .position(|body| *body == format!(r#"{{"n":{n}}}"#))
    };
    assert!(
        position(1) < position(3) && position(3) < position(5),
        "{seen:?}"
    );
    assert!(
        position(2) < position(4) && position(4) < position(6),
        "{seen:?}"
    );
}

/// The excluded connection is the appending node's: only that node is told it.
pub async fn the_excluded_connection_goes_to_its_node_only(bus: impl TestBus) {
    let mut a = TestNode::join(&bus).await;
    let mut b = TestNode::join(&bus).await;
    let (epoch, _) = a.subscribe("realtime:t").await;
    b.subscribe("realtime:t").await;
    a.append("realtime:t", "{}", Some(7));
    assert_eq!(
        a.next().await,
        numbered("realtime:t", &epoch, 1, "{}", Some(7))
    );
    assert_eq!(
        b.next().await,
        numbered("realtime:t", &epoch, 1, "{}", None)
    );
}

/// A node that subscribes is told where the stream stands, and gets what follows.
pub async fn a_subscriber_is_told_where_the_stream_stands(bus: impl TestBus) {
    let mut a = TestNode::join(&bus).await;
    let mut b = TestNode::join(&bus).await;
    a.subscribe("realtime:t").await;
    a.append("realtime:t", r#"{"n":1}"#, None);
    a.append("realtime:t", r#"{"n":2}"#, None);
    // Appends are asynchronous: node A hearing both proves they are in the stream.
    a.next().await;
    a.next().await;
    let (epoch, offset) = b.subscribe("realtime:t").await;
    assert_eq!(offset, 2);
    a.append("realtime:t", r#"{"n":3}"#, None);
    assert_eq!(
        b.next().await,
        numbered("realtime:t", &epoch, 3, r#"{"n":3}"#, None)
    );
}

/// A read gives the epoch, the latest offset and what is kept after an offset (the
/// oldest past the count bound are gone); a topic never published to has an epoch and
/// offset 0, which its first broadcast keeps.
pub async fn reads_what_is_kept(bus: impl TestBus) {
    let mut a = TestNode::join(&bus).await;
    let fresh = a.history.read("realtime:new", 0, 10).await.unwrap();
    assert_eq!(fresh.latest, 0);
    assert!(fresh.entries.is_empty() && !fresh.epoch.is_empty());
    let (epoch, _) = a.subscribe("realtime:new").await;
    assert_eq!(epoch, fresh.epoch);
    for n in 1..=5 {
        a.append("realtime:new", &format!(r#"{{"n":{n}}}"#), None);
    }
    for _ in 1..=5 {
        a.next().await;
    }
    let offsets = |read: &super::SharedRead| -> Vec<u64> {
        read.entries.iter().map(|entry| entry.offset).collect()
    };
    let all = a.history.read("realtime:new", 0, 10).await.unwrap();
    assert_eq!((all.epoch.as_str(), all.latest), (epoch.as_str(), 5));
    assert_eq!(offsets(&all), [3, 4, 5], "three kept");
    let body = match &all.entries[0].publication {
        super::OwnedPublication::Json(body) => body.get().to_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(body, r#"{"n":3}"#);
    let after = a.history.read("realtime:new", 4, 10).await.unwrap();
    assert_eq!(offsets(&after), [5]);
    let limited = a.history.read("realtime:new", 0, 1).await.unwrap();
    assert_eq!(offsets(&limited), [3]);
}

/// Topics are separate streams, and names are not patterns.
pub async fn topics_are_separate_streams(bus: impl TestBus) {
    let mut a = TestNode::join(&bus).await;
    let (star, _) = a.subscribe("realtime:a*").await;
    a.append("realtime:ab", "{}", None);
    a.append("realtime:a*", r#"{"n":1}"#, None);
    assert_eq!(
        a.next().await,
        numbered("realtime:a*", &star, 1, r#"{"n":1}"#, None)
    );
    let other = a.history.read("realtime:ab", 0, 10).await.unwrap();
    assert_eq!(other.latest, 1);
}

/// Runs the suite against one implementation: `$bus` makes a fresh bus (an expression
/// that may `.await`).
#[macro_export]
macro_rules! shared_history_conformance {
    ($module:ident, $bus:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            use $crate::broker::shared_conformance as suite;

            #[tokio::test]
            async fn numbers_in_one_order_for_every_node() {
                suite::numbers_in_one_order_for_every_node($bus).await;
            }

            #[tokio::test]
            async fn the_excluded_connection_goes_to_its_node_only() {
                suite::the_excluded_connection_goes_to_its_node_only($bus).await;
            }

            #[tokio::test]
            async fn a_subscriber_is_told_where_the_stream_stands() {
                suite::a_subscriber_is_told_where_the_stream_stands($bus).await;
            }

            #[tokio::test]
            async fn reads_what_is_kept() {
                suite::reads_what_is_kept($bus).await;
            }

            #[tokio::test]
            async fn topics_are_separate_streams() {
                suite::topics_are_separate_streams($bus).await;
            }
        }
    };
}
