//! `hstore_out` text: `"a"=>"1", "b"=>NULL`.

use serde_json::{Map, Value};

use super::cursor::Cursor;
use super::is_space;

/// Reads `hstore_out` text into the object its cast to `json` gives: keys to strings, or
/// `null` for an unquoted `NULL`. `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<Value> {
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

/// A key or value: double-quoted with backslash escapes, or unquoted up to a comma,
/// white space or (for a key) `=>`. Returns it and whether it was quoted; `None` for an
/// empty unquoted token or an unterminated quote.
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
