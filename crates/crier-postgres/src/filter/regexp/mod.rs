//! `match` and `imatch`: PostgreSQL's regular expressions (the subset the
//! [`filter`](crate::filter) documentation lists), translated to the `regex` crate's
//! syntax and matched by it.

use std::fmt::Write as _;

mod translate;

/// The largest compiled form a `match`/`imatch` pattern may have, in bytes: the `regex`
/// crate's [`size_limit`](regex::RegexBuilder::size_limit). It bounds the memory one
/// subscription's pattern can take. Literal characters cost about 32 bytes each, `.` about
/// 1 KiB, and a Unicode class such as `[[:alpha:]]` or `\w` about 50 KiB, so `\w{30}` fits
/// and `\w{60}` does not.
const MAX_REGEX_SIZE: usize = 2 << 20;

/// The deepest nesting of parentheses in a regular expression. It also keeps the
/// translation well inside the `regex` crate's default nesting limit.
const MAX_REGEX_DEPTH: usize = 100;

/// PostgreSQL's largest repetition count (`RE_DUP_MAX`).
const MAX_REGEX_REPEAT: u32 = 255;

/// A compiled `match` (or `imatch`) pattern: the PostgreSQL pattern translated to the
/// `regex` crate's syntax (see [`translate_regex`]) and compiled by it.
#[derive(Debug, Clone)]
pub(super) struct Regex {
    regex: regex::Regex,
    pub(super) case_insensitive: bool,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.case_insensitive == other.case_insensitive
            && self.regex.as_str() == other.regex.as_str()
    }
}

impl Regex {
    pub(super) fn compile(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
        let (translated, case_insensitive) = translate_regex(pattern, case_insensitive)?;
        let regex = regex::RegexBuilder::new(&translated)
            .case_insensitive(case_insensitive)
            .dot_matches_new_line(true)
            .size_limit(MAX_REGEX_SIZE)
            .build()
            .map_err(|error| match error {
                regex::Error::CompiledTooBig(_) => "regular expression is too large".to_owned(),
                // The translation only writes syntax the crate accepts; this is a bug.
                other => format!("regular expression could not be compiled: {other}"),
            })?;
        Ok(Regex {
            regex,
            case_insensitive,
        })
    }

    /// Whether the pattern matches somewhere in `text`.
    pub(super) fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// The PostgreSQL advanced regular expression `pattern` (the subset the module documents)
/// in the `regex` crate's syntax, and whether it is case-insensitive (the embedded options
/// `(?i)` and `(?c)` change `case_insensitive`). Compile it with `.` matching newlines.
///
/// Nothing of the pattern reaches the crate's parser unread: every literal character is
/// written as itself if it is an ASCII letter or digit and as `\x{…}` otherwise, and every
/// operator, class and assertion is written from what it means in PostgreSQL. So syntax
/// the crate would read differently (`\b`, `\p{…}`, `(?i)` inside the pattern, `\<`, `&&`
/// in brackets, …) is either translated or rejected, never passed through.
pub(super) fn translate_regex(
    pattern: &str,
    case_insensitive: bool,
) -> Result<(String, bool), String> {
    let mut case_insensitive = case_insensitive;
    let literal = |text: &str| {
        let mut out = String::new();
        text.chars().for_each(|c| push_regex_literal(&mut out, c));
        out
    };
    if let Some(text) = pattern.strip_prefix("***=") {
        return Ok((literal(text), case_insensitive));
    }
    let mut body = pattern.strip_prefix("***:").unwrap_or(pattern);
    if let Some(rest) = body.strip_prefix("(?")
        && let Some((options, rest)) = rest.split_once(')')
        && options.chars().all(|c| c.is_ascii_alphabetic())
    {
        let mut quote = false;
        for option in options.chars() {
            match option {
                'i' => case_insensitive = true,
                'c' => case_insensitive = false,
                'q' => quote = true,
                // Tight syntax and non-newline-sensitive matching: the defaults.
                't' | 's' => {}
                other => return Err(format!("unsupported embedded option `{other}`")),
            }
        }
        if quote {
            return Ok((literal(rest), case_insensitive));
        }
        body = rest;
    }
    Ok((translate::translate(body)?, case_insensitive))
}

/// Writes `c` as a literal in the `regex` crate's syntax, inside or outside brackets.
fn push_regex_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        // Writing to a `String` cannot fail.
        let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
    }
}
