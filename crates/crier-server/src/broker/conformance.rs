//! The broker conformance suite: what every [`Broker`] must do, run against each
//! implementation: here against [`MemoryBus`], and by `crier-cluster` against Redis
//! (feature `conformance`). Waits are bounded, because a network bus delivers on its own
//! task; what must *not* arrive is proven by a witness published after it on the same
//! path. Subscriptions are awaited with [`Broker::synced`] before anything is published
//! to them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_protocol::{PayloadEncoding, UserBroadcast};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Broker, LocalDelivery, MemoryBus, Publication};

/// A bus that hands out brokers for several nodes.
pub trait TestBus {
    /// A new node's broker on this bus.
    fn broker(&self) -> Arc<dyn Broker>;
}

impl TestBus for MemoryBus {
    fn broker(&self) -> Arc<dyn Broker> {
        MemoryBus::broker(self)
    }
}

/// What a node received, owned.
#[derive(Debug, PartialEq)]
enum Received {
    Json(String, String),
    Binary(String, UserBroadcast),
}

struct Recorder(mpsc::UnboundedSender<Received>);

impl LocalDelivery for Recorder {
    fn deliver(&self, topic: &str, publication: Publication<'_>) {
        let received = match publication {
            Publication::Json(body) => Received::Json(topic.to_owned(), body.get().to_owned()),
            Publication::Binary(broadcast) => Received::Binary(topic.to_owned(), broadcast.clone()),
        };
        let _ = self.0.send(received);
    }
}

/// A node on the bus: its broker, what it received, and its delivery (kept alive here,
/// as a node keeps itself).
struct TestNode {
    broker: Arc<dyn Broker>,
    received: mpsc::UnboundedReceiver<Received>,
    _delivery: Arc<dyn LocalDelivery>,
}

impl TestNode {
    fn join(bus: &impl TestBus) -> Self {
        let broker = bus.broker();
        let (tx, received) = mpsc::unbounded_channel();
        let delivery: Arc<dyn LocalDelivery> = Arc::new(Recorder(tx));
        broker.attach(Arc::downgrade(&delivery));
        TestNode {
            broker,
            received,
            _delivery: delivery,
        }
    }

    fn publish_json(&self, topic: &str, body: &str) {
        let raw = RawValue::from_string(body.to_owned()).unwrap();
        self.broker
            .publish(topic, Publication::Json(&raw))
            .expect("published");
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.received.recv())
            .await
            .expect("a publication within 5 s")
            .expect("the recorder lives")
    }
}

fn json(topic: &str, body: &str) -> Received {
    Received::Json(topic.to_owned(), body.to_owned())
}

/// A publication reaches the nodes subscribed to its topic, and no other.
pub async fn reaches_every_other_subscribed_node_and_no_other(bus: impl TestBus) {
    let publisher = TestNode::join(&bus);
    let mut a = TestNode::join(&bus);
    let mut b = TestNode::join(&bus);
    a.broker.subscribe("realtime:t");
    b.broker.subscribe("realtime:other");
    a.broker.synced().await;
    b.broker.synced().await;
    publisher.publish_json("realtime:t", r#"{"n":1}"#);
    publisher.publish_json("realtime:other", r#"{"witness":true}"#);
    assert_eq!(a.next().await, json("realtime:t", r#"{"n":1}"#));
    assert_eq!(
        b.next().await,
        json("realtime:other", r#"{"witness":true}"#),
        "b does not subscribe to realtime:t"
    );
}

/// The publishing node never gets its own publication back.
pub async fn never_echoes_to_the_publisher(bus: impl TestBus) {
    let mut publisher = TestNode::join(&bus);
    let mut other = TestNode::join(&bus);
    publisher.broker.subscribe("realtime:t");
    other.broker.subscribe("realtime:t");
    publisher.broker.synced().await;
    other.broker.synced().await;
    publisher.publish_json("realtime:t", r#"{"from":"publisher"}"#);
    other.publish_json("realtime:t", r#"{"from":"other"}"#);
    assert_eq!(
        other.next().await,
        json("realtime:t", r#"{"from":"publisher"}"#)
    );
    assert_eq!(
        publisher.next().await,
        json("realtime:t", r#"{"from":"other"}"#),
        "its own publication never came back"
    );
}

/// After `unsubscribe`, nothing more of that topic arrives.
pub async fn stops_after_unsubscribe(bus: impl TestBus) {
    let publisher = TestNode::join(&bus);
    let mut node = TestNode::join(&bus);
    node.broker.subscribe("realtime:t");
    node.broker.subscribe("realtime:witness");
    node.broker.synced().await;
    publisher.publish_json("realtime:t", r#"{"n":1}"#);
    assert_eq!(node.next().await, json("realtime:t", r#"{"n":1}"#));
    node.broker.unsubscribe("realtime:t");
    node.broker.synced().await;
    publisher.publish_json("realtime:t", r#"{"n":2}"#);
    publisher.publish_json("realtime:witness", r#"{"n":3}"#);
    assert_eq!(node.next().await, json("realtime:witness", r#"{"n":3}"#));
}

/// JSON and binary publications arrive byte for byte, in publish order.
pub async fn carries_json_and_binary_intact_in_order(bus: impl TestBus) {
    let publisher = TestNode::join(&bus);
    let mut node = TestNode::join(&bus);
    node.broker.subscribe("realtime:t");
    node.broker.synced().await;
    let binary = UserBroadcast {
        event: "bytes".into(),
        metadata: Bytes::new(),
        encoding: PayloadEncoding::Binary,
        payload: Bytes::from_static(b"\x00\xff\x01"),
    };
    for n in 0..100 {
        if n == 50 {
            publisher
                .broker
                .publish("realtime:t", Publication::Binary(&binary))
                .unwrap();
        }
        publisher.publish_json("realtime:t", &format!(r#"{{"n":{n},"s":"\u00e9\""}}"#));
    }
    for n in 0..100 {
        if n == 50 {
            assert_eq!(
                node.next().await,
                Received::Binary("realtime:t".into(), binary.clone())
            );
        }
        assert_eq!(
            node.next().await,
            json("realtime:t", &format!(r#"{{"n":{n},"s":"\u00e9\""}}"#))
        );
    }
}

/// A node that is gone does not stop the others from receiving.
pub async fn forgets_a_node_that_is_gone(bus: impl TestBus) {
    let publisher = TestNode::join(&bus);
    let gone = TestNode::join(&bus);
    gone.broker.subscribe("realtime:t");
    drop(gone);
    let mut node = TestNode::join(&bus);
    node.broker.subscribe("realtime:t");
    node.broker.synced().await;
    publisher.publish_json("realtime:t", r#"{"n":1}"#);
    assert_eq!(node.next().await, json("realtime:t", r#"{"n":1}"#));
}

/// Topics are names, not patterns: a node subscribed to `realtime:a*` gets nothing
/// published to `realtime:ab`.
pub async fn topic_names_are_not_patterns(bus: impl TestBus) {
    let publisher = TestNode::join(&bus);
    let mut node = TestNode::join(&bus);
    node.broker.subscribe("realtime:a*");
    node.broker.subscribe("realtime:a?[b]");
    node.broker.synced().await;
    publisher.publish_json("realtime:ab", r#"{"n":1}"#);
    publisher.publish_json("realtime:a?[b]", r#"{"n":2}"#);
    publisher.publish_json("realtime:a*", r#"{"n":3}"#);
    assert_eq!(node.next().await, json("realtime:a?[b]", r#"{"n":2}"#));
    assert_eq!(node.next().await, json("realtime:a*", r#"{"n":3}"#));
}

/// Runs the suite against one implementation: `$bus` makes a fresh bus (an expression
/// that may `.await`).
#[macro_export]
macro_rules! broker_conformance {
    ($module:ident, $bus:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            use $crate::broker::conformance as suite;

            #[tokio::test]
            async fn reaches_every_other_subscribed_node_and_no_other() {
                suite::reaches_every_other_subscribed_node_and_no_other($bus).await;
            }

            #[tokio::test]
            async fn never_echoes_to_the_publisher() {
                suite::never_echoes_to_the_publisher($bus).await;
            }

            #[tokio::test]
            async fn stops_after_unsubscribe() {
                suite::stops_after_unsubscribe($bus).await;
            }

            #[tokio::test]
            async fn carries_json_and_binary_intact_in_order() {
                suite::carries_json_and_binary_intact_in_order($bus).await;
            }

            #[tokio::test]
            async fn forgets_a_node_that_is_gone() {
                suite::forgets_a_node_that_is_gone($bus).await;
            }

            #[tokio::test]
            async fn topic_names_are_not_patterns() {
                suite::topic_names_are_not_patterns($bus).await;
            }
        }
    };
}
