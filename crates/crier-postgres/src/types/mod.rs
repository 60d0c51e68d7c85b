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
//!
//! # Parts
//!
//! - `builtin`: the built-in types, without asking the server ([`TypeCatalog::builtin`]).
//! - `load`: a database's types read from `pg_type` ([`TypeCatalog::load`],
//!   [`TypeCatalog::load_type`]).
//! - `to_jsonb`: the renderer, `to_jsonb`'s dispatch by type ([`TypeCatalog::render`]);
//!   the text formats it reads are in `crate::pgtext`.

use std::collections::HashMap;

mod builtin;
mod load;
mod to_jsonb;

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

impl TypeCatalog {
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
}
