//! `TypeCatalog::render` against PostgreSQL's own `to_jsonb`: for each value, the server
//! gives its text output (what pgoutput sends) and `to_jsonb` of it (what Supabase
//! renders); rendering the text must give the same JSON value, with the catalog loaded
//! from the server and, for built-in types, with `TypeCatalog::builtin()`.

use crier_postgres::types::{PgType, TypeCatalog};
use crier_testkit::TestPostgres;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio_postgres::{Client, SimpleQueryMessage};

/// OIDs below this are PostgreSQL's own, which `builtin()` must render too.
const FIRST_NORMAL_OID: u32 = 16384;

/// Session time zones the `timestamptz` cases run under: whole hours either side, half
/// and three-quarter hours, and zones whose historical offsets have seconds.
const ZONES: &[&str] = &[
    "UTC",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "Europe/Amsterdam",
    "Africa/Monrovia",
    "Pacific/Kiritimati",
];

/// A server, a connection to it, the catalogs under test, and the failures so far.
struct Harness {
    pg: TestPostgres,
    client: Client,
    loaded: TypeCatalog,
    builtin: TypeCatalog,
    checked: usize,
    failures: Vec<String>,
}

impl Harness {
    /// Starts a server, runs `setup` with psql, connects and loads the catalog.
    async fn start(setup: &str) -> Harness {
        let pg = TestPostgres::start().expect("postgres starts");
        if !setup.is_empty() {
            pg.psql(setup).expect("setup");
        }
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let loaded = TypeCatalog::load(&client).await.expect("catalog loads");
        Harness {
            pg,
            client,
            loaded,
            builtin: TypeCatalog::builtin(),
            checked: 0,
            failures: Vec::new(),
        }
    }

    /// Checks `literal` as a value of `ty`.
    async fn literal(&mut self, ty: &str, literal: &str) {
        self.check(
            &format!("{literal:?}::{ty}"),
            &format!("{}::{ty}", quote(literal)),
        )
        .await;
    }

    /// Checks every literal of `literals` as `ty`.
    async fn literals(&mut self, ty: &str, literals: &[&str]) {
        for literal in literals {
            self.literal(ty, literal).await;
        }
    }

    /// Checks the value of a SQL expression.
    async fn expr(&mut self, expr: &str) {
        self.check(expr, expr).await;
    }

    async fn check(&mut self, label: &str, expr: &str) {
        match compare(&self.client, &self.loaded, &self.builtin, expr).await {
            Ok(()) => self.checked += 1,
            Err(failure) => self.failures.push(format!("{label}: {failure}")),
        }
    }

    async fn execute(&self, sql: &str) {
        self.client.batch_execute(sql).await.expect(sql);
    }

    /// Fails with every mismatch, or reports how many values were checked.
    fn finish(self, name: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} {name} cases differ from to_jsonb:\n{}",
            self.failures.len(),
            self.failures.len() + self.checked,
            self.failures.join("\n")
        );
        println!("{name}: {} values render as to_jsonb does", self.checked);
        drop(self.pg);
    }
}

/// A text as an SQL string literal (`standard_conforming_strings` is on).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs `query`, whose columns are a value, its `to_jsonb` and its type OID, with the
/// simple query protocol: its results are the types' text output, as pgoutput sends
/// them. (A `::text` cast is not the same: `bool` gives `true`, `inet` keeps `/32`,
/// `bpchar` loses its padding.) `to_jsonb` is parsed as tokio-postgres would parse it:
/// with `serde_json`. Rows whose value is NULL are skipped.
async fn server_values(client: &Client, query: &str) -> Result<Vec<(String, Value, u32)>, String> {
    let messages = client
        .simple_query(query)
        .await
        .map_err(|err| format!("query failed: {err:?}"))?;
    let mut values = Vec::new();
    for message in messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let Some(text) = row.get(0) else { continue };
        let expected = row.get(1).expect("to_jsonb of a value");
        let expected: Value = serde_json::from_str(expected)
            .map_err(|err| format!("serde_json cannot read to_jsonb {expected:?}: {err}"))?;
        let oid = row.get(2).expect("a type").parse().expect("an OID");
        values.push((text.to_owned(), expected, oid));
    }
    Ok(values)
}

/// Renders the value of the SQL expression `expr` from its text output, with the loaded
/// catalog and (for a built-in type) `builtin()`, and compares with its `to_jsonb`.
async fn compare(
    client: &Client,
    loaded: &TypeCatalog,
    builtin: &TypeCatalog,
    expr: &str,
) -> Result<(), String> {
    let query = format!("select x, to_jsonb(x), pg_typeof(x)::oid from (select {expr} as x) s");
    let values = server_values(client, &query).await?;
    let [(text, expected, oid)] = values.as_slice() else {
        return Err(format!("expected one non-null value, got {values:?}"));
    };
    check(loaded, builtin, text, expected, *oid)
}

/// Compares the renderings of one value with its `to_jsonb`.
fn check(
    loaded: &TypeCatalog,
    builtin: &TypeCatalog,
    text: &str,
    expected: &Value,
    oid: u32,
) -> Result<(), String> {
    let rendered = loaded.render(oid, text);
    if &rendered != expected {
        return Err(format!(
            "text {text:?} (type {oid}): to_jsonb {expected}, rendered {rendered}"
        ));
    }
    if oid < FIRST_NORMAL_OID {
        let rendered = builtin.render(oid, text);
        if &rendered != expected {
            return Err(format!(
                "text {text:?} (type {oid}): to_jsonb {expected}, builtin() rendered {rendered}"
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_builtin_table_is_the_servers() {
    let harness = Harness::start("").await;
    let builtin = TypeCatalog::builtin();
    let rows = harness
        .client
        .query(
            "select oid, typname::text, typcategory::text, typelem, typdelim::text from pg_type where oid < 10000",
            &[],
        )
        .await
        .unwrap();
    let mut seen = 0;
    for row in rows {
        let oid: u32 = row.get(0);
        let Some(ty) = builtin.get(oid) else { continue };
        seen += 1;
        let server = PgType {
            oid,
            name: row.get(1),
            category: row.get::<_, String>(2).chars().next().unwrap(),
            element: row.get(3),
            delimiter: row.get::<_, String>(4).chars().next().unwrap(),
        };
        assert_eq!(ty, &server);
        assert_eq!(
            harness.loaded.get(oid),
            Some(&server),
            "load() reads the same"
        );
        assert_eq!(builtin.name(oid), server.name);
    }
    // Every entry of the table exists on the server (none was skipped above).
    let expected = [
        16u32, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 700, 701, 790, 1042, 1043, 1082, 1083,
    ]
    .into_iter()
    .chain([
        1114, 1184, 1186, 1266, 1560, 1562, 1700, 2950, 3802, 869, 650, 829, 600, 3614,
    ])
    .chain([
        1007, 1009, 1016, 1000, 1022, 1231, 2951, 3807, 199, 1185, 1115, 1182, 1015, 1005, 1021,
    ]);
    for oid in expected {
        assert!(builtin.get(oid).is_some(), "builtin() has {oid}");
    }
    let total = (1..10000).filter(|&oid| builtin.get(oid).is_some()).count();
    assert_eq!(seen, total, "every builtin() type exists on the server");
    assert_eq!(
        builtin
            .get(1007)
            .map(|t| (t.name.as_str(), t.category, t.element)),
        Some(("_int4", 'A', 23))
    );
    assert_eq!(builtin.name(123_456), "123456");
    println!("builtin(): {total} types match pg_type");
}

/// Literals of every built-in type, scalar and array.
const SCALARS: &[(&str, &[&str])] = &[
    ("bool", &["t", "f", "true", "no", "on", "0"]),
    ("int2", &["0", "1", "-1", "42", "32767", "-32768", " 7 "]),
    ("int4", &["0", "-1", "2147483647", "-2147483648", "123456"]),
    (
        "int8",
        &[
            "0",
            "1",
            "-1",
            "4294967296",
            "9223372036854775807",
            "-9223372036854775808",
        ],
    ),
    (
        "float4",
        &[
            "0",
            "-0",
            "1",
            "1.5",
            "0.1",
            "-2.5",
            "3.14159",
            "1e10",
            "16777217",
            "123456789",
            "3.4028235e38",
            "-3.4028235e38",
            "1.17549435e-38",
            "1e-45",
            "1.4e-45",
            "NaN",
            "Infinity",
            "-Infinity",
        ],
    ),
    (
        "float8",
        &[
            "0",
            "-0",
            "1",
            "0.1",
            "-0.5",
            "1.5e-10",
            "1e-5",
            "1e-4",
            "0.0001234",
            "123.456",
            "1e15",
            "1e16",
            "1e17",
            "1e20",
            "1e21",
            "1e22",
            "1e300",
            "-1e300",
            "9007199254740993",
            "12345678901234567890",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "NaN",
            "Infinity",
            "-Infinity",
        ],
    ),
    (
        "numeric",
        &[
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "1.0",
            "1.10",
            "100.000",
            "1.50e2",
            "1e3",
            "1E-3",
            "-0.5",
            "0.1",
            "3.141592653589793238462643383279",
            "123456789012345678901234567890",
            "-123456789012345678901234567890.123456789",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "0.000000000000000000001",
            "1e300",
            "-1e300",
            "1e-300",
            "1.7976931348623157e308",
            "1e-1000",
            "NaN",
            "Infinity",
            "-Infinity",
        ],
    ),
    ("numeric(10,3)", &["1.5", "-2", "0"]),
    ("money", &["0", "12.34", "-1", "1000000.5"]),
    (
        "text",
        &[
            "",
            "hello",
            "with \"quotes\"",
            r"back\slash",
            "unicode é 😀 ✓",
            "new\nline\ttab\rreturn",
            "NULL",
            "null",
            "  spaces  ",
            "{1,2}",
            "(a,b)",
            "\u{1}\u{7f}\u{a0}",
            "'single'",
        ],
    ),
    ("varchar", &["", "abc", "a,b"]),
    ("varchar(5)", &["abc"]),
    ("bpchar", &["abc", "a  "]),
    ("char(5)", &["ab", ""]),
    ("name", &["pg_class", "Mixed Case"]),
    ("\"char\"", &["a", "", "Z"]),
    (
        "uuid",
        &[
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "00000000-0000-0000-0000-000000000000",
        ],
    ),
    ("bytea", &[r"\x", r"\x0102ff", "abc", r"\000", r"a\\b"]),
    ("xml", &["<a>b</a>", "text only"]),
    (
        "json",
        &[
            r#"{"a": 1e2, "b": [1.0, -0, 1E-2, 123456789012345678901234567890], "a": 2}"#,
            "[]",
            "{}",
            "null",
            "true",
            "false",
            "0",
            "-0",
            "-0.0",
            "1.50",
            "1e2",
            "1E+2",
            "0.1e-3",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            r#""str""#,
            r#"  { "x" : "y" ,"x":"z" }  "#,
            r#""\u00e9\ud83d\ude00\n\"\\\/""#,
            r#"{"nested": {"deep": [[[]]], "k": {"": null}}}"#,
            r#"[1, "a", null, true, false, {"k": []}, 1e-7, 2.5e+3]"#,
            r#"{"b": 1, "a": 2, "aa": 3, "": 4}"#,
        ],
    ),
    (
        "jsonb",
        &[
            r#"{"a": 1e2, "b": [1.0, -0, 1E-2, 123456789012345678901234567890], "a": 2}"#,
            "[]",
            "{}",
            "null",
            "true",
            "-0",
            "1.50",
            "1e2",
            "0.1e-3",
            r#""str""#,
            r#""\u00e9\ud83d\ude00\n\"\\\/""#,
            r#"{"nested": {"deep": [[[]]], "k": {"": null}}}"#,
            r#"[1, "a", null, true, false, {"k": []}, 1e-7, 2.5e+3]"#,
        ],
    ),
    (
        "date",
        &[
            "2026-01-02",
            "1999-12-31",
            "infinity",
            "-infinity",
            "0044-03-15 BC",
            "4713-01-01 BC",
            "10000-01-01",
            "5874897-12-31",
        ],
    ),
    (
        "time",
        &[
            "00:00",
            "23:59:59.999999",
            "24:00:00",
            "12:34:56.5",
            "allballs",
        ],
    ),
    ("time(2)", &["12:34:56.789"]),
    (
        "timetz",
        &[
            "03:04:05+05:30",
            "03:04:05-08",
            "03:04:05+00",
            "03:04:05.123456-03:30:15",
            "00:00+14",
        ],
    ),
    (
        "timestamp",
        &[
            "2026-01-02 03:04:05.678",
            "2026-01-02 03:04:05",
            "2026-01-02T03:04:05.000001",
            "2000-01-01 00:00:00.000001",
            "1970-01-01",
            "infinity",
            "-infinity",
            "0044-03-15 12:00 BC",
            "4713-11-24 00:00 BC",
            "10000-01-01 01:02",
            "294276-12-31 23:59:59.999999",
        ],
    ),
    ("timestamp(0)", &["2026-01-02 03:04:05.678"]),
    (
        "interval",
        &[
            "1 day 2 hours",
            "-1 year 2 mons",
            "00:00:00.000001",
            "1000000 hours",
            "P1Y2M3DT4H5M6S",
            "1 day ago",
            "0",
            "178000000 years",
        ],
    ),
    ("bit(3)", &["101"]),
    ("varbit", &["", "1010"]),
    (
        "inet",
        &["192.168.0.1", "192.168.0.0/24", "::1", "2001:db8::1/64"],
    ),
    ("cidr", &["10.0.0.0/8", "2001:db8::/32"]),
    ("macaddr", &["08:00:2b:01:02:03"]),
    ("macaddr8", &["08:00:2b:01:02:03:04:05"]),
    ("point", &["(1,2)", "(1.5,-2e10)"]),
    ("line", &["{1,2,3}"]),
    ("lseg", &["[(0,0),(1,1)]"]),
    ("box", &["(1,1),(0,0)"]),
    ("path", &["[(0,0),(1,1),(2,0)]", "((0,0),(1,1))"]),
    ("polygon", &["((0,0),(1,1),(1,0))"]),
    ("circle", &["<(1,2),3>"]),
    ("tsvector", &["a fat cat", "'quoted word':1A"]),
    ("tsquery", &["fat & rat"]),
    ("int4range", &["[1,5)", "empty", "(,)"]),
    ("numrange", &["(1.5,2.5]"]),
    ("tstzrange", &["[2026-01-01,2026-02-01)"]),
    ("daterange", &["[2026-01-01,2026-02-01]"]),
    ("int4multirange", &["{[1,3),[5,7)}", "{}"]),
    ("oid", &["0", "26", "4294967295"]),
    ("regclass", &["pg_class"]),
    ("regtype", &["int4", "timestamp with time zone"]),
    ("regproc", &["now"]),
    ("regnamespace", &["pg_catalog"]),
    ("regrole", &["postgres"]),
    ("regconfig", &["english"]),
    ("pg_lsn", &["16/B374D848", "0/0"]),
    ("xid8", &["123"]),
    ("xid", &["5"]),
    ("cid", &["3"]),
    ("tid", &["(0,1)"]),
    ("txid_snapshot", &["10:20:10,14,15"]),
    ("aclitem", &["postgres=arwdDxt/postgres"]),
    ("jsonpath", &["$.a[*] ? (@ > 1)"]),
    ("refcursor", &["c"]),
];

/// Array literals of built-in types.
const ARRAYS: &[(&str, &[&str])] = &[
    (
        "int4[]",
        &[
            "{}",
            "{1,2,3}",
            "{1,NULL,3}",
            "{NULL}",
            "{{1,2},{3,4}}",
            "{{NULL,2},{3,NULL}}",
            "[0:1]={1,2}",
            "[-5:-4][2:3]={{1,2},{3,4}}",
            "{{{1}},{{2}}}",
            "{{{{{{1,2}}}}}}",
            "{ 1 , 2 }",
        ],
    ),
    ("int8[]", &["{9223372036854775807,-9223372036854775808}"]),
    ("int2[]", &["{1,-1}"]),
    (
        "float4[]",
        &["{NaN,Infinity,-Infinity,1.5,-0,3.4028235e38}"],
    ),
    ("float8[]", &["{1e20,1e-20,NaN,-0,0.1}"]),
    ("numeric[]", &["{1.0,NaN,1e3,Infinity,-Infinity,1.10}"]),
    ("bool[]", &["{t,f,NULL}"]),
    (
        "text[]",
        &[
            r#"{"",a,"NULL",NULL,null,"a,b","a\"b","a\\b","{x}"," lead","trail ","é 😀",nUlL}"#,
            "{{a,b},{c,d}}",
            "{\"\t\",\"\n\"}",
            "{\u{a0}x}",
            r#"{"(a,b)", "{\"x\"}"}"#,
        ],
    ),
    ("varchar[]", &["{a,b}"]),
    ("char(3)[]", &["{a,bb}"]),
    ("name[]", &["{a,b}"]),
    ("\"char\"[]", &["{a,b}"]),
    ("uuid[]", &["{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}"]),
    (
        "json[]",
        &[
            r#"{"{\"a\": 1e2}","[1,2]","null",NULL,"\"s\"","-0"}"#,
            r#"{{"{}","[]"},{"1.0","true"}}"#,
        ],
    ),
    (
        "jsonb[]",
        &[r#"{"{\"a\": 1e2, \"b\": [1.50]}","[1,2]","null",NULL}"#],
    ),
    (
        "timestamptz[]",
        &[r#"{"2026-01-02 03:04:05+05:30",infinity,-infinity,NULL,"0044-03-15 12:00:00+00 BC"}"#],
    ),
    (
        "timestamp[]",
        &[r#"{"2026-01-02 03:04:05.678",infinity,NULL,"0044-03-15 12:00 BC"}"#],
    ),
    ("date[]", &["{2026-01-02,infinity,NULL}"]),
    ("time[]", &["{03:04:05,NULL}"]),
    ("timetz[]", &["{03:04:05+05:30,03:04:05-08}"]),
    ("interval[]", &[r#"{"1 day","-00:00:01"}"#]),
    ("bytea[]", &[r#"{"\\x0102",NULL,"\\x"}"#]),
    ("box[]", &["{(1,1),(0,0);(2,2),(1,1)}"]),
    ("point[]", &[r#"{"(1,2)","(3,4)"}"#]),
    ("inet[]", &["{192.168.0.1,::1}"]),
    ("money[]", &["{1.5,-2}"]),
    ("bit(2)[]", &["{10,01}"]),
    ("tsvector[]", &[r#"{"a b","c"}"#]),
    ("int4range[]", &[r#"{"[1,5)",empty}"#]),
    ("oid[]", &["{1,2}"]),
    ("regclass[]", &["{pg_class,pg_type}"]),
    ("xml[]", &["{<a/>}"]),
    ("int2vector", &["1 2 3", "", "5"]),
    ("oidvector", &["23 25", ""]),
    ("int2vector[]", &[r#"{"1 2","3"}"#]),
    ("oidvector[]", &[r#"{"23 25",NULL}"#]),
];

#[tokio::test]
async fn builtin_types_render_as_to_jsonb() {
    let mut harness = Harness::start("").await;
    for (ty, literals) in SCALARS.iter().chain(ARRAYS) {
        harness.literals(ty, literals).await;
    }
    harness.expr("repeat('long text, ', 2000)").await;
    harness
        .expr("array_fill(7, array[3, 2], array[-1, 0])")
        .await;
    // timestamptz: the text and to_jsonb follow the session's zone; render only
    // reformats the text, so any zone must work.
    let stamps = [
        "2026-01-02 03:04:05.678+00",
        "2026-07-02 03:04:05.5",
        "2026-01-02 03:04:05+05:30",
        "2026-01-02 03:04:05-08",
        "1900-01-01 12:00",
        "1850-06-01 00:00:00.000001",
        "1972-01-01 00:00",
        "infinity",
        "-infinity",
        "0044-03-15 12:00 BC",
        "4713-11-24 00:00:00+00 BC",
        "294276-12-31 23:59:59.999999+00",
        "10000-01-01 01:02",
    ];
    for zone in ZONES {
        harness.execute(&format!("set time zone '{zone}'")).await;
        harness.literals("timestamptz", &stamps).await;
        harness.literals("timestamptz(1)", &stamps[..3]).await;
        harness
            .literals(
                "timestamptz[]",
                &[r#"{"2026-01-02 03:04:05","1900-01-01 12:00",infinity,NULL}"#],
            )
            .await;
        harness.literals("timetz", &["03:04:05"]).await;
    }
    harness.execute("reset time zone").await;
    harness.finish("built-in");
}

const USER_TYPES: &str = r#"
    create extension hstore;
    create extension citext;
    create type mood as enum ('sad', 'ok', 'happy', 'with space', 'comma,quote"', 'NULL');
    create domain posint as int check (value > 0);
    create domain nested_posint as posint;
    create domain short_text as varchar(10);
    create domain doc as jsonb;
    create domain intarr as int[];
    create domain stamp as timestamptz;
    create domain flag as bool;
    create domain mood_domain as mood;
    create domain money_d as numeric(12,2);
    create domain boxes as box;
    create type pair as (a int, b text);
    create domain pair_d as pair;
    create type complex as (
        id bigint, tags text[], p pair, ps pair[], data jsonb, at timestamptz, m mood,
        n posint, f float8, ok bool, raw json, d doc, ints intarr, st stamp, h hstore
    );
    create type with_dropped as (a int, b text, c int);
    alter type with_dropped drop attribute b;
    create type "Quoted Type" as ("Weird Name" int, "select" text);
    create type wrapper as (inner_pair pair, c complex);
    create table things (id int primary key, name text, tags text[], at timestamp);
    create type empty as ();
    create type single as (a int);
    create table gone (a int);
    alter table gone drop column a;
"#;

#[tokio::test]
async fn user_types_render_as_to_jsonb() {
    let mut harness = Harness::start(USER_TYPES).await;
    harness
        .literals("mood", &["sad", "with space", "comma,quote\"", "NULL"])
        .await;
    harness
        .literals(
            "mood[]",
            &[
                r#"{sad,happy,"with space",NULL,"comma,quote\"","NULL"}"#,
                "{}",
            ],
        )
        .await;
    harness.literals("posint", &["5", "2147483647"]).await;
    harness.literals("nested_posint", &["7"]).await;
    harness
        .literals("posint[]", &["{1,2,NULL}", "{{1},{2}}"])
        .await;
    harness.literals("nested_posint[]", &["{3}"]).await;
    harness.literals("short_text", &["abc", ""]).await;
    harness
        .literals("doc", &[r#"{"a": 1e2, "b": [1.0]}"#, "[]"])
        .await;
    harness.literals("doc[]", &[r#"{"{\"a\": 1}",NULL}"#]).await;
    harness
        .literals("intarr", &["{1,2}", "[0:1]={1,2}", "{}"])
        .await;
    harness.literals("intarr[]", &[r#"{"{1,2}","{3}"}"#]).await;
    harness.literals("stamp", &["2026-01-02 03:04:05+02"]).await;
    harness.literals("flag", &["t", "f"]).await;
    harness.literals("mood_domain", &["ok"]).await;
    harness.literals("money_d", &["12.5", "-0"]).await;
    harness.literals("money_d[]", &["{1,2.5}"]).await;
    harness
        .literals("boxes[]", &["{(1,1),(0,0);(2,2),(1,1)}"])
        .await;
    harness
        .literals(
            "pair",
            &[
                "(1,hello)",
                "(,)",
                r#"(1,"")"#,
                r#"(2,"a,b")"#,
                r#"(3,"quote""s")"#,
                r#"(4,"paren)")"#,
                r#"(5,"back\\slash")"#,
                r#"(6,"  spaced  ")"#,
                "(7,NULL)",
                "(8,é😀)",
            ],
        )
        .await;
    harness
        .literals(
            "pair[]",
            &[r#"{"(1,a)","(2,)",NULL,"(3,\"x,\"\"y\"\"\")"}"#, "{}"],
        )
        .await;
    harness.literals("pair_d", &["(1,x)"]).await;
    harness.literals("pair_d[]", &[r#"{"(1,x)"}"#]).await;
    harness
        .expr(
            r#"row(1, array['a','b,c',null], row(1,'x')::pair, array[row(2,'y "z"')::pair, null],
                   '{"k": 1e2, "l": [1.0, -0]}'::jsonb, '2026-01-02 03:04:05+00'::timestamptz,
                   'happy'::mood, 5, 1e20, true, '{"raw": 1E1, "raw": 2}'::json, '{"d": 0.5}'::doc,
                   '{7,8}'::intarr, '2026-01-02 03:04:05.5+00'::stamp, 'a=>1, b=>NULL'::hstore)::complex"#,
        )
        .await;
    harness
        .expr("row(null, null, null, null, null, null, null, null, null, null, null, null, null, null, null)::complex")
        .await;
    harness
        .expr("row(row(1,'a'), row(2, '{x}', row(3, 'b'), '{}', '{}', 'infinity', 'ok', 1, 'NaN', false, '1', '2', '{}', '-infinity', '')::complex)::wrapper")
        .await;
    harness.literals("with_dropped", &["(1,3)", "(,)"]).await;
    harness.literals("\"Quoted Type\"", &["(1,x)"]).await;
    harness
        .literals(
            "things",
            &[r#"(1,"a thing","{x,y}","2026-01-02 03:04:05")"#],
        )
        .await;
    harness.literals("empty", &["()"]).await;
    harness.literals("empty[]", &[r#"{"()",NULL}"#]).await;
    harness.literals("single", &["()", "(5)"]).await;
    harness.literals("gone", &["()"]).await;
    harness.literals("things[]", &[r#"{"(1,a,{x},)"}"#]).await;
    harness
        .literals(
            "hstore",
            &[
                r#"a=>1, "b c"=>NULL, ""=>"", d=>"x\\\"y""#,
                "",
                r#""NULL"=>"NULL", n=>null"#,
                r#""é"=>"😀", "k,=>"=>"v,=>""#,
            ],
        )
        .await;
    harness
        .literals("hstore[]", &[r#"{"a=>1","b=>NULL",NULL}"#])
        .await;
    harness.literals("citext", &["AbC"]).await;
    harness.literals("citext[]", &["{AbC,NULL}"]).await;

    // A type made after the catalog was loaded: an enum and its array render as soon
    // as pgoutput's Type message (or a lookup) inserts them; a composite needs a reload
    // or insert_composite.
    harness
        .execute("create type later as enum ('x', 'y'); create type later_row as (a int, b later)")
        .await;
    let row = harness
        .client
        .query_one(
            "select t.oid, t.typarray, r.oid, r.typarray from pg_type t, pg_type r where t.typname = 'later' and r.typname = 'later_row'",
            &[],
        )
        .await
        .unwrap();
    let (enum_oid, enum_array, row_oid, row_array): (u32, u32, u32, u32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        harness.loaded.render(enum_array, "{x,y}"),
        json!("{x,y}"),
        "unknown type: its text"
    );
    assert_eq!(harness.loaded.name(enum_oid), enum_oid.to_string());
    let ty = |oid, name: &str, category, element| PgType {
        oid,
        name: name.into(),
        category,
        element,
        delimiter: ',',
    };
    harness.loaded.insert(ty(enum_oid, "later", 'E', 0));
    harness
        .loaded
        .insert(ty(enum_array, "_later", 'A', enum_oid));
    harness.loaded.insert(ty(row_oid, "later_row", 'C', 0));
    harness
        .loaded
        .insert(ty(row_array, "_later_row", 'A', row_oid));
    assert_eq!(harness.loaded.name(enum_oid), "later");
    harness.literals("later", &["x"]).await;
    harness.literals("later[]", &["{x,NULL,y}"]).await;
    assert_eq!(
        harness.loaded.render(row_oid, "(1,x)"),
        json!("(1,x)"),
        "composite without attributes: its text"
    );
    harness.loaded.insert_composite(
        ty(row_oid, "later_row", 'C', 0),
        vec![("a".into(), 23), ("b".into(), enum_oid)],
    );
    harness.literals("later_row", &["(1,x)", "(,)"]).await;
    harness.literals("later_row[]", &[r#"{"(1,y)"}"#]).await;
    harness.execute("create domain later_int as int8").await;
    let later_int: u32 = harness
        .client
        .query_one("select 'later_int'::regtype::oid", &[])
        .await
        .unwrap()
        .get(0);
    harness
        .loaded
        .insert_domain(ty(later_int, "later_int", 'N', 0), 20);
    harness.literals("later_int", &["-12"]).await;
    // A reload knows all of them.
    harness.loaded = TypeCatalog::load(&harness.client).await.unwrap();
    harness
        .execute("alter type later_row add attribute c text")
        .await;
    assert_eq!(
        harness.loaded.render(row_oid, "(1,x,z)"),
        json!("(1,x,z)"),
        "a composite that changed since the load: its text"
    );
    harness.loaded = TypeCatalog::load(&harness.client).await.unwrap();
    harness.literals("later_row", &["(1,x,z)"]).await;
    // load_type reads a type with everything its values are made of: here, from only
    // the built-in types, an array of a composite of a domain over an enum, an array
    // of a domain over an array, and another composite.
    harness
        .execute(
            "create type shade as enum ('dark', 'light');
             create domain shade_d as shade;
             create domain ints_d as int8[];
             create type inner_row as (s shade_d[], j jsonb);
             create type outer_row as (i inner_row, n ints_d, t timestamptz, d shade_d);",
        )
        .await;
    harness.loaded = TypeCatalog::builtin();
    for name in ["_outer_row", "_ints_d"] {
        let oid: u32 = harness
            .client
            .query_one("select $1::text::regtype::oid", &[&name])
            .await
            .unwrap()
            .get(0);
        let found = harness
            .loaded
            .load_type(&harness.client, oid)
            .await
            .unwrap();
        assert_eq!(found.map(|t| t.name.as_str()), Some(name));
    }
    assert!(
        harness
            .loaded
            .load_type(&harness.client, 4_000_000_000)
            .await
            .unwrap()
            .is_none()
    );
    harness
        .literals(
            "outer_row[]",
            &[r#"{"(\"(\"\"{dark,NULL}\"\",\"\"{\"\"\"\"a\"\"\"\": 1e2}\"\")\",\"{1,2}\",\"2026-01-02 03:04:05+00\",light)",NULL}"#],
        )
        .await;
    harness.literals("ints_d[]", &[r#"{"{1,2}",NULL}"#]).await;
    harness
        .expr("row(row(array['dark']::shade_d[], '[]'), '{}', 'infinity', null)::outer_row")
        .await;
    harness.finish("user types");
}

/// Catalog relations whose columns hold values of many built-in types, including
/// `aclitem[]`, `int2vector`, `oidvector`, `pg_node_tree`, `"char"[]` and `text[]`.
const CATALOGS: &[&str] = &[
    "pg_type",
    "pg_class",
    "pg_attribute",
    "pg_proc",
    "pg_namespace",
    "pg_am",
    "pg_amop",
    "pg_operator",
    "pg_settings",
    "pg_roles",
    "pg_database",
    "pg_collation",
    "pg_constraint",
    "pg_index",
    "pg_aggregate",
    "pg_cast",
    "pg_description",
    "pg_ts_config",
    "pg_conversion",
    "pg_opclass",
    "pg_rewrite",
    "pg_language",
    "pg_tables",
    "pg_views",
    "pg_stat_activity",
    "pg_replication_slots",
];

/// Real values of many built-in types: every column of a set of catalogs.
#[tokio::test]
async fn catalog_values_render_as_to_jsonb() {
    let mut harness = Harness::start(
        "create table t (id int primary key, a text[] default '{x}'); grant select on t to public;
         create view v as select * from t where id > 1;",
    )
    .await;
    for catalog in CATALOGS {
        let columns = harness
            .client
            .query(
                "select a.attname::text from pg_attribute a join pg_type t on t.oid = a.atttypid
                 where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped and t.typtype <> 'p'
                 order by a.attnum",
                &[catalog],
            )
            .await
            .unwrap();
        for column in columns {
            let column: String = column.get(0);
            let query = format!(
                "select \"{column}\", to_jsonb(\"{column}\"), pg_typeof(\"{column}\")::oid
                 from {catalog} where \"{column}\" is not null order by \"{column}\"::text limit 40"
            );
            let values = server_values(&harness.client, &query).await.unwrap();
            for (text, expected, oid) in values {
                match check(&harness.loaded, &harness.builtin, &text, &expected, oid) {
                    Ok(()) => harness.checked += 1,
                    Err(failure) => harness
                        .failures
                        .push(format!("{catalog}.{column}: {failure}")),
                }
            }
        }
    }
    harness.finish("catalog values");
}

/// What the renderer does where PostgreSQL's answer is not a `serde_json` value, and with
/// text the server would never send.
#[tokio::test]
async fn limits_and_malformed_text() {
    let harness = Harness::start("").await;
    let catalog = &harness.loaded;
    // Numbers beyond f64: to_jsonb gives a number serde_json cannot hold (tokio-postgres
    // fails to decode it); render gives the numeric text as a string.
    for literal in [
        "1e400",
        "-2e308",
        "1e1000",
        "99999999999999999999999999999999999999e300",
    ] {
        let messages = harness
            .client
            .simple_query(&format!(
                "select x, to_jsonb(x) from (select {}::numeric as x) s",
                quote(literal)
            ))
            .await
            .unwrap();
        let Some(row) = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        }) else {
            panic!("a row")
        };
        let (text, jsonb_text) = (row.get(0).unwrap(), row.get(1).unwrap());
        assert!(
            serde_json::from_str::<Value>(jsonb_text).is_err(),
            "{literal} is beyond serde_json"
        );
        assert_eq!(
            catalog.render(1700, text),
            Value::String(jsonb_text.to_owned()),
            "{literal}"
        );
    }
    assert_eq!(
        catalog.render(114, "[1e400, 2]"),
        json!([format!("1{}", "0".repeat(400)), 2])
    );
    // Text the server never sends: the text as a string, never a panic.
    let malformed = [
        (16, "maybe"),
        (20, "12a"),
        (701, "1e"),
        (701, ""),
        (1700, "--1"),
        (1700, "1e99999"),
        (114, "{\"a\": }"),
        (3802, "[1, 2"),
        (3802, "nul"),
        (1007, "{1,2"),
        (1007, "1,2}"),
        (1007, "{1,\"2}"),
        (1007, "[0:1]"),
        (1009, "{a}}"),
        (1184, "garbage"),
        (1114, "2026-01-02"),
        (22, "1 x"),
    ];
    for (oid, text) in malformed {
        let rendered = catalog.render(oid, text);
        assert!(
            rendered.is_string() || rendered.is_array(),
            "{oid} {text:?} renders as {rendered}"
        );
    }
    assert_eq!(catalog.render(1007, "{1,2"), json!("{1,2"));
    assert_eq!(catalog.render(16, "maybe"), json!("maybe"));
    assert_eq!(
        catalog.render(4_000_000_000, "x"),
        json!("x"),
        "unknown OID"
    );
    assert_eq!(catalog.name(4_000_000_000), "4000000000");
    assert_eq!(
        TypeCatalog::default().render(23, "1"),
        json!(1),
        "built-in OIDs need no catalog entry"
    );
    assert_eq!(
        TypeCatalog::default().render(1007, "{1}"),
        json!("{1}"),
        "arrays need their type"
    );
    // JSON nested beyond the renderer's depth limit is given up on (as its text);
    // tokio-postgres (serde_json, limit 128) cannot decode that from the server either.
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    assert_eq!(catalog.render(3802, &deep), Value::String(deep.clone()));
    let shallow = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        catalog.render(3802, &shallow),
        serde_json::from_str::<Value>(&shallow).unwrap()
    );
}

/// A JSON document written with varied number spellings, for the property test.
fn json_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (any::<i32>(), 0u32..6, -20i32..20).prop_map(|(m, places, exp)| {
            let digits = m.unsigned_abs().to_string();
            let sign = if m < 0 { "-" } else { "" };
            let (whole, fraction) = digits.split_at(digits.len().saturating_sub(places as usize));
            let whole = if whole.is_empty() {
                "0"
            } else {
                whole.trim_start_matches('0')
            };
            let whole = if whole.is_empty() { "0" } else { whole };
            let mantissa = if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            };
            match exp {
                0 => format!("{sign}{mantissa}"),
                e if e % 2 == 0 => format!("{sign}{mantissa}e{e}"),
                e => format!("{sign}{mantissa}E+{e}").replace("+-", "-"),
            }
        }),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("-0".to_owned()),
        Just("-0.0".to_owned()),
    ];
    let leaf = prop_oneof![
        number,
        any::<String>().prop_map(|s| serde_json::to_string(&s.replace('\0', "")).unwrap()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(("[a-c]{0,2}", inner), 0..6).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(key, value)| {
                        format!("{}: {value}", serde_json::to_string(&key).unwrap())
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Quotes a text for an array literal (every element quoted, NULL bare).
fn array_literal(items: &[Option<String>]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|item| match item {
            None => "NULL".to_owned(),
            Some(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

fn text_without_nul() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace('\0', ""))
}

/// Random values of the types whose rendering does the most work.
#[test]
fn random_values_render_as_to_jsonb() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let harness = runtime.block_on(Harness::start(""));
    let checked = std::cell::Cell::new(0usize);
    // A case is a type, a literal, and the session time zone to read it in.
    let run = |name: &str, strategy: BoxedStrategy<(String, String, &'static str)>| {
        let mut runner = TestRunner::new(Config {
            // 256 cases each unless PROPTEST_CASES says otherwise.
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |(ty, literal, zone)| {
            let expr = format!("{}::{ty}", quote(&literal));
            runtime.block_on(async {
                harness.execute(&format!("set time zone '{zone}'")).await;
                compare(&harness.client, &harness.loaded, &harness.builtin, &expr)
                    .await
                    .map_err(|failure| {
                        TestCaseError::fail(format!("{literal:?}::{ty} in {zone}: {failure}"))
                    })
            })?;
            checked.set(checked.get() + 1);
            Ok(())
        });
        if let Err(err) = result {
            panic!("{name}: {err}");
        }
    };
    let with = |ty: &'static str| move |literal: String| (ty.to_owned(), literal, "UTC");
    run(
        "int8",
        any::<i64>()
            .prop_map(|n| n.to_string())
            .prop_map(with("int8"))
            .boxed(),
    );
    run(
        "int4",
        any::<i32>()
            .prop_map(|n| n.to_string())
            .prop_map(with("int4"))
            .boxed(),
    );
    run(
        "int2",
        any::<i16>()
            .prop_map(|n| n.to_string())
            .prop_map(with("int2"))
            .boxed(),
    );
    let float8 = any::<u64>().prop_map(|bits| {
        let f = f64::from_bits(bits);
        if f.is_nan() {
            "NaN".to_owned()
        } else if f.is_infinite() {
            format!("{}Infinity", if f < 0.0 { "-" } else { "" })
        } else {
            format!("{f:e}")
        }
    });
    run("float8", float8.prop_map(with("float8")).boxed());
    run(
        "float8 (ordinary)",
        (-1e25f64..1e25)
            .prop_map(|f| f.to_string())
            .prop_map(with("float8"))
            .boxed(),
    );
    let float4 = any::<u32>().prop_map(|bits| {
        let f = f32::from_bits(bits);
        if f.is_nan() {
            "NaN".to_owned()
        } else if f.is_infinite() {
            format!("{}Infinity", if f < 0.0 { "-" } else { "" })
        } else {
            format!("{f:e}")
        }
    });
    run("float4", float4.prop_map(with("float4")).boxed());
    let numeric = ("-?[0-9]{1,40}", "[0-9]{0,30}", prop::option::of(-60i32..60)).prop_map(
        |(whole, fraction, exp)| {
            let mut literal = whole;
            if !fraction.is_empty() {
                literal = format!("{literal}.{fraction}");
            }
            if let Some(exp) = exp {
                literal = format!("{literal}e{exp}");
            }
            literal
        },
    );
    run("numeric", numeric.prop_map(with("numeric")).boxed());
    run("text", text_without_nul().prop_map(with("text")).boxed());
    let texts = prop::collection::vec(prop::option::of(text_without_nul()), 0..8);
    run(
        "text[]",
        texts
            .prop_map(|items| array_literal(&items))
            .prop_map(with("text[]"))
            .boxed(),
    );
    let grid = (1usize..4, 1usize..4).prop_flat_map(|(rows, columns)| {
        prop::collection::vec(
            prop::collection::vec(prop::option::of(any::<i64>()), columns),
            rows,
        )
    });
    let grid = grid.prop_map(|rows| {
        let rows: Vec<String> = rows
            .iter()
            .map(|row| {
                let items: Vec<String> = row
                    .iter()
                    .map(|n| n.map_or("NULL".to_owned(), |n| n.to_string()))
                    .collect();
                format!("{{{}}}", items.join(","))
            })
            .collect();
        format!("{{{}}}", rows.join(","))
    });
    run("int8[][]", grid.prop_map(with("int8[]")).boxed());
    run("json", json_text().prop_map(with("json")).boxed());
    run("jsonb", json_text().prop_map(with("jsonb")).boxed());
    let jsons = prop::collection::vec(prop::option::of(json_text()), 0..4);
    run(
        "jsonb[]",
        jsons
            .prop_map(|items| array_literal(&items))
            .prop_map(with("jsonb[]"))
            .boxed(),
    );
    // Years 4712 BC to 294275 AD: any offset keeps them within timestamptz's range.
    let stamp = (
        -4711i32..294276,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000,
        -15i32..15,
        0u32..4,
    );
    let stamp = stamp.prop_map(|(year, month, day, hour, minute, second, micros, offset_hours, quarter)| {
        let (year, era) = if year <= 0 { (1 - year, " BC") } else { (year, "") };
        let sign = if offset_hours < 0 { '-' } else { '+' };
        format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}{sign}{:02}:{:02}{era}",
            offset_hours.unsigned_abs(),
            quarter * 15
        )
    });
    let zoned = (stamp, prop::sample::select(ZONES))
        .prop_map(|(stamp, zone)| ("timestamptz".to_owned(), stamp, zone));
    run("timestamptz", zoned.boxed());
    println!(
        "properties: {} random values render as to_jsonb does",
        checked.get()
    );
    drop(harness);
}

/// The rules of the module documentation, as examples (each also checked against the
/// server above): what `to_jsonb` does that one might not expect.
#[test]
fn documented_examples() {
    let mut catalog = TypeCatalog::builtin();
    let examples = [
        (16, "t", json!(true)),
        (701, "1e+15", json!(1_000_000_000_000_000_u64)),
        (701, "1e+20", json!(1e20)),
        (701, "-0", json!(0)),
        (701, "1.5e-10", json!(1.5e-10)),
        (701, "NaN", json!("NaN")),
        (700, "-Infinity", json!("-Infinity")),
        (1700, "1.0", json!(1.0)),
        (1700, "Infinity", json!("Infinity")),
        (
            1700,
            "18446744073709551616",
            json!(18_446_744_073_709_551_616_f64),
        ),
        (790, "$12.34", json!("$12.34")),
        (26, "26", json!("26")),
        (
            1114,
            "2026-01-02 03:04:05.678",
            json!("2026-01-02T03:04:05.678"),
        ),
        (
            1114,
            "0044-03-15 12:00:00 BC",
            json!("0044-03-15T12:00:00 BC"),
        ),
        (
            1184,
            "2026-01-02 03:04:05.678+00",
            json!("2026-01-02T03:04:05.678+00:00"),
        ),
        (
            1184,
            "2026-01-02 03:04:05+05:30",
            json!("2026-01-02T03:04:05+05:30"),
        ),
        (
            1184,
            "2026-01-02 03:04:05-08",
            json!("2026-01-02T03:04:05-08:00"),
        ),
        (
            1184,
            "1900-01-01 12:00:00+00:19:32",
            json!("1900-01-01T12:00:00+00:19:32"),
        ),
        (1184, "-infinity", json!("-infinity")),
        (1082, "0044-03-15 BC", json!("0044-03-15 BC")),
        (1083, "03:04:05", json!("03:04:05")),
        (1266, "03:04:05-08", json!("03:04:05-08")),
        (1186, "1 day 02:00:00", json!("1 day 02:00:00")),
        (17, "\\x0102", json!("\\x0102")),
        (
            114,
            r#"{"a": 1e2, "a": 1.50, "b": -0}"#,
            json!({"a": 1.5, "b": 0}),
        ),
        (1007, "[0:1]={1,2}", json!([1, 2])),
        (1007, "{{1,NULL},{3,4}}", json!([[1, null], [3, 4]])),
        (1007, "{}", json!([])),
        (
            1009,
            r#"{"a,b",NULL,"NULL","q\"s"}"#,
            json!(["a,b", null, "NULL", "q\"s"]),
        ),
        (
            1185,
            r#"{"2026-01-02 03:04:05+00"}"#,
            json!(["2026-01-02T03:04:05+00:00"]),
        ),
        (22, "1 2", json!([1, 2])),
        (600, "(1,2)", json!("(1,2)")),
        (
            1020,
            "{(1,1),(0,0);(2,2),(1,1)}",
            json!(["(1,1),(0,0)", "(2,2),(1,1)"]),
        ),
    ];
    for (oid, text, expected) in examples {
        assert_eq!(catalog.render(oid, text), expected, "{oid} {text:?}");
    }
    let pair = PgType {
        oid: 20_000,
        name: "pair".into(),
        category: 'C',
        element: 0,
        delimiter: ',',
    };
    catalog.insert_composite(pair, vec![("a".into(), 23), ("b".into(), 25)]);
    assert_eq!(
        catalog.render(20_000, "(1,hello)"),
        json!({"a": 1, "b": "hello"})
    );
    assert_eq!(
        catalog.render(20_000, r#"(,"")"#),
        json!({"a": null, "b": ""})
    );
    let domain = PgType {
        oid: 20_001,
        name: "posint".into(),
        category: 'N',
        element: 0,
        delimiter: ',',
    };
    catalog.insert_domain(domain, 23);
    assert_eq!(catalog.render(20_001, "5"), json!(5));
    assert_eq!(catalog.name(20_001), "posint");
}
