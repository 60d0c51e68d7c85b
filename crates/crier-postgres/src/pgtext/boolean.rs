//! `boolin`'s syntax.

use super::is_space;

/// Reads a `bool` as `boolin` does: surrounding white space, then (any case) `t`/`true`
/// and its prefixes, `yes` and its prefixes, `on`, `1`; `f`/`false` and its prefixes,
/// `no` and its prefixes, `of`/`off`, `0`.
pub(crate) fn parse(text: &str) -> Option<bool> {
    let text = text.trim_matches(is_space).to_ascii_lowercase();
    let is_prefix_of = |word: &str| !text.is_empty() && word.starts_with(text.as_str());
    match text.as_bytes().first()? {
        b't' if is_prefix_of("true") => Some(true),
        b'y' if is_prefix_of("yes") => Some(true),
        b'f' if is_prefix_of("false") => Some(false),
        b'n' if is_prefix_of("no") => Some(false),
        b'o' if text == "on" => Some(true),
        b'o' if text == "of" || text == "off" => Some(false),
        b'1' if text.len() == 1 => Some(true),
        b'0' if text.len() == 1 => Some(false),
        _ => None,
    }
}
