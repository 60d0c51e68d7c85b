//! The broker, presence and change relay conformance suites of `crier-server`, run
//! against Redis:
//! every test gets a private `redis-server`, and each node on the bus a `RedisBroker` of
//! its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crier_cluster::RedisBroker;
use crier_server::broker::Broker;
use crier_server::broker::conformance::TestBus;
use crier_server::changes::{ChangeRelay, RelayCursor, RelayError};
use crier_server::presence::{PresenceStore, TopicPresence};
use crier_testkit::TestRedis;

struct RedisBus {
    redis: TestRedis,
    nodes: AtomicU32,
}

impl RedisBus {
    fn new() -> RedisBus {
        RedisBus {
            redis: TestRedis::start().expect("redis-server"),
            nodes: AtomicU32::new(0),
        }
    }
}

impl TestBus for RedisBus {
    fn broker(&self) -> Arc<dyn Broker> {
        let n = self.nodes.fetch_add(1, Ordering::Relaxed);
        RedisBroker::connect_later(&self.redis.url(), &format!("node-{n}")).unwrap()
    }
}

crier_server::broker_conformance!(redis, RedisBus::new());
crier_server::shared_history_conformance!(redis_shared, RedisBus::new());

/// A `RedisBroker`'s presence store on a private Redis that lives as long as it does.
#[derive(Debug)]
struct PresenceOnRedis {
    broker: Arc<RedisBroker>,
    _redis: TestRedis,
}

impl PresenceOnRedis {
    async fn start() -> Arc<dyn PresenceStore> {
        let redis = TestRedis::start().expect("redis-server");
        let broker = RedisBroker::connect(&redis.url(), "node-0").await.unwrap();
        Arc::new(PresenceOnRedis {
            broker,
            _redis: redis,
        })
    }
}

impl PresenceStore for PresenceOnRedis {
    fn open(&self, topic: &str) -> Box<dyn TopicPresence> {
        self.broker.open(topic)
    }
}

crier_server::presence_conformance!(redis_presence, PresenceOnRedis::start().await);

/// A change relay on a private Redis that lives as long as it does.
#[derive(Debug)]
struct RelayOnRedis {
    relay: Arc<crier_cluster::RedisRelay>,
    _broker: Arc<RedisBroker>,
    _redis: TestRedis,
}

impl RelayOnRedis {
    async fn start() -> Arc<dyn ChangeRelay> {
        let redis = TestRedis::start().expect("redis-server");
        let broker = RedisBroker::connect(&redis.url(), "node-0").await.unwrap();
        Arc::new(RelayOnRedis {
            relay: broker.change_relay(),
            _broker: broker,
            _redis: redis,
        })
    }
}

#[async_trait::async_trait]
impl ChangeRelay for RelayOnRedis {
    async fn append(&self, batch: Vec<u8>) -> Result<(), RelayError> {
        self.relay.append(batch).await
    }

    async fn read(
        &self,
        cursor: &mut RelayCursor,
        wait: std::time::Duration,
    ) -> Result<Vec<Vec<u8>>, RelayError> {
        self.relay.read(cursor, wait).await
    }
}

crier_server::relay_conformance!(redis_relay, RelayOnRedis::start().await);
