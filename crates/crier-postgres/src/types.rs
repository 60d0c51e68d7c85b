//! PostgreSQL types: the catalog of a database's types, and the rendering of a column
//! value's text form exactly as Supabase Realtime renders it.
//!
//! Supabase renders every column value as `to_jsonb(<text value>::<column type>)`
//! (PostgreSQL's own `to_jsonb`), except `bytea`, which it renders as the JSON string of
//! its text form; `to_jsonb` renders `bytea` that way too, so one rule covers both.
//! pgoutput delivers each value as its text output in the walsender session's settings.
//! Given that text, [`TypeCatalog::render`] produces, without a round trip to the
//! database, the JSON value `to_jsonb` would produce in that session. Only `DateStyle`
//! matters, and must be ISO (PostgreSQL's default): `to_jsonb` writes dates and
//! timestamps in the XSD style whatever the session's style, and the renderer derives
//! that from the ISO text. `TimeZone`, `extra_float_digits` and `IntervalStyle` change
//! the text and `to_jsonb` alike. It follows `to_jsonb`'s own dispatch
//! (`jsonb_categorize_type` in PostgreSQL's `jsonb.c`), which is by type OID after
//! looking through domains, not by type category:
//!
//! | type (after looking through domains) | JSON |
//! |---|---|
//! | `bool` | `true` / `false` |
//! | `int2`, `int4`, `int8`, `float4`, `float8`, `numeric` | a number, as `numeric_in` then `numeric_out` would write it (`1e+15` → `1000000000000000`, `-0` → `0`, `1.50e2` → `150`); `NaN`, `Infinity`, `-Infinity` → that string |
//! | `timestamp` | `"2026-01-02T03:04:05.678"` (ISO 8601 with `T`); `"infinity"`, `"-infinity"`; BC keeps its suffix: `"0044-03-15T12:00:00 BC"` |
//! | `timestamptz` | `"2026-01-02T03:04:05.678+00:00"`: the offset always has minutes (`+05:30`, `-08:00`), and seconds when it has any (`+00:19:32`, local mean time) |
//! | `json`, `jsonb` | the parsed value, numbers normalised as jsonb stores them (`1e2` → `100`, `-0` → `0`), duplicate keys keeping the last |
//! | arrays (`typcategory` `A` with an element type), `int2vector`, `oidvector` | a JSON array rendered element by element; `NULL` → `null`; multi-dimensional arrays nest; lower bounds (`[0:1]={1,2}`) are dropped; `{}` → `[]` |
//! | composite (row) types, when [`TypeCatalog::load`] read their attributes | an object of attribute name → rendered attribute value |
//! | `hstore` (the extension, by name) | an object of strings and `null`s (`to_jsonb` uses its cast to `json`) |
//! | everything else: text types, `uuid`, `date`, `time`, `timetz`, `interval`, `money`, `oid`, `reg*`, `bytea`, enums, ranges, geometric and network types, unknown OIDs | the text itself, as a JSON string |
//!
//! `date`, `time` and `timetz` are strings identical to their ISO text: `to_jsonb` formats
//! a `date` with the XSD style, which for a date equals the ISO one, and formats `time`
//! and `timetz` with their ordinary output functions.
//!
//! # Limits
//!
//! - Numbers are `serde_json` numbers (the workspace enables `float_roundtrip`, not
//!   `arbitrary_precision`), so a value is exactly what `serde_json` parses from the JSON
//!   text `to_jsonb` writes: an integer within `i64`/`u64` stays exact; anything else
//!   (a number with a fraction part, even `5.00`, or an integer beyond the `i64`/`u64`
//!   range) becomes the nearest `f64` (correctly rounded), so a `numeric`
//!   keeps only about 17 significant digits and its trailing zeros are lost when
//!   serialised again (`1.10` becomes `1.1`; `1.0` stays a float and serialises as
//!   `1.0`). A number whose magnitude is beyond `f64` (about `1.8e308`, possible only for
//!   `numeric`) cannot be a `serde_json` number: it is rendered as the JSON string of its
//!   `numeric` text (PostgreSQL would give a number).
//! - Types with a cast to `json` from an extension other than `hstore` (PostGIS's
//!   `geometry`, for instance) are rendered as their text; `to_jsonb` would apply the cast.
//! - A type created after the catalog was loaded renders as a string until the catalog
//!   knows it: [`TypeCatalog::load_type`] reads it with everything its values are made
//!   of (pgoutput's Type message gives only its name). An enum, or an array of a known
//!   type, only needs [`TypeCatalog::insert`]; a domain or a composite needs its base
//!   type or attributes ([`TypeCatalog::insert_domain`], [`TypeCatalog::insert_composite`]).
//!   A composite whose attributes changed since it was read renders as a string.
//! - Text that does not parse as its type's output (which the server never sends) is
//!   rendered as a JSON string, never an error.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Everything needed to render a type's values and name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    /// The type's OID.
    pub oid: u32,
    /// `pg_type.typname`, e.g. `int8`, `_int4`, `timestamptz`.
    pub name: String,
    /// `pg_type.typcategory`: `N` numeric, `B` bool, `S` string, `D` datetime, `A` array,
    /// `U` user, `E` enum, `C` composite, ... A domain has its base type's category.
    pub category: char,
    /// `pg_type.typelem`: the element type of an array, 0 otherwise.
    pub element: u32,
    /// `pg_type.typdelim`: the array element delimiter, `,` for every type but `box`.
    pub delimiter: char,
}

/// The types of one database, by OID, and the renderer of their values.
///
/// [`TypeCatalog::builtin`] knows PostgreSQL's built-in types; [`TypeCatalog::load`] reads
/// every type of a database, including enums, domains (with their base types) and
/// composite types (with their attributes), which rendering needs.
#[derive(Debug, Clone, Default)]
pub struct TypeCatalog {
    types: HashMap<u32, PgType>,
    /// Domain OID → `typbasetype` (which may itself be a domain).
    domains: HashMap<u32, u32>,
    /// Composite type OID → its live attributes in `attnum` order.
    composites: HashMap<u32, Vec<Attribute>>,
}

/// One attribute of a composite type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    name: String,
    type_oid: u32,
}

// The OIDs `to_jsonb` treats specially (fixed in PostgreSQL's pg_type.dat).
const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT2VECTOR: u32 = 22;
const INT4: u32 = 23;
const OID: u32 = 26;
const OIDVECTOR: u32 = 30;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;
/// OIDs from here on are assigned at run time (user and extension objects).
const FIRST_NORMAL_OID: u32 = 16384;

/// How deep composites, domains and arrays may nest (PostgreSQL allows 6 array
/// dimensions; composites cannot contain themselves), and how deep JSON may nest, before
/// a value is given up on and rendered as its text: a guard against stack exhaustion.
const MAX_DEPTH: usize = 256;

/// PostgreSQL's built-in types: every base, range and multirange type of `pg_catalog`
/// and their array types, as `(oid, typname, typcategory, typelem, typdelim)`. Generated
/// from PostgreSQL 15's `pg_type` (built-in OIDs are fixed across versions) and checked
/// against the server by the tests.
const BUILTIN: &[(u32, &str, char, u32, char)] = &[
    (16, "bool", 'B', 0, ','),
    (17, "bytea", 'U', 0, ','),
    (18, "char", 'Z', 0, ','),
    (19, "name", 'S', 18, ','),
    (20, "int8", 'N', 0, ','),
    (21, "int2", 'N', 0, ','),
    (23, "int4", 'N', 0, ','),
    (24, "regproc", 'N', 0, ','),
    (25, "text", 'S', 0, ','),
    (26, "oid", 'N', 0, ','),
    (27, "tid", 'U', 0, ','),
    (28, "xid", 'U', 0, ','),
    (29, "cid", 'U', 0, ','),
    (114, "json", 'U', 0, ','),
    (142, "xml", 'U', 0, ','),
    (194, "pg_node_tree", 'Z', 0, ','),
    (600, "point", 'G', 701, ','),
    (601, "lseg", 'G', 600, ','),
    (602, "path", 'G', 0, ','),
    (603, "box", 'G', 600, ';'),
    (604, "polygon", 'G', 0, ','),
    (628, "line", 'G', 701, ','),
    (650, "cidr", 'I', 0, ','),
    (700, "float4", 'N', 0, ','),
    (701, "float8", 'N', 0, ','),
    (718, "circle", 'G', 0, ','),
    (774, "macaddr8", 'U', 0, ','),
    (790, "money", 'N', 0, ','),
    (829, "macaddr", 'U', 0, ','),
    (869, "inet", 'I', 0, ','),
    (1033, "aclitem", 'U', 0, ','),
    (1042, "bpchar", 'S', 0, ','),
    (1043, "varchar", 'S', 0, ','),
    (1082, "date", 'D', 0, ','),
    (1083, "time", 'D', 0, ','),
    (1114, "timestamp", 'D', 0, ','),
    (1184, "timestamptz", 'D', 0, ','),
    (1186, "interval", 'T', 0, ','),
    (1266, "timetz", 'D', 0, ','),
    (1560, "bit", 'V', 0, ','),
    (1562, "varbit", 'V', 0, ','),
    (1700, "numeric", 'N', 0, ','),
    (1790, "refcursor", 'U', 0, ','),
    (2202, "regprocedure", 'N', 0, ','),
    (2203, "regoper", 'N', 0, ','),
    (2204, "regoperator", 'N', 0, ','),
    (2205, "regclass", 'N', 0, ','),
    (2206, "regtype", 'N', 0, ','),
    (2950, "uuid", 'U', 0, ','),
    (2970, "txid_snapshot", 'U', 0, ','),
    (3220, "pg_lsn", 'U', 0, ','),
    (3361, "pg_ndistinct", 'Z', 0, ','),
    (3402, "pg_dependencies", 'Z', 0, ','),
    (3614, "tsvector", 'U', 0, ','),
    (3615, "tsquery", 'U', 0, ','),
    (3642, "gtsvector", 'U', 0, ','),
    (3734, "regconfig", 'N', 0, ','),
    (3769, "regdictionary", 'N', 0, ','),
    (3802, "jsonb", 'U', 0, ','),
    (3904, "int4range", 'R', 0, ','),
    (3906, "numrange", 'R', 0, ','),
    (3908, "tsrange", 'R', 0, ','),
    (3910, "tstzrange", 'R', 0, ','),
    (3912, "daterange", 'R', 0, ','),
    (3926, "int8range", 'R', 0, ','),
    (4072, "jsonpath", 'U', 0, ','),
    (4089, "regnamespace", 'N', 0, ','),
    (4096, "regrole", 'N', 0, ','),
    (4191, "regcollation", 'N', 0, ','),
    (4451, "int4multirange", 'R', 0, ','),
    (4532, "nummultirange", 'R', 0, ','),
    (4533, "tsmultirange", 'R', 0, ','),
    (4534, "tstzmultirange", 'R', 0, ','),
    (4535, "datemultirange", 'R', 0, ','),
    (4536, "int8multirange", 'R', 0, ','),
    (4600, "pg_brin_bloom_summary", 'Z', 0, ','),
    (4601, "pg_brin_minmax_multi_summary", 'Z', 0, ','),
    (5017, "pg_mcv_list", 'Z', 0, ','),
    (5038, "pg_snapshot", 'U', 0, ','),
    (5069, "xid8", 'U', 0, ','),
    (22, "int2vector", 'A', 21, ','),
    (30, "oidvector", 'A', 26, ','),
    (143, "_xml", 'A', 142, ','),
    (199, "_json", 'A', 114, ','),
    (271, "_xid8", 'A', 5069, ','),
    (629, "_line", 'A', 628, ','),
    (651, "_cidr", 'A', 650, ','),
    (719, "_circle", 'A', 718, ','),
    (775, "_macaddr8", 'A', 774, ','),
    (791, "_money", 'A', 790, ','),
    (1000, "_bool", 'A', 16, ','),
    (1001, "_bytea", 'A', 17, ','),
    (1002, "_char", 'A', 18, ','),
    (1003, "_name", 'A', 19, ','),
    (1005, "_int2", 'A', 21, ','),
    (1006, "_int2vector", 'A', 22, ','),
    (1007, "_int4", 'A', 23, ','),
    (1008, "_regproc", 'A', 24, ','),
    (1009, "_text", 'A', 25, ','),
    (1010, "_tid", 'A', 27, ','),
    (1011, "_xid", 'A', 28, ','),
    (1012, "_cid", 'A', 29, ','),
    (1013, "_oidvector", 'A', 30, ','),
    (1014, "_bpchar", 'A', 1042, ','),
    (1015, "_varchar", 'A', 1043, ','),
    (1016, "_int8", 'A', 20, ','),
    (1017, "_point", 'A', 600, ','),
    (1018, "_lseg", 'A', 601, ','),
    (1019, "_path", 'A', 602, ','),
    (1020, "_box", 'A', 603, ';'),
    (1021, "_float4", 'A', 700, ','),
    (1022, "_float8", 'A', 701, ','),
    (1027, "_polygon", 'A', 604, ','),
    (1028, "_oid", 'A', 26, ','),
    (1034, "_aclitem", 'A', 1033, ','),
    (1040, "_macaddr", 'A', 829, ','),
    (1041, "_inet", 'A', 869, ','),
    (1115, "_timestamp", 'A', 1114, ','),
    (1182, "_date", 'A', 1082, ','),
    (1183, "_time", 'A', 1083, ','),
    (1185, "_timestamptz", 'A', 1184, ','),
    (1187, "_interval", 'A', 1186, ','),
    (1231, "_numeric", 'A', 1700, ','),
    (1270, "_timetz", 'A', 1266, ','),
    (1561, "_bit", 'A', 1560, ','),
    (1563, "_varbit", 'A', 1562, ','),
    (2201, "_refcursor", 'A', 1790, ','),
    (2207, "_regprocedure", 'A', 2202, ','),
    (2208, "_regoper", 'A', 2203, ','),
    (2209, "_regoperator", 'A', 2204, ','),
    (2210, "_regclass", 'A', 2205, ','),
    (2211, "_regtype", 'A', 2206, ','),
    (2949, "_txid_snapshot", 'A', 2970, ','),
    (2951, "_uuid", 'A', 2950, ','),
    (3221, "_pg_lsn", 'A', 3220, ','),
    (3643, "_tsvector", 'A', 3614, ','),
    (3644, "_gtsvector", 'A', 3642, ','),
    (3645, "_tsquery", 'A', 3615, ','),
    (3735, "_regconfig", 'A', 3734, ','),
    (3770, "_regdictionary", 'A', 3769, ','),
    (3807, "_jsonb", 'A', 3802, ','),
    (3905, "_int4range", 'A', 3904, ','),
    (3907, "_numrange", 'A', 3906, ','),
    (3909, "_tsrange", 'A', 3908, ','),
    (3911, "_tstzrange", 'A', 3910, ','),
    (3913, "_daterange", 'A', 3912, ','),
    (3927, "_int8range", 'A', 3926, ','),
    (4073, "_jsonpath", 'A', 4072, ','),
    (4090, "_regnamespace", 'A', 4089, ','),
    (4097, "_regrole", 'A', 4096, ','),
    (4192, "_regcollation", 'A', 4191, ','),
    (5039, "_pg_snapshot", 'A', 5038, ','),
    (6150, "_int4multirange", 'A', 4451, ','),
    (6151, "_nummultirange", 'A', 4532, ','),
    (6152, "_tsmultirange", 'A', 4533, ','),
    (6153, "_tstzmultirange", 'A', 4534, ','),
    (6155, "_datemultirange", 'A', 4535, ','),
    (6157, "_int8multirange", 'A', 4536, ','),
];

/// Reads types, with the base type of each domain and the kind of each (`typtype`).
const SELECT_TYPES: &str = "select t.oid, t.typname::text, t.typcategory::text, t.typelem, \
     t.typdelim::text, t.typtype::text, t.typbasetype \
     from pg_catalog.pg_type t";

/// Reads the live attributes of composite types, in order.
const SELECT_ATTRIBUTES: &str = "select t.oid, a.attname::text, a.atttypid \
     from pg_catalog.pg_type t \
     join pg_catalog.pg_attribute a on a.attrelid = t.typrelid \
     where t.typtype = 'c' and a.attnum > 0 and not a.attisdropped";

/// The OIDs of a type and of every type its values are made of: array elements, domain
/// base types and composite attributes' types, transitively.
const SELECT_DEPENDENCIES: &str = "with recursive needed(oid) as ( \
       select $1::oid \
       union \
       select part.oid from needed \
       join pg_catalog.pg_type t on t.oid = needed.oid \
       left join pg_catalog.pg_attribute a on t.typtype = 'c' and a.attrelid = t.typrelid \
         and a.attnum > 0 and not a.attisdropped \
       cross join lateral (values (t.typelem), (t.typbasetype), (a.atttypid)) part(oid) \
       where part.oid is not null and part.oid <> 0 \
     ) select oid from needed";

impl TypeCatalog {
    /// The built-in types: every base, range and multirange type of `pg_catalog` (bool 16,
    /// bytea 17, int8 20, text 25, json 114, float8 701, timestamptz 1184, numeric 1700,
    /// uuid 2950, jsonb 3802, ...) and the array type of each (`_int4` 1007, `_text`
    /// 1009, ...). Enough to render any column of a built-in type; enums, domains,
    /// composites and extension types need [`TypeCatalog::load`].
    pub fn builtin() -> TypeCatalog {
        let types = BUILTIN
            .iter()
            .map(|&(oid, name, category, element, delimiter)| {
                let ty = PgType {
                    oid,
                    name: name.to_owned(),
                    category,
                    element,
                    delimiter,
                };
                (oid, ty)
            })
            .collect();
        TypeCatalog {
            types,
            ..TypeCatalog::default()
        }
    }

    /// Every type of the database (built-in ones, enums, domains, composites, extensions'
    /// types), read from `pg_type`, with the base type of each domain and the attributes
    /// of each composite type (from `pg_attribute`), which rendering needs.
    pub async fn load(
        client: &tokio_postgres::Client,
    ) -> Result<TypeCatalog, tokio_postgres::Error> {
        let mut catalog = TypeCatalog::default();
        catalog.read(client, None).await?;
        Ok(catalog)
    }

    /// Reads one type from the database, with every type its values are made of (array
    /// elements, domain base types, composite attributes' types), adding or replacing
    /// them: for a type that appeared after [`TypeCatalog::load`] (pgoutput's Type message
    /// names it but says nothing of its kind). Returns the type, `None` if it does not
    /// exist.
    pub async fn load_type(
        &mut self,
        client: &tokio_postgres::Client,
        oid: u32,
    ) -> Result<Option<&PgType>, tokio_postgres::Error> {
        let needed: Vec<u32> = client
            .query(SELECT_DEPENDENCIES, &[&oid])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        self.read(client, Some(&needed)).await?;
        Ok(self.types.get(&oid))
    }

    /// Reads the types with these OIDs (all types for `None`), their domains' base
    /// types and their composites' attributes.
    async fn read(
        &mut self,
        client: &tokio_postgres::Client,
        oids: Option<&[u32]>,
    ) -> Result<(), tokio_postgres::Error> {
        let (types, attributes) = match oids {
            Some(oids) => {
                let types = format!("{SELECT_TYPES} where t.oid = any($1)");
                let attributes =
                    format!("{SELECT_ATTRIBUTES} and t.oid = any($1) order by t.oid, a.attnum");
                (
                    client.query(&types, &[&oids]).await?,
                    client.query(&attributes, &[&oids]).await?,
                )
            }
            None => {
                let attributes = format!("{SELECT_ATTRIBUTES} order by t.oid, a.attnum");
                (
                    client.query(SELECT_TYPES, &[]).await?,
                    client.query(&attributes, &[]).await?,
                )
            }
        };
        let mut composites: HashMap<u32, Vec<Attribute>> = HashMap::new();
        for row in types {
            let oid: u32 = row.get(0);
            let typtype: String = row.get(5);
            let base: u32 = row.get(6);
            self.types.insert(
                oid,
                PgType {
                    oid,
                    name: row.get(1),
                    category: first_char(&row.get::<_, String>(2)),
                    element: row.get(3),
                    delimiter: first_char(&row.get::<_, String>(4)),
                },
            );
            if typtype == "d" && base != 0 {
                self.domains.insert(oid, base);
            } else {
                self.domains.remove(&oid);
            }
            if typtype != "c" {
                self.composites.remove(&oid);
            } else {
                // A composite type may have no (live) attributes: no rows below.
                composites.insert(oid, Vec::new());
            }
        }
        for row in attributes {
            composites.entry(row.get(0)).or_default().push(Attribute {
                name: row.get(1),
                type_oid: row.get(2),
            });
        }
        // Replaced whole: a composite read again may have gained or lost attributes.
        self.composites.extend(composites);
        Ok(())
    }

    /// Adds or replaces one type (pgoutput sends a Type message for non-built-in types;
    /// the caller may also look one up). What the catalog knows of the OID as a domain or
    /// a composite type is kept.
    ///
    /// A Type message carries only the OID, schema and name, not the category and
    /// element: inserting what it says over a type the catalog already has would lose
    /// those (an array would render as a string). For an OID the catalog does not know,
    /// [`TypeCatalog::load_type`] reads everything rendering needs.
    pub fn insert(&mut self, ty: PgType) {
        self.types.insert(ty.oid, ty);
    }

    /// Adds or replaces a domain over `base` (a type OID, possibly another domain): its
    /// values render as `base`'s do.
    pub fn insert_domain(&mut self, ty: PgType, base: u32) {
        self.domains.insert(ty.oid, base);
        self.insert(ty);
    }

    /// Adds or replaces a composite type with its live attributes (name, type OID) in
    /// `attnum` order: its values render as objects.
    pub fn insert_composite(&mut self, ty: PgType, attributes: Vec<(String, u32)>) {
        let attributes = attributes
            .into_iter()
            .map(|(name, type_oid)| Attribute { name, type_oid })
            .collect();
        self.composites.insert(ty.oid, attributes);
        self.insert(ty);
    }

    /// The type with this OID.
    pub fn get(&self, oid: u32) -> Option<&PgType> {
        self.types.get(&oid)
    }

    /// The type name for the `columns` list (`int8`, `_text`, an enum's name...), or the
    /// OID as text when unknown.
    pub fn name(&self, oid: u32) -> String {
        match self.types.get(&oid) {
            Some(ty) => ty.name.clone(),
            None => oid.to_string(),
        }
    }

    /// The value as Supabase renders it: `to_jsonb(text::type)`, from the value's text
    /// output. Unknown OIDs, and text that does not parse as the type's output, render as
    /// a JSON string. See the [module documentation](self) for the rules and limits.
    pub fn render(&self, oid: u32, text: &str) -> Value {
        self.render_at(oid, text, 0)
    }

    /// The type a value of `oid` is rendered as: the OID after looking through domains.
    fn base_type(&self, mut oid: u32) -> u32 {
        // Bounded: a (corrupt) cycle of domains must not hang the renderer.
        for _ in 0..MAX_DEPTH {
            match self.domains.get(&oid) {
                Some(&base) => oid = base,
                None => break,
            }
        }
        oid
    }

    fn render_at(&self, oid: u32, text: &str, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::String(text.to_owned());
        }
        let oid = self.base_type(oid);
        let rendered = match oid {
            BOOL => match text {
                "t" => Some(Value::Bool(true)),
                "f" => Some(Value::Bool(false)),
                _ => None,
            },
            INT2 | INT4 | INT8 | FLOAT4 | FLOAT8 | NUMERIC => Some(render_number(text)),
            TIMESTAMP => Some(Value::String(iso_timestamp(text, false))),
            TIMESTAMPTZ => Some(Value::String(iso_timestamp(text, true))),
            JSON | JSONB => parse_json(text),
            // True arrays whose output is space-separated and without braces.
            INT2VECTOR | OIDVECTOR => {
                let element = if oid == INT2VECTOR { INT2 } else { OID };
                let items = text
                    .split_ascii_whitespace()
                    .map(|item| self.render_at(element, item, depth + 1))
                    .collect();
                Some(Value::Array(items))
            }
            _ => self.render_by_kind(oid, text, depth),
        };
        rendered.unwrap_or_else(|| Value::String(text.to_owned()))
    }

    /// Arrays, composites and hstore; `None` renders the text as a string.
    fn render_by_kind(&self, oid: u32, text: &str, depth: usize) -> Option<Value> {
        let ty = self.types.get(&oid)?;
        // `to_jsonb` treats a type as an array when it is a "true" array
        // (`typsubscript = array_subscript_handler`); every such type has category A
        // and an element, while `point` and `name`, with an element, have other
        // categories.
        if ty.category == 'A' && ty.element != 0 {
            let delimiter = self
                .types
                .get(&self.base_type(ty.element))
                .map_or(ty.delimiter, |element| element.delimiter);
            let items = parse_array(text, delimiter)?;
            return Some(self.render_array_item(ty.element, items, depth + 1));
        }
        if let Some(attributes) = self.composites.get(&oid) {
            let fields = match parse_record(text)? {
                // `()` is one NULL attribute, or no attributes at all.
                fields if attributes.is_empty() && fields == [None] => Vec::new(),
                fields => fields,
            };
            if fields.len() != attributes.len() {
                // The type changed since it was loaded.
                return None;
            }
            let mut object = Map::new();
            for (attribute, field) in attributes.iter().zip(fields) {
                let value = match field {
                    Some(field) => self.render_at(attribute.type_oid, &field, depth + 1),
                    None => Value::Null,
                };
                object.insert(attribute.name.clone(), value);
            }
            return Some(Value::Object(object));
        }
        // `to_jsonb` applies a non-built-in type's cast to json; hstore's is the one we
        // know (and the one Supabase projects are likely to have).
        if ty.name == "hstore" && oid >= FIRST_NORMAL_OID {
            return parse_hstore(text);
        }
        None
    }

    fn render_array_item(&self, element: u32, item: ArrayItem, depth: usize) -> Value {
        match item {
            ArrayItem::Null => Value::Null,
            ArrayItem::Text(text) => self.render_at(element, &text, depth),
            ArrayItem::List(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.render_array_item(element, item, depth))
                    .collect(),
            ),
        }
    }
}

/// PostgreSQL's `scanner_isspace`/`array_isspace`: ASCII whitespace only.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn first_char(text: &str) -> char {
    text.chars().next().unwrap_or('\0')
}

/// A number as `to_jsonb` gives it: the output text read back by `numeric_in`, so it is
/// written as `numeric_out` writes it; the texts `NaN`, `Infinity` and `-Infinity` stay
/// strings, and so does a number `serde_json` cannot hold (beyond `f64`'s range).
fn render_number(text: &str) -> Value {
    match normalize_numeric(text) {
        Some(canonical) => canonical_number(canonical),
        None => Value::String(text.to_owned()),
    }
}

/// The `serde_json` number `canonical` (`numeric_out` text) parses as, exactly as a
/// `serde_json` reader of `to_jsonb`'s output gets it; beyond `f64`'s range, the text.
fn canonical_number(canonical: String) -> Value {
    match serde_json::from_str::<serde_json::Number>(&canonical) {
        Ok(number) => Value::Number(number),
        Err(_) => Value::String(canonical),
    }
}

/// The text `numeric_out(numeric_in(text))` gives, for a finite decimal number such as
/// `float8` or `numeric` output: no exponent, no sign on zero, and as many fraction
/// digits as the input had after applying its exponent (`1.5e-10` →
/// `0.00000000015`, `1.50e2` → `150`, `-0` → `0`). `None` for anything else (`NaN`,
/// `Infinity`, an exponent `numeric_in` would reject).
fn normalize_numeric(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let exponent: i64 = match exponent {
        Some(exponent) => {
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            // numeric_in rejects exponents beyond ±1000 (NUMERIC_MAX_PRECISION).
            if digits.is_empty() || digits.len() > 4 || !all_digits(digits) {
                return None;
            }
            let value: i64 = exponent.parse().ok()?;
            if value.abs() > 1000 {
                return None;
            }
            value
        }
        None => 0,
    };
    // The digits, and where the decimal point falls among them after the exponent.
    let digits = [whole.as_bytes(), fraction.as_bytes()].concat();
    let point = whole.len() as i64 + exponent;
    let scale = (fraction.len() as i64 - exponent).max(0);
    let digit_at = |i: i64| -> u8 {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            b'0'
        }
    };
    let mut out = String::with_capacity(point.max(1) as usize + scale as usize + 3);
    if negative && digits.iter().any(|&d| d != b'0') {
        out.push('-');
    }
    let integer: Vec<u8> = (0..point)
        .map(digit_at)
        .skip_while(|&d| d == b'0')
        .collect();
    if integer.is_empty() {
        out.push('0');
    } else {
        out.extend(integer.into_iter().map(char::from));
    }
    if scale > 0 {
        out.push('.');
        out.extend((point..point + scale).map(|i| char::from(digit_at(i))));
    }
    Some(out)
}

/// A `timestamp`/`timestamptz` ISO text (`2026-01-02 03:04:05.678+05:30`) as `to_jsonb`
/// writes it (XSD style): `T` between date and time and, with a zone, an offset that
/// always has minutes (`+00` → `+00:00`; one with seconds keeps them). `infinity`,
/// `-infinity` and the ` BC` suffix are as in the text.
fn iso_timestamp(text: &str, with_zone: bool) -> String {
    let (body, era) = match text.strip_suffix(" BC") {
        Some(body) => (body, " BC"),
        None => (text, ""),
    };
    let Some((date, time)) = body.split_once(' ') else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str(date);
    out.push('T');
    out.push_str(time);
    if with_zone
        && let Some(sign) = time.rfind(['+', '-'])
        && !time[sign..].contains(':')
    {
        out.push_str(":00");
    }
    out.push_str(era);
    out
}

/// An element of an array's text form.
#[derive(Debug)]
enum ArrayItem {
    Null,
    Text(String),
    List(Vec<ArrayItem>),
}

/// Parses `array_out` text: an optional dimensions decoration (`[0:1]=`, which
/// `to_jsonb` ignores), then nested `{...}` lists of elements separated by `delimiter`;
/// elements are `NULL`, unquoted, or double-quoted with backslash escapes.
fn parse_array(text: &str, delimiter: char) -> Option<ArrayItem> {
    let mut cursor = Cursor::new(text);
    cursor.skip_whitespace();
    if cursor.peek() == Some('[') {
        let equals = cursor.rest().find('=')?;
        cursor.advance(equals + 1);
        cursor.skip_whitespace();
    }
    let list = parse_array_list(&mut cursor, delimiter, 0)?;
    cursor.skip_whitespace();
    cursor.at_end().then_some(list)
}

fn parse_array_list(cursor: &mut Cursor<'_>, delimiter: char, depth: usize) -> Option<ArrayItem> {
    if depth > MAX_DEPTH || cursor.next() != Some('{') {
        return None;
    }
    let mut items = Vec::new();
    cursor.skip_whitespace();
    if cursor.peek() == Some('}') {
        cursor.next();
        return Some(ArrayItem::List(items));
    }
    loop {
        cursor.skip_whitespace();
        let item = match cursor.peek()? {
            '{' => parse_array_list(cursor, delimiter, depth + 1)?,
            '"' => {
                cursor.next();
                let mut value = String::new();
                loop {
                    match cursor.next()? {
                        '"' => break,
                        '\\' => value.push(cursor.next()?),
                        c => value.push(c),
                    }
                }
                ArrayItem::Text(value)
            }
            _ => {
                let mut value = String::new();
                let mut escaped = false;
                loop {
                    match cursor.peek()? {
                        c if c == delimiter || c == '}' => break,
                        '"' | '{' => return None,
                        '\\' => {
                            cursor.next();
                            value.push(cursor.next()?);
                            escaped = true;
                        }
                        c => {
                            cursor.next();
                            value.push(c);
                        }
                    }
                }
                // Whitespace around an unquoted element is not part of it.
                let trimmed = value.trim_end_matches(is_space);
                if !escaped && trimmed.eq_ignore_ascii_case("NULL") {
                    ArrayItem::Null
                } else {
                    ArrayItem::Text(trimmed.to_owned())
                }
            }
        };
        items.push(item);
        cursor.skip_whitespace();
        match cursor.next()? {
            '}' => return Some(ArrayItem::List(items)),
            c if c == delimiter => {}
            _ => return None,
        }
    }
}

/// Parses `record_out` text, `(a,"b c",,"")`: one field per attribute, `None` for NULL
/// (nothing between delimiters), quoted parts with `""` and backslash escapes.
fn parse_record(text: &str) -> Option<Vec<Option<String>>> {
    let mut cursor = Cursor::new(text);
    cursor.skip_whitespace();
    if cursor.next() != Some('(') {
        return None;
    }
    let mut fields = Vec::new();
    loop {
        let field = match cursor.peek()? {
            ',' | ')' => None,
            _ => {
                let mut value = String::new();
                let mut quoted = false;
                loop {
                    match cursor.peek()? {
                        ',' | ')' if !quoted => break,
                        '"' if quoted && cursor.rest().starts_with("\"\"") => {
                            cursor.advance(2);
                            value.push('"');
                        }
                        '"' => {
                            cursor.next();
                            quoted = !quoted;
                        }
                        '\\' => {
                            cursor.next();
                            value.push(cursor.next()?);
                        }
                        c => {
                            cursor.next();
                            value.push(c);
                        }
                    }
                }
                Some(value)
            }
        };
        fields.push(field);
        match cursor.next()? {
            ',' => {}
            ')' => break,
            _ => return None,
        }
    }
    cursor.skip_whitespace();
    cursor.at_end().then_some(fields)
}

/// Parses `hstore_out` text, `"a"=>"1", "b"=>NULL`, into the object its cast to `json`
/// gives: keys to strings, or `null` for an unquoted `NULL`.
fn parse_hstore(text: &str) -> Option<Value> {
    fn token(cursor: &mut Cursor<'_>, stop_at_arrow: bool) -> Option<(String, bool)> {
        if cursor.peek() == Some('"') {
            cursor.next();
            let mut value = String::new();
            loop {
                match cursor.next()? {
                    '"' => return Some((value, true)),
                    '\\' => value.push(cursor.next()?),
                    c => value.push(c),
                }
            }
        }
        let mut value = String::new();
        while let Some(c) = cursor.peek() {
            if c == ',' || is_space(c) || (stop_at_arrow && cursor.rest().starts_with("=>")) {
                break;
            }
            cursor.next();
            if c == '\\' {
                value.push(cursor.next()?);
            } else {
                value.push(c);
            }
        }
        (!value.is_empty()).then_some((value, false))
    }
    let mut cursor = Cursor::new(text);
    let mut object = Map::new();
    loop {
        cursor.skip_whitespace();
        if cursor.at_end() {
            return Some(Value::Object(object));
        }
        let (key, _) = token(&mut cursor, true)?;
        cursor.skip_whitespace();
        if !cursor.rest().starts_with("=>") {
            return None;
        }
        cursor.advance(2);
        cursor.skip_whitespace();
        let (value, quoted) = token(&mut cursor, false)?;
        let value = if !quoted && value.eq_ignore_ascii_case("NULL") {
            Value::Null
        } else {
            Value::String(value)
        };
        object.insert(key, value);
        cursor.skip_whitespace();
        match cursor.next() {
            None => return Some(Value::Object(object)),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// Parses JSON text into the value `to_jsonb` gives for it: as `serde_json` would, except
/// that numbers are first normalised as jsonb's `numeric` stores them (`1e2` → `100`,
/// `1.0` stays `1.0`, `-0` → `0`), which changes which `serde_json` number they become.
/// Duplicate keys keep the last value, as jsonb does.
fn parse_json(text: &str) -> Option<Value> {
    let mut cursor = Cursor::new(text);
    let value = json_value(&mut cursor, 0)?;
    cursor.skip_whitespace();
    cursor.at_end().then_some(value)
}

fn json_value(cursor: &mut Cursor<'_>, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    cursor.skip_whitespace();
    match cursor.peek()? {
        '{' => {
            cursor.next();
            let mut object = Map::new();
            cursor.skip_whitespace();
            if cursor.peek() == Some('}') {
                cursor.next();
                return Some(Value::Object(object));
            }
            loop {
                cursor.skip_whitespace();
                let key = json_string(cursor)?;
                cursor.skip_whitespace();
                if cursor.next()? != ':' {
                    return None;
                }
                let value = json_value(cursor, depth + 1)?;
                object.insert(key, value);
                cursor.skip_whitespace();
                match cursor.next()? {
                    ',' => {}
                    '}' => return Some(Value::Object(object)),
                    _ => return None,
                }
            }
        }
        '[' => {
            cursor.next();
            let mut items = Vec::new();
            cursor.skip_whitespace();
            if cursor.peek() == Some(']') {
                cursor.next();
                return Some(Value::Array(items));
            }
            loop {
                items.push(json_value(cursor, depth + 1)?);
                cursor.skip_whitespace();
                match cursor.next()? {
                    ',' => {}
                    ']' => return Some(Value::Array(items)),
                    _ => return None,
                }
            }
        }
        '"' => json_string(cursor).map(Value::String),
        '-' | '0'..='9' => {
            let length = cursor
                .rest()
                .find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                .unwrap_or(cursor.rest().len());
            let canonical = normalize_numeric(&cursor.rest()[..length])?;
            cursor.advance(length);
            // jsonb holds numbers as numeric; beyond f64 they stay text (see the limits).
            Some(canonical_number(canonical))
        }
        _ => {
            for (word, value) in [
                ("true", Value::Bool(true)),
                ("false", Value::Bool(false)),
                ("null", Value::Null),
            ] {
                if cursor.rest().starts_with(word) {
                    cursor.advance(word.len());
                    return Some(value);
                }
            }
            None
        }
    }
}

/// A JSON string token, unescaped by `serde_json` (which handles `\uXXXX` pairs).
fn json_string(cursor: &mut Cursor<'_>) -> Option<String> {
    let rest = cursor.rest();
    if !rest.starts_with('"') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                let token = &rest[..=i];
                cursor.advance(i + 1);
                return serde_json::from_str(token).ok();
            }
            _ => i += 1,
        }
    }
    None
}

/// A position in a text being parsed.
struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, position: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.position += c.len_utf8();
        Some(c)
    }

    /// Moves on `bytes` bytes (always a whole number of characters here).
    fn advance(&mut self, bytes: usize) {
        self.position += bytes;
    }

    /// Skips ASCII whitespace, the only kind the array, record, hstore and JSON syntaxes
    /// ignore (an unquoted array element may begin with a no-break space).
    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start_matches(is_space).len();
    }

    fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }
}
