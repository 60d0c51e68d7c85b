//! The `realtime` schema and private-channel checks against a real PostgreSQL, with the
//! kind of policies Supabase's documentation shows.

use crier_postgres::catalog::Catalog;
use crier_postgres::channel_access::{
    AccessError, ChannelCheck, Extension, ReadAccess, read_access, write_access,
};
use crier_postgres::realtime_schema::{SchemaError, ensure_schema, maintain_partitions};
use crier_testkit::TestPostgres;

const ROLES: &str = "
    create role anon nologin;
    create role authenticated nologin;
    create role service_role nologin bypassrls;
";

/// Policies: anyone reads broadcast on `public-*`; `authenticated` reads presence on
/// `room-*` and writes there only as user `u1`; a topic named `boom` raises.
const POLICIES: &str = "
    create policy read_public on realtime.messages for select to anon, authenticated
        using (realtime.topic() like 'public-%' and extension = 'broadcast');
    create policy read_rooms on realtime.messages for select to authenticated
        using (realtime.topic() like 'room-%');
    create policy write_rooms on realtime.messages for insert to authenticated
        with check (realtime.topic() like 'room-%'
                    and current_setting('request.jwt.claim.sub', true) = 'u1'
                    and extension = 'broadcast');
    create policy header_gate on realtime.messages for select to anon
        using (realtime.topic() = 'by-header'
               and current_setting('request.headers', true)::json->>'x-team' = 'blue');
    create policy boom on realtime.messages for select to anon
        using (case when realtime.topic() = 'boom' then 1 / (length(topic) - 4) = 1 else false end);
";

async fn ready() -> (TestPostgres, Catalog) {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(ROLES).unwrap();
    let catalog = Catalog::connect(&pg.url(), 2).await.unwrap();
    let status = ensure_schema(&catalog).await.unwrap();
    assert_eq!(
        status.created,
        [
            "schema realtime",
            "table realtime.messages",
            "function realtime.topic()",
            "function realtime.send()",
            "function realtime.send_binary()",
            "function realtime.broadcast_changes()",
        ]
    );
    maintain_partitions(&catalog).await.unwrap();
    pg.psql(POLICIES).unwrap();
    (pg, catalog)
}

fn check(topic: &str, role: &str, sub: &str) -> ChannelCheck {
    ChannelCheck {
        topic: topic.into(),
        role: role.into(),
        claims: format!(r#"{{"role":"{role}","sub":"{sub}"}}"#),
        sub: sub.into(),
        headers: "{}".into(),
    }
}

fn read(broadcast: bool, presence: bool) -> ReadAccess {
    ReadAccess {
        broadcast,
        presence,
    }
}

#[tokio::test]
async fn the_schema_is_created_once_with_supabase_shape_and_grants() {
    let (pg, catalog) = ready().await;
    assert!(
        ensure_schema(&catalog).await.unwrap().created.is_empty(),
        "idempotent"
    );
    let columns = pg
        .psql("select string_agg(column_name || ':' || data_type, ',' order by ordinal_position) \
               from information_schema.columns where table_schema = 'realtime' and table_name = 'messages'")
        .unwrap();
    assert_eq!(
        columns.trim(),
        "topic:text,extension:text,payload:jsonb,event:text,private:boolean,\
         updated_at:timestamp without time zone,inserted_at:timestamp without time zone,\
         id:uuid,binary_payload:bytea"
    );
    let grants = pg
        .psql("select string_agg(grantee || ':' || privilege_type, ',' order by grantee, privilege_type) \
               from information_schema.role_table_grants \
               where table_schema = 'realtime' and table_name = 'messages' and grantee <> current_user")
        .unwrap();
    assert_eq!(
        grants.trim(),
        "anon:INSERT,anon:SELECT,anon:UPDATE,authenticated:INSERT,authenticated:SELECT,\
         authenticated:UPDATE,service_role:INSERT,service_role:SELECT,service_role:UPDATE"
    );
    let rls = pg
        .psql("select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass")
        .unwrap();
    assert_eq!(rls.trim(), "t");
    let both = pg
        .psql(
            "insert into realtime.messages (topic, extension, payload, binary_payload) \
               values ('t', 'broadcast', '{}', '\\x00')",
        )
        .unwrap_err();
    assert!(
        both.to_string().contains("messages_payload_exclusive"),
        "{both}"
    );
}

#[tokio::test]
async fn partitions_cover_yesterday_to_three_days_ahead_and_old_ones_go() {
    let (pg, catalog) = ready().await;
    let names = |pg: &TestPostgres| {
        pg.psql("select string_agg(c.relname, ',' order by c.relname) from pg_inherits i \
                 join pg_class c on c.oid = i.inhrelid where i.inhparent = 'realtime.messages'::regclass")
            .unwrap()
            .trim()
            .to_owned()
    };
    let expected = pg
        .psql(
            "select string_agg('messages_' || to_char(d, 'YYYY_MM_DD'), ',' order by d) \
               from generate_series(current_date - 1, current_date + 3, interval '1 day') d",
        )
        .unwrap();
    assert_eq!(names(&pg), expected.trim());
    // A partition of five days ago is dropped; one of three days ago stays (72 h).
    pg.psql(
        "create table realtime.messages_2000_01_01 partition of realtime.messages \
             for values from ('2000-01-01') to ('2000-01-02')",
    )
    .unwrap();
    let old = pg
        .psql(
            "select 'messages_' || to_char(current_date - 5, 'YYYY_MM_DD') || ',' \
                   || 'messages_' || to_char(current_date - 3, 'YYYY_MM_DD')",
        )
        .unwrap();
    let (five, three) = old.trim().split_once(',').unwrap();
    for (name, days) in [(five, 5), (three, 3)] {
        pg.psql(&format!(
            "create table realtime.{name} partition of realtime.messages \
             for values from (current_date - {days}) to (current_date - {days} + 1)"
        ))
        .unwrap();
    }
    let report = maintain_partitions(&catalog).await.unwrap();
    assert!(report.created.is_empty());
    let mut dropped = report.dropped.clone();
    dropped.sort();
    assert_eq!(dropped, ["messages_2000_01_01".to_owned(), five.to_owned()]);
    assert!(names(&pg).contains(three));
}

#[tokio::test]
async fn a_send_without_todays_partition_warns_missing_partition_and_the_caller_goes_on() {
    let (pg, catalog) = ready().await;
    let today = pg
        .psql("select 'realtime.messages_' || to_char(now(), 'YYYY_MM_DD')")
        .unwrap();
    pg.psql(&format!("drop table {}", today.trim())).unwrap();
    let warnings = pg
        .psql_warnings(
            "begin; select realtime.send('{}', 'e', 't'); \
             select realtime.send_binary('\\x00', 'e', 't'); \
             create table still_committed (); commit;",
        )
        .unwrap();
    assert_eq!(
        warnings
            .matches("ErrorSendingBroadcastMessage: MissingPartition")
            .count(),
        2,
        "{warnings}"
    );
    // The caller's transaction committed.
    pg.psql("select * from still_committed").unwrap();
    // The hourly maintenance puts the partition back, and sends work again.
    let report = maintain_partitions(&catalog).await.unwrap();
    assert_eq!(
        report.created,
        [today.trim().trim_start_matches("realtime.").to_owned()]
    );
    let warnings = pg
        .psql_warnings("select realtime.send('{}', 'e', 't')")
        .unwrap();
    assert!(warnings.is_empty(), "{warnings}");
}

#[tokio::test]
async fn read_follows_the_select_policies_per_extension() {
    let (pg, catalog) = ready().await;
    let cases = [
        (check("public-news", "anon", ""), read(true, false)),
        (check("room-1", "anon", ""), read(false, false)),
        (check("room-1", "authenticated", "u2"), read(true, true)),
        (check("public-x", "authenticated", "u2"), read(true, false)),
        (
            check("elsewhere", "authenticated", "u1"),
            read(false, false),
        ),
        // service_role bypasses row level security.
        (check("elsewhere", "service_role", ""), read(true, true)),
    ];
    for (check, expected) in cases {
        let got = read_access(&catalog, &check).await.unwrap();
        assert_eq!(got, expected, "{check:?}");
    }
    let mut by_header = check("by-header", "anon", "");
    assert_eq!(
        read_access(&catalog, &by_header).await.unwrap(),
        read(false, false)
    );
    by_header.headers = r#"{"x-team":"blue"}"#.into();
    assert_eq!(
        read_access(&catalog, &by_header).await.unwrap(),
        read(true, true)
    );
    // The probes were rolled back.
    let count = pg.psql("select count(*) from realtime.messages").unwrap();
    assert_eq!(count.trim(), "0");
}

#[tokio::test]
async fn write_follows_the_insert_policies() {
    let (_pg, catalog) = ready().await;
    let cases = [
        (
            check("room-1", "authenticated", "u1"),
            Extension::Broadcast,
            true,
        ),
        (
            check("room-1", "authenticated", "u2"),
            Extension::Broadcast,
            false,
        ),
        (
            check("room-1", "authenticated", "u1"),
            Extension::Presence,
            false,
        ),
        (
            check("public-news", "anon", ""),
            Extension::Broadcast,
            false,
        ),
        (
            check("anything", "service_role", ""),
            Extension::Presence,
            true,
        ),
    ];
    for (check, extension, expected) in cases {
        let got = write_access(&catalog, &check, extension).await.unwrap();
        assert_eq!(got, expected, "{check:?} {extension:?}");
    }
}

#[tokio::test]
async fn a_policy_that_raises_and_an_unknown_role_are_errors_and_the_pool_goes_on() {
    let (_pg, catalog) = ready().await;
    let err = read_access(&catalog, &check("boom", "anon", ""))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccessError::Policy(message) if message.contains("division by zero")),
        "{err:?}"
    );
    let err = read_access(&catalog, &check("room-1", "nobody", ""))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccessError::Role { role, .. } if role == "nobody"),
        "{err:?}"
    );
    let err = write_access(&catalog, &check("room-1", "none", ""), Extension::Broadcast)
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::Role { .. }), "{err:?}");
    // Both connections are still fine.
    for _ in 0..4 {
        let access = read_access(&catalog, &check("public-a", "anon", ""))
            .await
            .unwrap();
        assert_eq!(access, read(true, false));
    }
}

#[tokio::test]
async fn a_role_that_may_not_create_the_schema_is_told_which_grant_it_needs() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql("create role crier login; revoke create on database postgres from public")
        .unwrap();
    let url = pg.url().replace("postgres@", "crier@");
    let catalog = Catalog::connect(&url, 1).await.unwrap();
    let err = ensure_schema(&catalog).await.unwrap_err();
    let SchemaError::MissingPrivilege(message) = err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("schema realtime is missing")
            && message.contains(r#"GRANT CREATE ON DATABASE "postgres" TO "crier""#),
        "{message}"
    );
}

#[tokio::test]
async fn send_and_send_binary_store_one_broadcast_row_each() {
    let (pg, _catalog) = ready().await;
    pg.psql(
        r#"select realtime.send('{"a": 1}', 'ev', 'room-1');
           select realtime.send('{"id": "mine"}', 'ev', 'room-1', false);
           select realtime.send_binary('\x0102ff', 'bin', 'room-2');"#,
    )
    .unwrap();
    let rows = pg
        .psql(
            "select topic, extension, event, private, payload - 'id', payload->>'id' = id::text,
                    payload->>'id', encode(binary_payload, 'hex')
             from realtime.messages order by event, private",
        )
        .unwrap();
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0], "room-2|broadcast|bin|t||||0102ff");
    // Without an id of its own the payload gets the row's; with one it keeps it.
    assert!(
        rows[1].starts_with("room-1|broadcast|ev|f|{}|f|mine|"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with(r#"room-1|broadcast|ev|t|{"a": 1}|t|"#),
        "{}",
        rows[2]
    );
}

#[tokio::test]
async fn broadcast_changes_sends_a_trigger_row_change_in_realtime_js_shape() {
    let (pg, _catalog) = ready().await;
    pg.psql(
        "create table todos (id int primary key, title text);
         create function todos_broadcast() returns trigger language plpgsql as $$
         begin
             perform realtime.broadcast_changes('todos:' || coalesce(new.id, old.id)::text,
                 tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
             return null;
         end $$;
         create trigger todos_broadcast after insert or update or delete on todos
             for each row execute function todos_broadcast();
         insert into todos values (1, 'a');
         update todos set title = 'b' where id = 1;
         delete from todos where id = 1;",
    )
    .unwrap();
    let rows = pg
        .psql(
            "select topic, event, private, payload->>'operation', payload->>'schema',
                    payload->>'table', payload->'record', payload->'old_record',
                    (payload->>'id')::uuid = id
             from realtime.messages",
        )
        .unwrap();
    let mut rows: Vec<&str> = rows.lines().collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            r#"todos:1|DELETE|t|DELETE|public|todos|null|{"id": 1, "title": "b"}|t"#,
            r#"todos:1|INSERT|t|INSERT|public|todos|{"id": 1, "title": "a"}|null|t"#,
            r#"todos:1|UPDATE|t|UPDATE|public|todos|{"id": 1, "title": "b"}|{"id": 1, "title": "a"}|t"#,
        ]
    );
}

#[tokio::test]
async fn errors_inside_the_functions_are_warnings_and_the_callers_write_goes_on() {
    let (pg, _catalog) = ready().await;
    // anon has no INSERT policy on realtime.messages: its send is refused by row level
    // security, which becomes a warning; its own transaction commits.
    pg.psql(
        "create table notes (id int primary key);
         grant insert on notes to anon;
         begin;
         set local role anon;
         insert into notes values (1);
         select realtime.send('{}', 'e', 'room-1');
         select realtime.broadcast_changes('t', 'e', 'TRUNCATE', 'notes', 'public', null::record, null::record);
         commit;",
    )
    .unwrap();
    assert_eq!(pg.psql("select count(*) from notes").unwrap().trim(), "1");
    assert_eq!(
        pg.psql("select count(*) from realtime.messages")
            .unwrap()
            .trim(),
        "0"
    );
    let log = pg.log();
    assert!(
        log.contains("ErrorSendingBroadcastMessage: new row violates row-level security policy"),
        "{log}"
    );
    assert!(
        log.contains("ErrorSendingBroadcastMessage: unexpected operation TRUNCATE"),
        "{log}"
    );
}
