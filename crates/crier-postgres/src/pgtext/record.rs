//! `record_out` text: a composite value, `(a,"b c",,"")`.

use super::cursor::Cursor;

/// Reads `record_out` text: one field per attribute, `None` for NULL (nothing between
/// delimiters), quoted parts with `""` and backslash escapes. `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<Vec<Option<String>>> {
    let mut cursor = Cursor::new(text);
    cursor.skip_whitespace();
    if cursor.next() != Some('(') {
        return None;
    }
    let mut fields = Vec::new();
    loop {
        let field = match cursor.peek()? {
            ',' | ')' => None,
            _ => Some(field(&mut cursor)?),
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

/// A non-NULL field, up to the delimiter or the closing parenthesis outside quotes.
fn field(cursor: &mut Cursor<'_>) -> Option<String> {
    let mut value = String::new();
    let mut quoted = false;
    loop {
        match cursor.peek()? {
            ',' | ')' if !quoted => return Some(value),
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
}
