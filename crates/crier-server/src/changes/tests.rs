//! Delivery of postgres changes, on in-memory backends (`memory`): commit order,
//! batching, row level security asked once per group, the slot acknowledged only after
//! delivery, a failed check redelivered after the reconnect, and capture held back by a
//! subscriber without room. On paused time, so waits cost nothing and timing is exact.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_postgres::pgoutput::{Relation, RelationColumn, Tuple, Value as Column};
use crier_postgres::replication::{ChangeKind, RowChange, StreamEvent};
use crier_protocol::Vsn;
use crier_protocol::join::PostgresChangeBinding;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::memory::{MemoryDatabase, MemorySlot};
use super::subscriptions::{Binding, Identity};
use super::{Backends, ChangeMetrics, PostgresChanges};
use crate::config::{FlowConfig, PostgresChangesConfig};
use crate::flow::Ledger;
use crate::frame::Frame;
use crate::metrics::Metrics;
use crate::outbound::{ConnHandle, OutboundQueue, Unwritten};

const TODOS: u32 = 16_384;
const NOTES: u32 = 16_385;

fn relation(oid: u32, name: &str) -> Arc<Relation> {
    let column = |name: &str, type_oid| RelationColumn {
        key: name == "id",
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    Arc::new(Relation {
        id: oid,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: b'd',
        // bigint, text
        columns: vec![column("id", 20), column("owner", 25)],
    })
}

/// An insert of `(id, owner)` into `table`.
fn insert(table: &Arc<Relation>, id: u32, owner: &str) -> StreamEvent {
    let text = |s: String| Column::Text(Bytes::from(s));
    StreamEvent::Change(RowChange {
        relation: Arc::clone(table),
        kind: ChangeKind::Insert,
        new: Some(Tuple(vec![text(id.to_string()), text(owner.to_owned())])),
        old: None,
    })
}

/// Rows whose owner is the `sub` of the claims are visible.
fn owners_see_their_rows(db: MemoryDatabase) -> MemoryDatabase {
    db.table(TODOS, "todos", &["owner"], true)
        .table(NOTES, "notes", &["owner"], false)
}

struct Harness {
    changes: PostgresChanges,
    slot: MemorySlot,
    db: Arc<MemoryDatabase>,
    ledger: Arc<Ledger>,
    next_conn: u64,
    _shutdown: tokio_util::sync::DropGuard,
}

impl Harness {
    fn start(db: MemoryDatabase) -> Self {
        let slot = MemorySlot::default();
        let db = Arc::new(db);
        let flow = FlowConfig::default();
        let ledger = Ledger::new(flow.max_queued_bytes);
        let shutdown = CancellationToken::new();
        let mut config = PostgresChangesConfig::new("memory");
        config.resume_grace = Duration::ZERO;
        let changes = PostgresChanges::start_with(
            Backends {
                source: Arc::new(slot.clone()),
                database: Arc::clone(&db) as _,
                gauges: Arc::default(),
            },
            config,
            flow,
            Arc::clone(&ledger),
            ChangeMetrics::of(&Metrics::new()),
            shutdown.clone(),
            TaskTracker::new(),
        );
        Harness {
            changes,
            slot,
            db,
            ledger,
            next_conn: 1,
            _shutdown: shutdown.drop_guard(),
        }
    }

    /// A live subscriber of `table`'s inserts as `sub`, whose queue's room mark is
    /// `room_mark` bytes.
    async fn subscriber(&mut self, table: &str, sub: &str, room_mark: usize) -> Subscriber {
        let conn = ConnHandle::new(
            self.next_conn,
            Vsn::V1,
            OutboundQueue::new(room_mark, 1 << 30, Arc::clone(&self.ledger), Arc::default()),
        );
        self.next_conn += 1;
        let bindings = Binding::parse_all(&[PostgresChangeBinding::new(
            "INSERT",
            "public",
            Some(table),
            None,
        )])
        .unwrap();
        let identity = Identity {
            role: "authenticated".into(),
            claims: json!({"sub": sub}).to_string(),
        };
        self.changes
            .subscribe(&conn, "realtime:t", None, bindings, identity, None);
        let mut subscriber = Subscriber { conn };
        let system = subscriber.next().await;
        assert_eq!(system["payload"]["message"], "Subscribed to PostgreSQL");
        subscriber
    }
}

struct Subscriber {
    conn: Arc<ConnHandle>,
}

impl Subscriber {
    /// Every frame queued now, as JSON; what they held counts as written.
    fn take(&self) -> Vec<Value> {
        let (mut frames, mut instructions, mut unwritten) =
            (Vec::new(), Vec::new(), Unwritten::default());
        self.conn
            .queue
            .drain_into(&mut frames, &mut instructions, &mut unwritten);
        self.conn.queue.written(unwritten);
        frames
            .iter()
            .map(|frame: &Frame| serde_json::from_str(frame.as_text()).unwrap())
            .collect()
    }

    /// The next frame, waiting for one.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(frame) = self.take().into_iter().next() {
                return frame;
            }
            self.conn.queue.ready().await;
        }
    }

    /// The ids of the rows of the `postgres_changes` frames queued now.
    fn row_ids(&self) -> Vec<u64> {
        self.take()
            .iter()
            .filter(|frame| frame["event"] == "postgres_changes")
            .map(|frame| frame["payload"]["data"]["record"]["id"].as_u64().unwrap())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn changes_arrive_in_commit_order_and_the_slot_moves_only_after_they_are_queued() {
    let mut harness = Harness::start(owners_see_their_rows(MemoryDatabase::new(|_, _, _| true)));
    let notes = relation(NOTES, "notes");
    let subscriber = harness.subscriber("notes", "ana", usize::MAX).await;
    harness.slot.commit(
        1,
        100,
        vec![insert(&notes, 1, "ana"), insert(&notes, 2, "bob")],
    );
    harness.slot.commit(2, 200, vec![insert(&notes, 3, "ana")]);
    harness.slot.wait_acked(200).await;
    assert_eq!(subscriber.row_ids(), [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn row_level_security_is_asked_once_per_table_and_identity_for_a_whole_batch() {
    let db = MemoryDatabase::new(|_, claims, key| {
        // Even ids belong to ana, odd ones to bob.
        let id: u64 = key[0].as_deref().unwrap().parse().unwrap();
        let owner = if id.is_multiple_of(2) { "ana" } else { "bob" };
        claims.contains(owner)
    });
    let mut harness = Harness::start(owners_see_their_rows(db));
    let todos = relation(TODOS, "todos");
    let ana = harness.subscriber("todos", "ana", usize::MAX).await;
    let ana_again = harness.subscriber("todos", "ana", usize::MAX).await;
    let bob = harness.subscriber("todos", "bob", usize::MAX).await;
    // Committed before capture reads anything: one batch.
    harness
        .slot
        .commit(1, 100, (1..=6).map(|id| insert(&todos, id, "-")).collect());
    harness.slot.wait_acked(100).await;
    assert_eq!(ana.row_ids(), [2, 4, 6]);
    assert_eq!(ana_again.row_ids(), [2, 4, 6]);
    assert_eq!(bob.row_ids(), [1, 3, 5]);
    let mut calls = harness.db.visibility_calls.lock().clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            (r#"todos as authenticated {"sub":"ana"}"#.to_owned(), 6),
            (r#"todos as authenticated {"sub":"bob"}"#.to_owned(), 6),
        ],
        "one question per identity, all six rows in it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_leaves_the_batch_in_the_slot_and_it_comes_again() {
    let mut harness = Harness::start(owners_see_their_rows(MemoryDatabase::new(|_, _, _| true)));
    let todos = relation(TODOS, "todos");
    let subscriber = harness.subscriber("todos", "ana", usize::MAX).await;
    harness.db.fail_next_visibility_check();
    harness.slot.commit(1, 100, vec![insert(&todos, 1, "ana")]);
    harness.slot.wait_acked(100).await;
    assert_eq!(harness.slot.opened(), 2, "capture reconnected once");
    assert_eq!(subscriber.row_ids(), [1], "delivered once, after the retry");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_without_room_holds_capture_until_it_has_written() {
    let mut harness = Harness::start(owners_see_their_rows(MemoryDatabase::new(|_, _, _| true)));
    let notes = relation(NOTES, "notes");
    // Every frame puts this subscriber over its room mark.
    let subscriber = harness.subscriber("notes", "ana", 1).await;
    harness.slot.commit(1, 100, vec![insert(&notes, 1, "ana")]);
    harness.slot.commit(2, 200, vec![insert(&notes, 2, "ana")]);
    // Capture queues the first change, then waits for the subscriber (up to the
    // slow-consumer timeout); nothing in the slot moves meanwhile.
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        subscriber.row_ids(),
        [1],
        "the second change waits its turn"
    );
    // Written: capture goes on at once, and waits again after the second change.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(harness.slot.acked(), 0, "waiting, not acknowledging");
    assert_eq!(subscriber.row_ids(), [2]);
    harness.slot.wait_acked(200).await;
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_secs(2),
        "acknowledged as soon as the last change was written"
    );
}
