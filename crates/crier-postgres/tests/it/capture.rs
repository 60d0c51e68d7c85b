//! Change capture against a real PostgreSQL: the slot and publication are made, changes
//! stream in commit order, and the slot only moves past what was acknowledged.

use std::time::Duration;

use crier_postgres::pgoutput::{OldTuple, Value};
use crier_postgres::replication::{
    self, CaptureSettings, ChangeKind, ChangeStream, RowChange, StreamEvent,
};
use crier_testkit::TestPostgres;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

async fn setup() -> (TestPostgres, tokio_postgres::Client, CaptureSettings) {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(
        "create table todos (id bigint primary key, title text, done boolean default false);
         create table notes (id int primary key, body text);",
    )
    .unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let settings = CaptureSettings {
        database_url: pg.url(),
        publication: "supabase_realtime".into(),
        slot: "crier_test".into(),
        database_broadcasts: false,
    };
    let state = replication::prepare(&client, &settings).await.unwrap();
    assert!(state.created);
    assert!(
        !replication::prepare(&client, &settings)
            .await
            .unwrap()
            .created,
        "idempotent"
    );
    pg.psql("alter publication supabase_realtime add table todos, notes")
        .unwrap();
    (pg, client, settings)
}

fn text(value: &Value) -> &str {
    match value {
        Value::Text(bytes) => std::str::from_utf8(bytes).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next `count` changes, and the end LSN of the last commit seen.
async fn changes(stream: &mut ChangeStream, count: usize) -> (Vec<RowChange>, u64) {
    let mut changes = Vec::new();
    let mut end = 0;
    timeout(WAIT, async {
        while changes.len() < count || end == 0 {
            match stream.next().await.unwrap().expect("the stream goes on") {
                StreamEvent::Change(change) => changes.push(change),
                StreamEvent::Commit { end_lsn } if changes.len() >= count => end = end_lsn,
                _ => {}
            }
        }
    })
    .await
    .expect("changes in time");
    (changes, end)
}

#[tokio::test]
async fn inserts_updates_and_deletes_stream_in_commit_order() {
    let (pg, _client, settings) = setup().await;
    let mut stream = ChangeStream::connect(&settings, false).await.unwrap();
    pg.psql(
        "insert into todos (id, title) values (1, 'write tests');
         update todos set done = true where id = 1;
         insert into notes values (7, null);
         delete from todos where id = 1;",
    )
    .unwrap();
    let (changes, _) = changes(&mut stream, 4).await;
    let kinds: Vec<(ChangeKind, &str)> = changes
        .iter()
        .map(|c| (c.kind, c.relation.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Insert, "todos"),
            (ChangeKind::Update, "todos"),
            (ChangeKind::Insert, "notes"),
            (ChangeKind::Delete, "todos")
        ]
    );
    let insert = &changes[0];
    assert_eq!(insert.relation.namespace, "public");
    let new = insert.new.as_ref().unwrap();
    assert_eq!(
        (text(&new.0[0]), text(&new.0[1]), text(&new.0[2])),
        ("1", "write tests", "f")
    );
    assert_eq!(changes[2].new.as_ref().unwrap().0[1], Value::Null);
    // REPLICA IDENTITY DEFAULT: the delete carries the key only.
    let Some(OldTuple::Key(old)) = &changes[3].old else {
        panic!("a key tuple")
    };
    assert_eq!(text(&old.0[0]), "1");
    assert_eq!(old.0[1], Value::Null);
}

#[tokio::test]
async fn replica_identity_full_sends_the_whole_old_row() {
    let (pg, _client, settings) = setup().await;
    pg.psql(
        "alter table todos replica identity full; insert into todos (id, title) values (2, 'a')",
    )
    .unwrap();
    let mut stream = ChangeStream::connect(&settings, false).await.unwrap();
    pg.psql("update todos set title = 'b' where id = 2")
        .unwrap();
    let (changes, _) = changes(&mut stream, 2).await;
    let update = changes
        .iter()
        .find(|c| c.kind == ChangeKind::Update)
        .unwrap();
    let Some(OldTuple::Full(old)) = &update.old else {
        panic!("the full old row")
    };
    assert_eq!(text(&old.0[1]), "a");
}

#[tokio::test]
async fn what_is_not_acknowledged_comes_again_and_what_is_does_not() {
    let (pg, client, settings) = setup().await;
    let mut stream = ChangeStream::connect(&settings, false).await.unwrap();
    pg.psql("insert into todos (id, title) values (10, 'first')")
        .unwrap();
    let (first, end) = changes(&mut stream, 1).await;
    assert_eq!(text(&first[0].new.as_ref().unwrap().0[0]), "10");
    // Not acknowledged: a new stream starts from before it.
    drop(stream);
    let mut stream = connect_when_slot_free(&settings).await;
    let (again, _) = changes(&mut stream, 1).await;
    assert_eq!(
        text(&again[0].new.as_ref().unwrap().0[0]),
        "10",
        "delivered again"
    );

    // Acknowledged: the slot moves, and the next stream starts after it.
    stream.ack(end);
    let confirmed = timeout(WAIT, async {
        loop {
            let row = client
                .query_one(
                    "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1",
                    &[&settings.slot],
                )
                .await
                .unwrap();
            let lsn: String = row.get(0);
            if parse_lsn(&lsn) >= end {
                return lsn;
            }
            // The client reports progress on its status interval; ask again after it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the slot moved");
    assert!(parse_lsn(&confirmed) >= end);
    drop(stream);
    pg.psql("insert into todos (id, title) values (11, 'second')")
        .unwrap();
    let mut stream = connect_when_slot_free(&settings).await;
    let (next, _) = changes(&mut stream, 1).await;
    assert_eq!(
        text(&next[0].new.as_ref().unwrap().0[0]),
        "11",
        "10 was not sent again"
    );
}

/// The walsender of a dropped stream releases the slot a moment later.
async fn connect_when_slot_free(settings: &CaptureSettings) -> ChangeStream {
    timeout(WAIT, async {
        loop {
            match ChangeStream::connect(settings, false).await {
                Ok(stream) => return stream,
                Err(err) if err.to_string().contains("is active") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await
    .expect("the slot was released")
}

fn parse_lsn(text: &str) -> u64 {
    let (high, low) = text.split_once('/').unwrap();
    (u64::from_str_radix(high, 16).unwrap() << 32) | u64::from_str_radix(low, 16).unwrap()
}
