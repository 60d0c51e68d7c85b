//! Catalog lookups and row level security checks against a real PostgreSQL.

use std::collections::HashSet;

use crier_postgres::catalog::{APPLICATION_NAME, Catalog, CatalogError, PrimaryKeyColumn};
use crier_postgres::rls::visible_rows;
use crier_testkit::TestPostgres;

async fn start(sql: &str, connections: usize) -> (TestPostgres, Catalog) {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(sql).unwrap();
    let catalog = Catalog::connect(&pg.url(), connections).await.unwrap();
    (pg, catalog)
}

fn oid(pg: &TestPostgres, table: &str) -> u32 {
    pg.psql(&format!("select '{table}'::regclass::oid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn key(columns: &[(&str, &str)]) -> Vec<PrimaryKeyColumn> {
    columns
        .iter()
        .map(|(name, type_name)| PrimaryKeyColumn {
            name: (*name).into(),
            type_name: (*type_name).into(),
        })
        .collect()
}

fn rows(keys: &[&str]) -> Vec<Vec<Option<String>>> {
    keys.iter().map(|k| vec![Some((*k).to_owned())]).collect()
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn claims(sub: &str) -> String {
    serde_json::json!({ "sub": sub, "role": "authenticated" }).to_string()
}

/// `todos` with RLS: each user sees their own rows, and only as `authenticated`.
const TODOS: &str = "
    create role authenticated nologin;
    create role anon nologin;
    create role nopriv nologin;
    create table todos (id bigint primary key, owner text not null, title text);
    alter table todos enable row level security;
    grant select on todos to authenticated;
    create policy own on todos for select to authenticated using (
        (current_setting('request.jwt.claims', true)::jsonb ->> 'sub') = owner
        and current_user = 'authenticated');
    insert into todos select g, case when g % 2 = 0 then 'alice' else 'bob' end, 't' || g
        from generate_series(1, 600) g;";

#[tokio::test]
async fn table_info_reads_rls_and_the_primary_key() {
    let (pg, catalog) = start(
        "create schema app;
         create type app.\"Mood\" as enum ('sad', 'ok');
         create table plain (id int primary key, body text);
         create table secured (id uuid primary key);
         alter table secured enable row level security;
         create table keyless (a int, b text);
         create table composite (a int, \"B c\" varchar(20), m app.\"Mood\", primary key (\"B c\", m, a));
         create table identity_differs (id bigint primary key, code text not null unique);
         alter table identity_differs replica identity using index identity_differs_code_key;",
        1,
    )
    .await;
    let info = catalog
        .table_info(oid(&pg, "plain"))
        .await
        .unwrap()
        .unwrap();
    assert!(!info.rls_enabled);
    assert_eq!(info.primary_key, key(&[("id", "integer")]));

    let info = catalog
        .table_info(oid(&pg, "secured"))
        .await
        .unwrap()
        .unwrap();
    assert!(info.rls_enabled);
    assert_eq!(info.primary_key, key(&[("id", "uuid")]));

    let info = catalog
        .table_info(oid(&pg, "keyless"))
        .await
        .unwrap()
        .unwrap();
    assert!(!info.rls_enabled);
    assert!(info.primary_key.is_empty());

    // Key order, not column order; types without typmod, qualified when not on the path.
    let info = catalog
        .table_info(oid(&pg, "composite"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        info.primary_key,
        key(&[
            ("B c", "character varying"),
            ("m", "app.\"Mood\""),
            ("a", "integer")
        ])
    );

    // The replica identity (what pgoutput flags as key) is `code`; the primary key is `id`.
    let info = catalog
        .table_info(oid(&pg, "identity_differs"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.primary_key, key(&[("id", "bigint")]));

    assert_eq!(catalog.table_info(4_000_000_000).await.unwrap(), None);
}

#[tokio::test]
async fn publication_tables_lists_explicit_and_all_tables() {
    let (pg, catalog) = start(
        "create schema other;
         create table a (id int primary key);
         create table b (id int primary key);
         create table other.\"C\" (id int primary key);
         create publication chosen for table a, other.\"C\";
         create publication everything for all tables;
         create publication empty;",
        2,
    )
    .await;
    let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
    assert_eq!(
        catalog.publication_tables("chosen").await.unwrap(),
        [pair("other", "C"), pair("public", "a")]
    );
    assert_eq!(
        catalog.publication_tables("everything").await.unwrap(),
        [pair("other", "C"), pair("public", "a"), pair("public", "b")]
    );
    assert!(
        catalog
            .publication_tables("empty")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        catalog
            .publication_tables("missing")
            .await
            .unwrap()
            .is_empty()
    );
    // Tables added later are seen (nothing is cached).
    pg.psql("create table d (id int); alter publication chosen add table d")
        .unwrap();
    assert_eq!(
        catalog.publication_tables("chosen").await.unwrap(),
        [pair("other", "C"), pair("public", "a"), pair("public", "d")]
    );
}

#[tokio::test]
async fn table_columns_lists_live_columns_in_order() {
    let (_pg, catalog) = start(
        "create table t (id int primary key, gone text, \"Mixed Case\" text, z int);
         alter table t drop column gone;
         create view v as select id, z from t;
         create sequence s;",
        1,
    )
    .await;
    assert_eq!(
        catalog.table_columns("public", "t").await.unwrap().unwrap(),
        ["id", "Mixed Case", "z"]
    );
    assert_eq!(
        catalog.table_columns("public", "v").await.unwrap().unwrap(),
        ["id", "z"]
    );
    assert_eq!(catalog.table_columns("public", "T").await.unwrap(), None);
    assert_eq!(catalog.table_columns("other", "t").await.unwrap(), None);
    assert_eq!(catalog.table_columns("public", "s").await.unwrap(), None);
}

#[tokio::test]
async fn roles_and_selectable_columns() {
    let (_pg, catalog) = start(
        "create role authenticated nologin;
         create role anon nologin;
         create role \"Weird Role\" nologin;
         create role member_of_authenticated nologin in role authenticated;
         create table t (id int primary key, public_col text, secret text);
         grant select on t to authenticated;
         grant select (id, public_col) on t to anon;",
        2,
    )
    .await;
    assert!(catalog.role_exists("authenticated").await.unwrap());
    assert!(catalog.role_exists("Weird Role").await.unwrap());
    assert!(!catalog.role_exists("weird role").await.unwrap());
    assert!(!catalog.role_exists("ghost").await.unwrap());
    assert!(!catalog.role_exists("none").await.unwrap());

    let cols = |role: &'static str| {
        let catalog = catalog.clone();
        async move { catalog.selectable_columns("public", "t", role).await }
    };
    assert_eq!(
        cols("authenticated").await.unwrap(),
        set(&["id", "public_col", "secret"])
    );
    assert_eq!(cols("anon").await.unwrap(), set(&["id", "public_col"]));
    assert_eq!(
        cols("member_of_authenticated").await.unwrap(),
        set(&["id", "public_col", "secret"])
    );
    assert_eq!(cols("Weird Role").await.unwrap(), set(&[]));
    assert!(matches!(
        cols("ghost").await,
        Err(CatalogError::UnknownRole(role)) if role == "ghost"
    ));
    assert!(matches!(
        catalog.selectable_columns("public", "missing", "anon").await,
        Err(CatalogError::UnknownTable { table, .. }) if table == "missing"
    ));
}

#[tokio::test]
async fn each_user_sees_their_own_rows() {
    let (_pg, catalog) = start(TODOS, 2).await;
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["1", "2", "3", "4", "9999"]);
    let alice = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(alice, [false, true, false, true, false]);
    let bob = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("bob"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(bob, [true, false, true, false, false]);
    // No claims at all: the policy's comparison is NULL.
    let nobody = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        "{}",
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(nobody, [false; 5]);
}

#[tokio::test]
async fn the_role_really_switches() {
    // The policy for `anon` needs current_user = anon; `authenticated` rows need the
    // authenticated role. Asking as one role with the other's claims shows nothing.
    let (pg, catalog) = start(TODOS, 1).await;
    pg.psql(
        "grant select on todos to anon;
         create policy anon_sees_odd on todos for select to anon
             using (current_user = 'anon' and id % 2 = 1 and id < 10);",
    )
    .unwrap();
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["1", "2", "3", "11"]);
    let anon = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "anon",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(anon, [true, false, true, false]);
    let authenticated = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(authenticated, [false, true, false, false]);
    // The owner (the pool's session user) bypasses RLS: as `postgres`, everything that
    // exists is visible. Supabase behaves the same for a table owner's role.
    let owner = visible_rows(&catalog, "public", "todos", &id, "postgres", "{}", &asked)
        .await
        .unwrap();
    assert_eq!(owner, [true; 4]);
}

#[tokio::test]
async fn composite_keys_and_awkward_text() {
    let awkward = [
        "it's",
        r"back\slash",
        r"\'",
        r"\\'';",
        "ünïcødé 🎉",
        "$crier0$",
        "'); drop table items; --",
        "",
        " ",
    ];
    let mut sql = String::from(
        "create role authenticated nologin;
         create table items (org int, name text, owner text, primary key (org, name));
         alter table items enable row level security;
         grant select on items to authenticated;
         create policy own on items for select to authenticated using (
             (current_setting('request.jwt.claims', true)::jsonb ->> 'sub') = owner);",
    );
    for (n, name) in awkward.iter().enumerate() {
        let literal = name.replace('\'', "''");
        // org 1 is alice's, org 2 bob's, for every name.
        sql.push_str(&format!(
            "insert into items values (1, '{literal}', 'alice'), (2, '{literal}', 'bob'); -- {n}\n"
        ));
    }
    // One more row of alice's, which the policy added below fails on.
    sql.push_str("insert into items values (3, 'boom', 'alice');");
    let (pg, catalog) = start(&sql, 2).await;
    let stored = awkward.len() * 2 + 1;
    assert_eq!(
        pg.psql("select count(*) from items").unwrap().trim(),
        stored.to_string()
    );
    let info = catalog
        .table_info(oid(&pg, "items"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        info.primary_key,
        key(&[("org", "integer"), ("name", "text")])
    );
    let mut asked = Vec::new();
    for name in awkward {
        for org in ["1", "2", "3"] {
            asked.push(vec![Some(org.to_owned()), Some(name.to_owned())]);
        }
    }
    // Near misses: a quote or backslash lost in transit would make these match.
    for near in ["its", r"backslash", r"back\\slash", "'", r"\", "unicode 🎉"] {
        asked.push(vec![Some("1".to_owned()), Some(near.to_owned())]);
    }
    asked.push(vec![Some("3".to_owned()), Some("boom".to_owned())]);
    let alice = visible_rows(
        &catalog,
        "public",
        "items",
        &info.primary_key,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    let mut expected: Vec<bool> = (0..asked.len())
        .map(|i| i < awkward.len() * 3 && i % 3 == 0)
        .collect();
    *expected.last_mut().unwrap() = true;
    assert_eq!(alice, expected);
    // The dollar-quoted row-by-row path gets the same answers: `$crier0$` is one of the
    // keys, and a policy that raises on org 3's row fails the batch and forces that path
    // (had it not, the call would have failed).
    pg.psql(
        "create policy boom on items as restrictive for select to authenticated
             using (1 / (org - 3) is not null);",
    )
    .unwrap();
    let again = visible_rows(
        &catalog,
        "public",
        "items",
        &info.primary_key,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    *expected.last_mut().unwrap() = false;
    assert_eq!(again, expected);
    assert_eq!(
        pg.psql("select count(*) from items").unwrap().trim(),
        stored.to_string()
    );
}

#[tokio::test]
async fn null_and_nul_keys_are_never_visible() {
    let (_pg, catalog) = start(TODOS, 1).await;
    let id = key(&[("id", "bigint")]);
    let asked = vec![
        vec![None],
        vec![Some("2".to_owned())],
        vec![Some("2\0".to_owned())],
        vec![None],
    ];
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(seen, [false, true, false, false]);
    // Nothing to ask: no round trip, nothing visible.
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("alice"),
        &[vec![None]],
    )
    .await
    .unwrap();
    assert_eq!(seen, [false]);
    let none = visible_rows(&catalog, "public", "todos", &id, "authenticated", "{}", &[])
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_role_without_privilege_sees_nothing_and_the_next_group_is_unharmed() {
    // One connection, so every call reuses what the failed one used.
    let (_pg, catalog) = start(TODOS, 1).await;
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["1", "2"]);
    for _ in 0..3 {
        let nopriv = visible_rows(&catalog, "public", "todos", &id, "nopriv", "{}", &asked)
            .await
            .unwrap();
        assert_eq!(nopriv, [false, false]);
        let alice = visible_rows(
            &catalog,
            "public",
            "todos",
            &id,
            "authenticated",
            &claims("alice"),
            &asked,
        )
        .await
        .unwrap();
        assert_eq!(alice, [false, true]);
        assert!(catalog.role_exists("nopriv").await.unwrap());
    }
}

#[tokio::test]
async fn unknown_roles_and_bad_input_are_clear_errors() {
    let (_pg, catalog) = start(TODOS, 1).await;
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["2"]);
    let ask = |role: &'static str, claims: String, asked: Vec<Vec<Option<String>>>| {
        let catalog = catalog.clone();
        let id = id.clone();
        async move { visible_rows(&catalog, "public", "todos", &id, role, &claims, &asked).await }
    };
    for role in ["ghost", "none", "", "Authenticated"] {
        match ask(role, claims("alice"), asked.clone()).await {
            Err(CatalogError::UnknownRole(name)) => assert_eq!(name, role),
            other => panic!("{role:?}: {other:?}"),
        }
        // The failed transaction was ended: plain queries work on the same connection.
        assert!(catalog.role_exists("authenticated").await.unwrap());
    }
    assert!(matches!(
        ask("authenticated", "{not json".into(), asked.clone()).await,
        Err(CatalogError::InvalidInput(_))
    ));
    assert!(matches!(
        ask("authenticated", "{\"sub\":\"a\0\"}".into(), asked.clone()).await,
        Err(CatalogError::InvalidInput(_))
    ));
    assert!(matches!(
        ask("authenticated", claims("alice"), vec![vec![]]).await,
        Err(CatalogError::InvalidInput(_))
    ));
    assert!(matches!(
        visible_rows(
            &catalog,
            "public",
            "todos",
            &[],
            "authenticated",
            "{}",
            &asked
        )
        .await,
        Err(CatalogError::InvalidInput(_))
    ));
    // After all that, the connection still answers.
    assert_eq!(
        ask("authenticated", claims("alice"), asked).await.unwrap(),
        [true]
    );
}

#[tokio::test]
async fn a_policy_that_raises_hides_only_its_rows() {
    let (pg, catalog) = start(TODOS, 1).await;
    // Division by zero for id 4 only; a bad claim cast for everyone with sub "x".
    pg.psql(
        "create policy boom on todos as restrictive for select to authenticated
             using (10 / (id - 4) is not null
                    and (current_setting('request.jwt.claims', true)::jsonb ->> 'n')::int >= 0);",
    )
    .unwrap();
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["2", "4", "6", "7"]);
    let alice = serde_json::json!({ "sub": "alice", "n": 1 }).to_string();
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &alice,
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(seen, [true, false, true, false]);
    let broken = serde_json::json!({ "sub": "alice", "n": "x" }).to_string();
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &broken,
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(seen, [false; 4]);
    // A key value that does not parse as the key's type is one more failing row.
    let mut odd = asked.clone();
    odd.push(vec![Some("not a number".into())]);
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &alice,
        &odd,
    )
    .await
    .unwrap();
    assert_eq!(seen, [true, false, true, false, false]);
}

#[tokio::test]
async fn many_rows_in_one_call() {
    let (_pg, catalog) = start(TODOS, 2).await;
    let id = key(&[("id", "bigint")]);
    // 1..=650: ids above 600 do not exist.
    let asked: Vec<Vec<Option<String>>> = (1..=650).map(|n| vec![Some(n.to_string())]).collect();
    let expected: Vec<bool> = (1..=650).map(|n| n <= 600 && n % 2 == 0).collect();
    let seen = visible_rows(
        &catalog,
        "public",
        "todos",
        &id,
        "authenticated",
        &claims("alice"),
        &asked,
    )
    .await
    .unwrap();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn concurrent_groups_share_the_pool() {
    let (_pg, catalog) = start(TODOS, 2).await;
    let mut tasks = Vec::new();
    for n in 0..24 {
        let catalog = catalog.clone();
        tasks.push(tokio::spawn(async move {
            let user = if n % 2 == 0 { "alice" } else { "bob" };
            let id = key(&[("id", "bigint")]);
            let asked: Vec<Vec<Option<String>>> =
                (1..=50).map(|k| vec![Some(k.to_string())]).collect();
            let seen = visible_rows(
                &catalog,
                "public",
                "todos",
                &id,
                "authenticated",
                &claims(user),
                &asked,
            )
            .await
            .unwrap();
            let expected: Vec<bool> = (1..=50).map(|k| (k % 2 == 0) == (n % 2 == 0)).collect();
            assert_eq!(seen, expected, "task {n}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn transactions_count_as_ended_only_once_they_have() {
    let (pg, catalog) = start("create table t (id int primary key)", 1).await;
    let xid_of = |full: i64| u32::try_from(full % (1 << 32)).unwrap();
    let committed = xid_of(
        pg.psql("insert into t values (1) returning txid_current()")
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    assert!(catalog.transactions_ended(&[]).await.unwrap());
    assert!(catalog.transactions_ended(&[committed]).await.unwrap());

    let (open, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    open.batch_execute("begin").await.unwrap();
    let running = xid_of(
        open.query_one("select txid_current()", &[])
            .await
            .unwrap()
            .get(0),
    );
    // The newest id (at or past the snapshot's xmax), and one that is running while a
    // later one has ended (among the snapshot's running ids).
    assert!(!catalog.transactions_ended(&[running]).await.unwrap());
    pg.psql("insert into t values (2)").unwrap();
    assert!(!catalog.transactions_ended(&[running]).await.unwrap());
    assert!(
        !catalog
            .transactions_ended(&[committed, running])
            .await
            .unwrap()
    );
    let started = std::time::Instant::now();
    assert!(
        !catalog
            .wait_until_ended(&[running], std::time::Duration::from_millis(50))
            .await
            .unwrap()
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));

    open.batch_execute("commit").await.unwrap();
    assert!(
        catalog
            .transactions_ended(&[committed, running])
            .await
            .unwrap()
    );
    assert!(
        catalog
            .wait_until_ended(&[running], std::time::Duration::ZERO)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn lost_connections_come_back_on_the_next_call() {
    let (pg, catalog) = start(TODOS, 2).await;
    let killed = pg
        .psql(&format!(
            "select count(*) from (select pg_terminate_backend(pid, 10000) from pg_stat_activity \
             where application_name = '{APPLICATION_NAME}') k(ok) where ok"
        ))
        .unwrap();
    // The timeout makes each call wait until its backend is gone.
    assert_eq!(killed.trim(), "2");
    // A call may fail on a connection whose end it had not noticed yet (at most one per
    // connection); after that every connection has been replaced.
    let mut failures = 0;
    for _ in 0..6 {
        if catalog.role_exists("authenticated").await.is_err() {
            failures += 1;
        }
    }
    assert!(failures <= 2, "{failures} failures");
    for _ in 0..4 {
        assert!(catalog.role_exists("authenticated").await.unwrap());
        let seen = visible_rows(
            &catalog,
            "public",
            "todos",
            &key(&[("id", "bigint")]),
            "authenticated",
            &claims("alice"),
            &rows(&["2"]),
        )
        .await
        .unwrap();
        assert_eq!(seen, [true]);
    }
    // And through a full server restart.
    pg.restart("fast").unwrap();
    let mut failures = 0;
    for _ in 0..6 {
        if catalog.table_info(oid(&pg, "todos")).await.is_err() {
            failures += 1;
        }
    }
    assert!(failures <= 2, "{failures} failures");
    assert!(
        catalog
            .table_info(oid(&pg, "todos"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_bad_url_or_pool_size_fails_at_connect() {
    assert!(matches!(
        Catalog::connect("postgres://u@127.0.0.1:1/db", 0).await,
        Err(CatalogError::Config(_))
    ));
    assert!(matches!(
        Catalog::connect("not a url at all ===", 1).await,
        Err(CatalogError::Config(_))
    ));
    let pg = TestPostgres::start().unwrap();
    let port = pg.port();
    drop(pg);
    assert!(matches!(
        Catalog::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"), 1).await,
        Err(CatalogError::Postgres(_))
    ));
}

/// How long the latency proxy of [`a_check_is_one_round_trip_and_a_failed_batch_one_more`] holds
/// the server's bytes: far longer than the server takes to answer, so the time a call
/// takes, in these units, is the number of round trips it made.
const ONE_WAY: std::time::Duration = std::time::Duration::from_millis(300);

/// A TCP proxy to `target` that passes the client's bytes on at once and the server's
/// bytes [`ONE_WAY`] after they arrive (a link with that latency one way, and none the
/// other). Returns its port.
async fn latency_proxy(target: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
            // Without this, Nagle's algorithm would hold small writes for an ACK that
            // the other side delays, adding time that is not a round trip.
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            });
            let (delayed, mut due) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                    let at = tokio::time::Instant::now() + ONE_WAY;
                    if delayed.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((at, bytes)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if to_client.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_check_is_one_round_trip_and_a_failed_batch_one_more() {
    // The statements of one check are sent together (pipelined), so a check is one round
    // trip; one whose batch fails takes a second, and a missing role a third (the
    // failed transaction is ended before the connection is reused).
    let (pg, _) = start(TODOS, 1).await;
    let port = latency_proxy(pg.port()).await;
    let url = pg.url().replace(
        &format!("127.0.0.1:{}", pg.port()),
        &format!("127.0.0.1:{port}"),
    );
    let catalog = Catalog::connect(&url, 1).await.unwrap();
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["1", "2", "3", "4", "601"]);
    for (role, expected, round_trips) in [
        (
            "authenticated",
            Some(vec![false, true, false, true, false]),
            1,
        ),
        ("nopriv", Some(vec![false; 5]), 2),
        ("ghost", None, 3),
    ] {
        let started = std::time::Instant::now();
        let seen = visible_rows(
            &catalog,
            "public",
            "todos",
            &id,
            role,
            &claims("alice"),
            &asked,
        )
        .await;
        let elapsed = started.elapsed();
        match (&seen, &expected) {
            (Ok(seen), Some(expected)) => assert_eq!(seen, expected, "{role}"),
            (Err(CatalogError::UnknownRole(_)), None) => {}
            _ => panic!("{role}: {seen:?}"),
        }
        let counted = elapsed.as_secs_f64() / ONE_WAY.as_secs_f64();
        assert_eq!(
            counted.floor() as usize,
            round_trips,
            "{role}: {elapsed:?} is {counted:.2} round trips"
        );
    }
}

/// Many groups in one call (one pipelined transaction per connection) answer exactly as
/// each would alone: own rows per user, a group without privilege sees nothing, a group
/// whose policy raises is asked row by row, an unknown role and bad input are that
/// group's error, and the groups after any of them are unharmed.
#[tokio::test]
async fn groups_asked_together_answer_as_each_alone() {
    use crier_postgres::rls::{GroupQuestion, visible_rows_by_group};

    for connections in [1, 3] {
        let (pg, catalog) = start(TODOS, connections).await;
        // Division by zero for id 4 when the claims say so: that group raises.
        pg.psql(
            "create policy boom on todos as restrictive for select to authenticated
                 using (case when current_setting('request.jwt.claims', true)::jsonb ? 'boom'
                             then 10 / (id - 4) is not null else true end);",
        )
        .unwrap();
        let id = key(&[("id", "bigint")]);
        let asked = rows(&["1", "2", "3", "4", "9999"]);
        let boom = serde_json::json!({"sub": "alice", "boom": true}).to_string();
        let (alice, bob) = (claims("alice"), claims("bob"));
        let none: Vec<Vec<Option<String>>> = Vec::new();
        let asks = [
            ("authenticated", alice.as_str(), &asked),
            ("nopriv", "{}", &asked),
            ("authenticated", boom.as_str(), &asked),
            ("ghost", "{}", &asked),
            ("authenticated", "{not json", &asked),
            ("authenticated", bob.as_str(), &asked),
            ("authenticated", alice.as_str(), &none),
        ];
        let questions: Vec<GroupQuestion<'_>> = asks
            .iter()
            .map(|(role, claims, rows)| GroupQuestion {
                schema: "public",
                table: "todos",
                key: &id,
                role,
                claims,
                rows,
            })
            .collect();
        for _ in 0..2 {
            let answers = visible_rows_by_group(&catalog, &questions).await.unwrap();
            assert_eq!(answers.len(), questions.len());
            assert_eq!(
                answers[0].as_ref().unwrap(),
                &[false, true, false, true, false]
            );
            assert_eq!(answers[1].as_ref().unwrap(), &[false; 5]);
            assert_eq!(
                answers[2].as_ref().unwrap(),
                &[false, true, false, false, false],
                "row 4 raised and is hidden; the others answered"
            );
            assert!(matches!(&answers[3], Err(CatalogError::UnknownRole(role)) if role == "ghost"));
            assert!(matches!(&answers[4], Err(CatalogError::InvalidInput(_))));
            assert_eq!(
                answers[5].as_ref().unwrap(),
                &[true, false, true, false, false]
            );
            assert!(answers[6].as_ref().unwrap().is_empty());
            // Each connection was left clean: plain queries and single checks still work.
            assert!(catalog.role_exists("authenticated").await.unwrap());
            let again = visible_rows(
                &catalog,
                "public",
                "todos",
                &id,
                "authenticated",
                &bob,
                &asked,
            )
            .await
            .unwrap();
            assert_eq!(again, [true, false, true, false, false]);
        }
    }
}

/// The statements are prepared once per connection: a table dropped and made again
/// between two calls is still checked right (its stale statement is prepared afresh),
/// and a table dropped for good is an answer of nothing visible, not a failed call.
#[tokio::test]
async fn prepared_checks_follow_a_table_dropped_and_made_again() {
    use crier_postgres::rls::{GroupQuestion, visible_rows_by_group};

    let (pg, catalog) = start(TODOS, 1).await;
    let id = key(&[("id", "bigint")]);
    let asked = rows(&["1", "2"]);
    let alice = claims("alice");
    let ask = || {
        let questions = [GroupQuestion {
            schema: "public",
            table: "todos",
            key: &id,
            role: "authenticated",
            claims: &alice,
            rows: &asked,
        }];
        let catalog = catalog.clone();
        async move { visible_rows_by_group(&catalog, &questions).await }
    };
    assert_eq!(ask().await.unwrap()[0].as_ref().unwrap(), &[false, true]);
    pg.psql(&format!("drop table todos cascade; {TODOS_AGAIN}"))
        .unwrap();
    for _ in 0..2 {
        assert_eq!(ask().await.unwrap()[0].as_ref().unwrap(), &[true, false]);
    }
    pg.psql("drop table todos cascade").unwrap();
    let gone = ask().await.unwrap();
    assert!(
        matches!(&gone[0], Ok(visible) if visible == &[false, false])
            || matches!(&gone[0], Err(err) if err.is_refusal()),
        "{gone:?}"
    );
}

/// `todos` again, with the owners the other way round.
const TODOS_AGAIN: &str = "
    create table todos (id bigint primary key, owner text not null, title text);
    alter table todos enable row level security;
    grant select on todos to authenticated;
    create policy own on todos for select to authenticated using (
        (current_setting('request.jwt.claims', true)::jsonb ->> 'sub') = owner);
    insert into todos values (1, 'alice', 'a'), (2, 'bob', 'b');";
