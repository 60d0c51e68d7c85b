//! Elixir's `inspect/1` of strings and lists of strings, which Supabase's error texts
//! quote filters with.

use std::fmt::Write as _;

/// `inspect/1` of a list of strings (Elixir 1.19 defaults: `limit: 50`,
/// `printable_limit: 4096`, no line breaks).
pub(super) fn elixir_inspect_list(items: &[&str]) -> String {
    let mut out = String::from("[");
    let mut limit: usize = 50;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if limit == 0 {
            out.push_str("...");
            break;
        }
        let item_limit = limit - 1;
        limit = elixir_inspect_binary(item, item_limit, &mut out).unwrap_or(item_limit);
    }
    out.push(']');
    out
}

/// Appends `inspect(binary)` with the given `limit`; returns the limit left after a binary
/// shown as bytes (`<<…>>`), or `None` after a string.
pub(super) fn elixir_inspect_binary(text: &str, limit: usize, out: &mut String) -> Option<usize> {
    const PRINTABLE_LIMIT: usize = 4096;
    if elixir_printable(text, PRINTABLE_LIMIT) {
        out.push('"');
        let truncated = elixir_escape(text, PRINTABLE_LIMIT, out);
        out.push('"');
        if truncated {
            out.push_str(" <> ...");
        }
        return None;
    }
    out.push_str("<<");
    let bytes = text.as_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if i == limit {
            out.push_str("...");
            break;
        }
        let _ = write!(out, "{byte}");
    }
    out.push_str(">>");
    Some(limit.saturating_sub(bytes.len()))
}

/// `String.printable?(text, limit)`.
fn elixir_printable(text: &str, limit: usize) -> bool {
    text.chars().take(limit).all(|c| {
        matches!(c,
            '\u{20}'..='\u{7e}'
            | '\n' | '\r' | '\t' | '\u{0b}' | '\u{08}' | '\u{0c}' | '\u{1b}' | '\u{7f}' | '\u{07}'
            | '\u{a0}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fffd}'
            | '\u{10000}'..='\u{10ffff}')
    })
}

/// `Code.Identifier.escape(text, ?", limit)` appended to `out`; whether text was left
/// over.
fn elixir_escape(text: &str, limit: usize, out: &mut String) -> bool {
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if count == limit {
            return true;
        }
        count += 1;
        match c {
            '"' => out.push_str("\\\""),
            '#' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push_str("\\#{");
            }
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{7f}' => out.push_str("\\d"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{feff}'
            | '\u{2061}'..='\u{2064}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{fff9}'..='\u{fffc}'
            | '\u{200c}'
            | '\u{200d}'
            | '\u{034f}'
            | '\u{00a0}'
            | '\u{200b}'
            | '\u{2060}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{2000}'..='\u{200a}'
            | '\u{205f}' => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c if elixir_printable(c.encode_utf8(&mut [0; 4]), 1) => out.push(c),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\x{{{:04X}}}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\x{{{:06X}}}", u32::from(c));
            }
        }
    }
    false
}
