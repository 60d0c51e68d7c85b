//! The renderer: a value's text output to the JSON value `to_jsonb` gives, dispatched
//! by type as `to_jsonb` dispatches (see the [`types`](crate::types) documentation).

use serde_json::{Map, Value};

use super::TypeCatalog;
use crate::pgtext::array::{self, ArrayItem};
use crate::pgtext::{MAX_DEPTH, hstore, jsonb, numeric, record};

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

impl TypeCatalog {
    /// The value as Supabase renders it: `to_jsonb(text::type)`, from the value's text
    /// output. Unknown OIDs, and text that does not parse as the type's output, render as
    /// a JSON string. See the [module documentation](crate::types) for the rules and
    /// limits.
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
            JSON | JSONB => jsonb::parse(text),
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
            let items = array::parse_output(text, delimiter)?;
            return Some(self.render_array_item(ty.element, items, depth + 1));
        }
        if let Some(attributes) = self.composites.get(&oid) {
            let fields = match record::parse(text)? {
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
            return hstore::parse(text);
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

/// A number as `to_jsonb` gives it: the output text read back by `numeric_in`, so it is
/// written as `numeric_out` writes it; the texts `NaN`, `Infinity` and `-Infinity` stay
/// strings, and so does a number `serde_json` cannot hold (beyond `f64`'s range).
fn render_number(text: &str) -> Value {
    match numeric::normalize(text) {
        Some(canonical) => jsonb::canonical_number(canonical),
        None => Value::String(text.to_owned()),
    }
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
