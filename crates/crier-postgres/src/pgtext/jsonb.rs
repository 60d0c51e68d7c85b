//! JSON text read into the value `to_jsonb` gives for it.

use serde_json::{Map, Value};

use super::MAX_DEPTH;
use super::cursor::Cursor;
use super::numeric;

/// Parses JSON text into the value `to_jsonb` gives for it: as `serde_json` would, except
/// that numbers are first normalised as jsonb's `numeric` stores them (`1e2` → `100`,
/// `1.0` stays `1.0`, `-0` → `0`), which changes which `serde_json` number they become.
/// Duplicate keys keep the last value, as jsonb does. `None` for text that is not JSON,
/// or nested deeper than [`MAX_DEPTH`].
pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut cursor = Cursor::new(text);
    let value = json_value(&mut cursor, 0)?;
    cursor.skip_whitespace();
    cursor.at_end().then_some(value)
}

/// The `serde_json` value of a number in `numeric_out`'s canonical text, exactly as a
/// `serde_json` reader of `to_jsonb`'s output gets it; beyond `f64`'s range, where
/// `serde_json` has no number, the text as a string.
pub(crate) fn canonical_number(canonical: String) -> Value {
    match serde_json::from_str::<serde_json::Number>(&canonical) {
        Ok(number) => Value::Number(number),
        Err(_) => Value::String(canonical),
    }
}

fn json_value(cursor: &mut Cursor<'_>, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    cursor.skip_whitespace();
    match cursor.peek()? {
        '{' => object(cursor, depth),
        '[' => array(cursor, depth),
        '"' => string(cursor).map(Value::String),
        '-' | '0'..='9' => {
            let length = cursor
                .rest()
                .find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                .unwrap_or(cursor.rest().len());
            let canonical = numeric::normalize(&cursor.rest()[..length])?;
            cursor.advance(length);
            // jsonb holds numbers as numeric; beyond f64 they stay text.
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

/// `{...}`, at its opening brace.
fn object(cursor: &mut Cursor<'_>, depth: usize) -> Option<Value> {
    cursor.next();
    let mut object = Map::new();
    cursor.skip_whitespace();
    if cursor.peek() == Some('}') {
        cursor.next();
        return Some(Value::Object(object));
    }
    loop {
        cursor.skip_whitespace();
        let key = string(cursor)?;
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

/// `[...]`, at its opening bracket.
fn array(cursor: &mut Cursor<'_>, depth: usize) -> Option<Value> {
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

/// A JSON string token, unescaped by `serde_json` (which handles `\uXXXX` pairs).
fn string(cursor: &mut Cursor<'_>) -> Option<String> {
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
