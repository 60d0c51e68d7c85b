//! Changes captured from a real PostgreSQL and rendered as Supabase delivers them: every
//! kind of change under `REPLICA IDENTITY DEFAULT` and `FULL`, with a TOASTed column an
//! UPDATE leaves alone, row level security, a table without a primary key, and commit
//! times formatted as the server's `to_char` formats them.

use std::time::Duration;

use crier_postgres::catalog::Catalog;
use crier_postgres::pgoutput::Value;
use crier_postgres::render::{self, DEFAULT_MAX_RECORD_BYTES, RenderedChange};
use crier_postgres::replication::{self, CaptureSettings, ChangeStream, RowChange, StreamEvent};
use crier_postgres::types::TypeCatalog;
use crier_testkit::TestPostgres;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

/// Supabase's format of a commit time (`apply_rls.sql`), for microseconds since the epoch
/// `$1`. Whole seconds and the rest are added apart: an interval multiplied by a bigint is
/// computed in floating point, which beyond 2^53 microseconds is not exact.
const TO_CHAR: &str = "select to_char((timestamptz 'epoch' \
       + ($1::bigint / 1000000) * interval '1 second' \
       + ($1::bigint % 1000000) * interval '1 microsecond') \
     at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

struct Setup {
    pg: TestPostgres,
    client: tokio_postgres::Client,
    catalog: Catalog,
    stream: ChangeStream,
    types: TypeCatalog,
}

/// A server with `sql` run, every table in the publication, and a stream from the slot.
async fn setup(sql: &str) -> Setup {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(sql).unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let settings = CaptureSettings {
        database_url: pg.url(),
        publication: "supabase_realtime".into(),
        slot: "crier_render".into(),
        database_broadcasts: false,
    };
    replication::prepare(&client, &settings).await.unwrap();
    pg.psql("alter publication supabase_realtime add tables in schema public")
        .unwrap();
    let stream = ChangeStream::connect(&settings, false).await.unwrap();
    let types = TypeCatalog::load(&client).await.unwrap();
    let catalog = Catalog::connect(&pg.url(), 1).await.unwrap();
    Setup {
        pg,
        client,
        catalog,
        stream,
        types,
    }
}

/// The next `count` changes with their commit times.
async fn changes(stream: &mut ChangeStream, count: usize) -> Vec<(i64, RowChange)> {
    let mut changes = Vec::new();
    let mut commit_time = None;
    timeout(WAIT, async {
        while changes.len() < count {
            match stream.next().await.unwrap().expect("the stream goes on") {
                StreamEvent::Begin {
                    commit_time_micros, ..
                } => commit_time = Some(commit_time_micros),
                StreamEvent::Change(change) => {
                    changes.push((commit_time.expect("a change inside a transaction"), change));
                }
                _ => {}
            }
        }
    })
    .await
    .expect("changes in time");
    changes
}

impl Setup {
    /// Renders a change with the table's info read from the database, and checks its
    /// commit time against the server's `to_char`.
    async fn render(&self, (commit_time, change): &(i64, RowChange)) -> RenderedChange {
        let table = self
            .catalog
            .table_info(change.relation.id)
            .await
            .unwrap()
            .expect("the table exists");
        let rendered = RenderedChange::new(change, *commit_time, &self.types, &table);
        let expected: String = self
            .client
            .query_one(TO_CHAR, &[commit_time])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rendered.commit_timestamp(), expected);
        rendered
    }
}

const ITEMS: &str = "create table items (
       id bigint primary key, title text, done boolean, meta jsonb, tags int[],
       due timestamptz, ref uuid, price numeric, body text);
     -- Out of line and uncompressed from 2 kB on: the body is TOASTed.
     alter table items alter column body set storage external;";

const INSERT: &str = "insert into items values (1, E'say \"hi\"\\n', true,
       '{\"b\": 2, \"aa\": [1, {\"z\": null, \"y\": 1.50}]}', '{1,2,NULL}',
       '2026-01-02 03:04:05.678+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 12.50,
       repeat('x', 5000));
     insert into items (id) values (2);
     update items set title = 'second', done = false, tags = '{}' where id = 1;
     delete from items where id = 1;";

const COLUMNS: &str = r#""columns":[{"name":"id","type":"int8"},{"name":"title","type":"text"},{"name":"done","type":"bool"},{"name":"meta","type":"jsonb"},{"name":"tags","type":"_int4"},{"name":"due","type":"timestamptz"},{"name":"ref","type":"uuid"},{"name":"price","type":"numeric"},{"name":"body","type":"text"}]"#;

/// Row 1 as inserted, in `jsonb` key order, `<BODY>` standing for the TOASTed body.
const ROW_1: &str = r#"{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","body":"<BODY>","done":true,"meta":{"b":2,"aa":[1,{"y":1.5,"z":null}]},"tags":[1,2,null],"price":12.5,"title":"say \"hi\"\n"}"#;

/// Row 1 as updated, without its body.
const ROW_1_UPDATED: &str = r#"{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","done":false,"meta":{"b":2,"aa":[1,{"y":1.5,"z":null}]},"tags":[],"price":12.5,"title":"second"}"#;

/// Row 1 as updated, with its body.
const ROW_1_UPDATED_BODY: &str = r#"{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","body":"<BODY>","done":false,"meta":{"b":2,"aa":[1,{"y":1.5,"z":null}]},"tags":[],"price":12.5,"title":"second"}"#;

fn data(rendered: &RenderedChange, kind: &str, record: Option<&str>, old: Option<&str>) -> String {
    let mut data = format!(
        r#"{{"schema":"public","table":"items","commit_timestamp":"{}","type":"{kind}",{COLUMNS}"#,
        rendered.commit_timestamp()
    );
    if let Some(record) = record {
        data.push_str(&format!(r#","record":{record}"#));
    }
    if let Some(old) = old {
        data.push_str(&format!(r#","old_record":{old}"#));
    }
    data.push_str(r#","errors":null}"#);
    data.replace("<BODY>", &"x".repeat(5000))
}

/// The body column's value in the UPDATE's new tuple: the test is only meaningful when
/// it is an unchanged TOAST value.
fn body_of(change: &RowChange) -> &Value {
    &change.new.as_ref().unwrap().0[8]
}

#[tokio::test]
async fn replica_identity_default_shows_the_key_as_old_record() {
    let mut setup = setup(ITEMS).await;
    setup.pg.psql(INSERT).unwrap();
    let changes = changes(&mut setup.stream, 4).await;
    assert_eq!(body_of(&changes[2].1), &Value::UnchangedToast);

    let insert = setup.render(&changes[0]).await;
    assert_eq!(
        insert.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&insert, "INSERT", Some(ROW_1), None)
    );
    assert_eq!(insert.primary_key_text(), Some(vec![Some("1".to_owned())]));

    let nulls = setup.render(&changes[1]).await;
    assert_eq!(
        nulls.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(
            &nulls,
            "INSERT",
            Some(
                r#"{"id":2,"due":null,"ref":null,"body":null,"done":null,"meta":null,"tags":null,"price":null,"title":null}"#
            ),
            None
        )
    );

    // The unchanged body is not in the WAL, and the old row has only the key.
    let update = setup.render(&changes[2]).await;
    assert_eq!(
        update.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&update, "UPDATE", Some(ROW_1_UPDATED), Some(r#"{"id":1}"#))
    );

    let delete = setup.render(&changes[3]).await;
    assert_eq!(
        delete.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&delete, "DELETE", None, Some(r#"{"id":1}"#))
    );
    assert_eq!(delete.filter_row().len(), 1);

    // Over the limit, the body and the other fields over 64 bytes go.
    let cut = insert.data_for(None, 4096);
    assert!(
        cut.ends_with(r#","record":{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","done":true,"meta":{"b":2,"aa":[1,{"y":1.5,"z":null}]},"tags":[1,2,null],"price":12.5,"title":"say \"hi\"\n"},"errors":["Error 413: Payload Too Large"]}"#),
        "{cut}"
    );
}

#[tokio::test]
async fn replica_identity_full_fills_unchanged_toast_and_shows_the_old_row() {
    let mut setup = setup(&format!("{ITEMS} alter table items replica identity full;")).await;
    setup.pg.psql(INSERT).unwrap();
    let changes = changes(&mut setup.stream, 4).await;
    assert_eq!(body_of(&changes[2].1), &Value::UnchangedToast);

    let insert = setup.render(&changes[0]).await;
    assert_eq!(
        insert.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&insert, "INSERT", Some(ROW_1), None)
    );

    // The body comes from the old row, which is all there.
    let update = setup.render(&changes[2]).await;
    assert_eq!(
        update.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&update, "UPDATE", Some(ROW_1_UPDATED_BODY), Some(ROW_1))
    );
    assert!(!update.filter_row().contains_key("body"));

    let delete = setup.render(&changes[3]).await;
    assert_eq!(
        delete.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        data(&delete, "DELETE", None, Some(ROW_1_UPDATED_BODY))
    );

    // A role that cannot see the body or the title.
    let selectable = ["id", "done", "meta", "tags", "due", "ref", "price"]
        .into_iter()
        .map(String::from)
        .collect();
    let projected = update.data_for(Some(&selectable), DEFAULT_MAX_RECORD_BYTES);
    assert_eq!(
        projected,
        format!(
            r#"{{"schema":"public","table":"items","commit_timestamp":"{}","type":"UPDATE","columns":[{{"name":"id","type":"int8"}},{{"name":"done","type":"bool"}},{{"name":"meta","type":"jsonb"}},{{"name":"tags","type":"_int4"}},{{"name":"due","type":"timestamptz"}},{{"name":"ref","type":"uuid"}},{{"name":"price","type":"numeric"}}],"record":{{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","done":false,"meta":{{"b":2,"aa":[1,{{"y":1.5,"z":null}}]}},"tags":[],"price":12.5}},"old_record":{{"id":1,"due":"2026-01-02T03:04:05.678+00:00","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","done":true,"meta":{{"b":2,"aa":[1,{{"y":1.5,"z":null}}]}},"tags":[1,2,null],"price":12.5}},"errors":null}}"#,
            update.commit_timestamp()
        )
    );
}

#[tokio::test]
async fn row_level_security_and_missing_primary_keys() {
    let mut setup = setup(
        "create table secret (a int, b text, c text, primary key (b, a));
         alter table secret enable row level security;
         alter table secret replica identity full;
         create table loose (x int, y text);
         alter table loose replica identity full;",
    )
    .await;
    // The table facts themselves are `Catalog::table_info`'s, tested in authorization.rs.

    setup
        .pg
        .psql(
            "insert into secret values (7, 'k', 'hidden');
             delete from secret;
             insert into loose values (1, 'a');
             delete from loose;",
        )
        .unwrap();
    let changes = changes(&mut setup.stream, 4).await;

    let insert = setup.render(&changes[0]).await;
    assert_eq!(
        insert.primary_key_text(),
        Some(vec![Some("k".to_owned()), Some("7".to_owned())])
    );
    // A DELETE is not checked against the policies: only the key is shown.
    let delete = setup.render(&changes[1]).await;
    assert_eq!(
        delete.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        format!(
            r#"{{"schema":"public","table":"secret","commit_timestamp":"{}","type":"DELETE","columns":[{{"name":"a","type":"int4"}},{{"name":"b","type":"text"}},{{"name":"c","type":"text"}}],"old_record":{{"a":7,"b":"k"}},"errors":null}}"#,
            delete.commit_timestamp()
        )
    );
    assert_eq!(delete.filter_row()["c"], "hidden");

    let insert = setup.render(&changes[2]).await;
    assert_eq!(
        insert.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        r#"{"schema":"public","table":"loose","commit_timestamp":null,"type":"INSERT","columns":[],"record":{},"errors":["Error 400: Bad Request, no primary key"]}"#
    );
    assert_eq!(insert.primary_key_text(), None);
    let delete = setup.render(&changes[3]).await;
    assert_eq!(
        delete.data_for(None, DEFAULT_MAX_RECORD_BYTES),
        format!(
            r#"{{"schema":"public","table":"loose","commit_timestamp":"{}","type":"DELETE","columns":[{{"name":"x","type":"int4"}},{{"name":"y","type":"text"}}],"old_record":{{"x":1,"y":"a"}},"errors":null}}"#,
            delete.commit_timestamp()
        )
    );
}

#[tokio::test]
async fn commit_timestamps_are_formatted_as_postgres_to_char_formats_them() {
    let pg = TestPostgres::start().expect("postgres");
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let day = 86_400_000_000i64;
    let mut times = vec![
        0,
        1,
        999,
        1_000,
        -1,
        -999,
        -1_000,
        -1_001,
        -day,
        951_782_400_000_000 - 1,
        951_782_400_000_000,
        1_709_251_199_999_999,
        -2_203_891_200_000_001,
        4_107_542_400_000_000,
        1_767_323_045_678_901,
        // Years 1 and 9999.
        -62_135_596_800_000_000,
        253_402_300_799_999_999,
    ];
    // Every 97 days and some microseconds, from 1600 to 2400.
    let mut t = -11_676_096_000_000_000i64;
    while t < 13_569_465_600_000_000 {
        times.push(t);
        t += 97 * day + 3_600_000_123;
    }
    let statement = client.prepare(TO_CHAR).await.unwrap();
    for micros in times {
        let expected: String = client
            .query_one(&statement, &[&micros])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            render::format_commit_timestamp(micros),
            expected,
            "{micros}"
        );
    }
}
