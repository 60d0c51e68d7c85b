//! Array texts: what `array_out` writes (read to render arrays), and the items of a
//! one-dimensional array literal as `array_in` reads them (read for filters' `in` lists
//! and array literals).
//!
//! They are two readers because they serve two purposes: rendering reads whatever the
//! server wrote, nested to any depth, and gives up quietly on anything else (the value is
//! then rendered as its text); filters read what a client wrote, one dimension only, and
//! say what is wrong with it.

use super::cursor::Cursor;
use super::{MAX_DEPTH, is_space};

/// An element of an array's text form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ArrayItem {
    /// An unquoted `NULL` (any case).
    Null,
    /// An element's text, unquoted and unescaped.
    Text(String),
    /// A nested list (the next dimension).
    List(Vec<ArrayItem>),
}

/// Reads `array_out` text: an optional dimensions decoration (`[0:1]=`, which `to_jsonb`
/// ignores), then nested `{...}` lists of elements separated by `delimiter`; elements
/// are `NULL`, unquoted, or double-quoted with backslash escapes. `None` for anything
/// else, or lists nested deeper than [`MAX_DEPTH`].
pub(crate) fn parse_output(text: &str, delimiter: char) -> Option<ArrayItem> {
    let mut cursor = Cursor::new(text);
    cursor.skip_whitespace();
    if cursor.peek() == Some('[') {
        let equals = cursor.rest().find('=')?;
        cursor.advance(equals + 1);
        cursor.skip_whitespace();
    }
    let list = output_list(&mut cursor, delimiter, 0)?;
    cursor.skip_whitespace();
    cursor.at_end().then_some(list)
}

/// One `{...}` list, at the cursor.
fn output_list(cursor: &mut Cursor<'_>, delimiter: char, depth: usize) -> Option<ArrayItem> {
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
            '{' => output_list(cursor, delimiter, depth + 1)?,
            '"' => ArrayItem::Text(quoted_element(cursor)?),
            _ => unquoted_element(cursor, delimiter)?,
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

/// A double-quoted element, at its opening quote.
fn quoted_element(cursor: &mut Cursor<'_>) -> Option<String> {
    cursor.next();
    let mut value = String::new();
    loop {
        match cursor.next()? {
            '"' => return Some(value),
            '\\' => value.push(cursor.next()?),
            c => value.push(c),
        }
    }
}

/// An unquoted element, up to the delimiter or the end of its list.
fn unquoted_element(cursor: &mut Cursor<'_>, delimiter: char) -> Option<ArrayItem> {
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
    Some(if !escaped && trimmed.eq_ignore_ascii_case("NULL") {
        ArrayItem::Null
    } else {
        ArrayItem::Text(trimmed.to_owned())
    })
}

/// The items of a one-dimensional array literal, given the text between its braces, as
/// `array_in` reads them: `None` for an unquoted `NULL` (any case). Items are separated
/// by commas; white space around an item is dropped; an item may be double-quoted,
/// wholly or in part; a backslash escapes the next character, in quotes or not. Only
/// white space is the empty list.
///
/// The error says what is wrong, for the client: an empty item, an unterminated quote, a
/// trailing backslash, or a brace outside quotes (a nested array, which is not read).
pub(crate) fn literal_items(inner: &str) -> Result<Vec<Option<String>>, String> {
    let mut items = Vec::new();
    if inner.chars().all(is_space) {
        return Ok(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        // Length of `item` up to its last character that is not trailing unquoted space.
        let mut kept = 0;
        // Whether part of the item was quoted or escaped (then it is never `NULL`, and
        // may be empty).
        let mut protected = false;
        let mut in_quotes = false;
        let mut at_delimiter = false;
        while let Some(c) = chars.next() {
            if in_quotes {
                match c {
                    '\\' => match chars.next() {
                        Some(escaped) => item.push(escaped),
                        None => return Err("unterminated double quote".to_owned()),
                    },
                    '"' => in_quotes = false,
                    c => item.push(c),
                }
                kept = item.len();
                continue;
            }
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => {
                        item.push(escaped);
                        kept = item.len();
                        protected = true;
                    }
                    None => return Err("it ends with a backslash".to_owned()),
                },
                '"' => {
                    in_quotes = true;
                    protected = true;
                    kept = item.len();
                }
                ',' => {
                    at_delimiter = true;
                    break;
                }
                '{' => return Err("nested lists (`{`) are not supported".to_owned()),
                '}' => return Err("unexpected `}` outside double quotes".to_owned()),
                c if is_space(c) => {
                    if kept > 0 || protected {
                        item.push(c);
                    }
                }
                c => {
                    item.push(c);
                    kept = item.len();
                }
            }
        }
        if in_quotes {
            return Err("unterminated double quote".to_owned());
        }
        item.truncate(kept);
        if item.is_empty() && !protected {
            return Err(
                "it has an empty value (quote it, `\"\"`, to mean the empty string)".to_owned(),
            );
        }
        if !protected && item.eq_ignore_ascii_case("null") {
            items.push(None);
        } else {
            items.push(Some(item));
        }
        if !at_delimiter {
            return Ok(items);
        }
    }
}
