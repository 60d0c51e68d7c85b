//! The JSON writer of rendered changes: compact JSON with object keys in `jsonb` order,
//! measured as `jsonb`'s text output would be (which has a space after each `,` and
//! `:`), because Supabase's size limits count that text.

use std::fmt::Write as _;

use serde_json::Value;

/// The length of `{field,field,...}` for fields of these lengths.
pub(super) fn object_bytes(fields: &[usize]) -> usize {
    2 + fields.iter().sum::<usize>() + fields.len().saturating_sub(1)
}

/// `jsonb`'s order of object keys: shorter first, then bytewise.
pub(super) fn jsonb_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Writes `value` as compact JSON with object keys in `jsonb` order. Returns how many
/// spaces `jsonb`'s text output would add (one after each `,` and each `:`), so the
/// `jsonb` text length is the written length plus that.
pub(super) fn write_value(out: &mut String, value: &Value) -> usize {
    match value {
        Value::Null => {
            out.push_str("null");
            0
        }
        Value::Bool(true) => {
            out.push_str("true");
            0
        }
        Value::Bool(false) => {
            out.push_str("false");
            0
        }
        // serde_json writes a Number with its Display (itoa, ryu).
        Value::Number(number) => {
            write!(out, "{number}").expect("writing to a String cannot fail");
            0
        }
        Value::String(text) => {
            write_json_string(out, text);
            0
        }
        Value::Array(items) => {
            out.push('[');
            let mut spaces = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                spaces += write_value(out, item);
            }
            out.push(']');
            spaces
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| jsonb_key_order(a.0, b.0));
            out.push('{');
            let mut spaces = entries.len() + entries.len().saturating_sub(1);
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                spaces += write_value(out, item);
            }
            out.push('}');
            spaces
        }
    }
}

/// Writes a JSON string, escaping as PostgreSQL's `escape_json` (and `serde_json`) do:
/// `"`, `\`, the named control characters, and other control characters as `\u00xx`.
pub(super) fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `at` is a character boundary.
        out.push_str(&text[start..at]);
        if escape.is_empty() {
            write!(out, "\\u{byte:04x}").expect("writing to a String cannot fail");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_and_postgres_escape_them() {
        for text in [
            "",
            "plain",
            "q\"b\\s/",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f}",
            "é€😀 ü\u{2028}",
        ] {
            let mut out = String::new();
            write_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,4}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// The jsonb text length by the definition: pretty enough to have `jsonb`'s spaces.
    fn jsonb_text_len(value: &Value) -> usize {
        match value {
            Value::Array(items) => {
                2 + items.iter().map(jsonb_text_len).sum::<usize>()
                    + 2 * items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                2 + map
                    .iter()
                    .map(|(k, v)| serde_json::to_string(k).unwrap().len() + 2 + jsonb_text_len(v))
                    .sum::<usize>()
                    + 2 * map.len().saturating_sub(1)
            }
            scalar => serde_json::to_string(scalar).unwrap().len(),
        }
    }

    proptest! {
        #[test]
        fn values_are_written_as_json_that_reads_back(value in arbitrary_json()) {
            let mut out = String::new();
            let spaces = write_value(&mut out, &value);
            let back: Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(out.len(), serde_json::to_string(&value).unwrap().len());
            prop_assert_eq!(out.len() + spaces, jsonb_text_len(&value));
        }
    }
}
