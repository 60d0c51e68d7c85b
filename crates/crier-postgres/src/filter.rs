//! Supabase `postgres_changes` filters: `column=operator.value`, evaluated against a changed
//! row rendered as `to_jsonb` renders it.
//!
//! # Grammar
//!
//! ```text
//! filter    := ""                                  (empty or whitespace only: no condition)
//!            | condition ("," condition)*          (all conditions must hold: AND)
//! condition := column "=" ["not."] operator "." value
//! operator  := eq | neq | lt | lte | gt | gte | in | like | ilike | match | imatch | is | isdistinct
//! ```
//!
//! This is Supabase Realtime's own parser (`Subscriptions.parse_subscription_params`), which
//! follows PostgREST:
//!
//! - **Splitting on commas.** The filter is trimmed, then split on the commas that are
//!   outside parentheses and outside double quotes. A double quote opens a quoted run only
//!   right after `.`, `(` or a comma inside parentheses (that is, at the start of a value or
//!   of an `in` list item); inside it a backslash escapes the next character. A quote
//!   anywhere else is an ordinary character (`desc=eq.5" tall,id=gt.0` is two conditions).
//!   A `)` without a matching `(` is an ordinary character (`a=eq.x),b=eq.y` is two
//!   conditions); a `(` that is never closed, or a quote that is never closed, keeps every
//!   following comma inside the current condition.
//! - **Each condition** is trimmed; an empty one (`a=eq.1,,b=eq.2`, a leading or trailing
//!   comma) is an error. The column is everything before the first `=`, kept verbatim (no
//!   trimming; it must not be empty). After the `=`, an optional `not.` negates the
//!   condition, the operator runs up to the next `.` and is matched exactly (lowercase),
//!   and the value is everything after that `.` (it may contain `=`, `.` and `,`).
//! - **Values** (every operator but `in`): a value that is entirely one double-quoted string
//!   is unquoted, a backslash escaping the next character (`eq."a,b"` is `a,b`,
//!   `eq."say \"hi\""` is `say "hi"`, `eq.""` is the empty string). Anything else, including
//!   an unterminated quote (`eq."abc`) or text after the closing quote (`eq."ab"cd`), is
//!   taken verbatim, quotes included, as PostgREST does.
//! - **`in`** takes a parenthesised list, `in.(1,2,3)`, read as the PostgreSQL array literal
//!   `{1,2,3}` (Supabase passes it to PostgreSQL that way): items are separated by commas;
//!   whitespace around an item is dropped; an item may be double-quoted, wholly or in part,
//!   to contain commas, parentheses, braces or surrounding spaces (`in.("a,b",c)`); a
//!   backslash escapes the next character, in quotes or not; the unquoted item `NULL` (any
//!   case) is SQL `NULL`; `()` is the empty list. At most 100 items. An empty item, an
//!   unterminated quote, or a brace outside quotes (a nested array) is an error.
//! - **`is`** takes `null`, `true`, `false` or `unknown` (lowercase, as Supabase checks them).
//! - **`like` / `ilike`** take a SQL `LIKE` pattern: `%` matches any run of characters, `_`
//!   exactly one, and a backslash makes the next character literal (`50\%`); a pattern
//!   ending in a lone backslash is an error, as in PostgreSQL.
//! - **`match` / `imatch`** take a regular expression (see [Regular expressions]).
//!
//! # Matching
//!
//! A row passes when every condition holds. Each condition is evaluated with SQL's
//! three-valued logic: a comparison is *true*, *false* or *unknown*, `not.` turns true into
//! false and false into true but leaves unknown unknown, and only *true* passes. So a
//! condition on `NULL` passes only through `is`, `isdistinct` and `not.in.()`, with or
//! without `not.` (`id=not.eq.5` does not pass a row whose `id` is null), as in Supabase, which
//! evaluates `NOT (value op literal)` in the database. A condition on a column the row does
//! not have does not pass (Supabase fails closed the same way).
//!
//! PostgreSQL compares in the column's type, casting the literal to it. The row here is JSON,
//! so the literal is read according to the JSON type of the row's value:
//!
//! | row value | `eq`, `neq`, `in`, `isdistinct` | `lt`, `lte`, `gt`, `gte` |
//! |---|---|---|
//! | number | numerically, exactly (see below): `5` equals `5.0` and `5e0` | numerically |
//! | boolean | the literal read as PostgreSQL reads a `bool` (`true`, `t`, `yes`, `on`, `1`, their prefixes, any case; likewise for false) | `false` < `true` |
//! | string | exact byte equality, with the refinements below | byte order, with the refinements below |
//! | array | the literal as a PostgreSQL array literal (`{1,2}`) compared item by item, or as JSON (`[1,2]`) | unknown |
//! | object (`json`/`jsonb`) | the literal as JSON, compared as `jsonb` compares (key order does not matter, numbers numerically) | unknown |
//! | null | unknown (`NULL = x` is not true, and neither is `NULL <> x`) | unknown |
//!
//! A literal that cannot be read in the row value's type (`id=eq.abc` on a number) makes the
//! comparison unknown: Supabase rejects such a subscription when it is created (the cast of
//! the literal fails); here it never passes, with or without `not.`.
//!
//! - **Numbers** are compared as exact decimals: the row's number in the decimal form
//!   `serde_json` holds it (exact for integers within `i64`/`u64`; for other numbers the
//!   `f64` nearest the JSON text, written as the shortest decimal that reads back as it,
//!   which is also how PostgreSQL writes a `float8`) against the literal's exact decimal
//!   value, so `0.1` equals `0.1` and no precision is lost on the literal's side, whatever
//!   its length. The limit is the row's side: a `numeric` with more than about 17
//!   significant digits arrives here already rounded to an `f64`, and
//!   `0.10000000000000001` is then not equal to a row value of `0.1` although PostgreSQL's
//!   `float8` cast would call them equal. The literal follows `numeric_in`: optional
//!   surrounding whitespace and sign, digits with an optional fraction and exponent, and
//!   `NaN`, `Infinity`, `-Infinity`, `inf`; `NaN` sorts above every number and equals
//!   itself, as in PostgreSQL. The strings `NaN`, `Infinity` and `-Infinity` (how
//!   `to_jsonb` renders those `numeric`/`float` values) compare numerically with a numeric
//!   literal. Underscores and `0x` prefixes (PostgreSQL 16 integer input) are not read.
//! - **Strings** compare byte by byte, which is PostgreSQL's order under the `C` collation
//!   (a column with another collation sorts differently, e.g. case-insensitively or with
//!   accents folded; only equality is collation-independent for deterministic
//!   collations). Refinements for strings that are really other types:
//!   - a row string in `uuid` form (lowercase, hyphenated) against a literal `uuid_in`
//!     accepts (any case, braces, hyphens optional) compares as a UUID;
//!   - a row string in `to_jsonb`'s `date`, `timestamp` or `timestamptz` form
//!     (`2026-01-02`, `2026-01-02T03:04:05.678`, `2026-01-02T03:04:05.678+00:00`, with
//!     ` BC`, or `infinity`/`-infinity`) against a literal that reads as a date or a
//!     timestamp (`2026-01-02`, with an optional time after `T` or a space, optional
//!     seconds and fraction, and an optional `Z` or `±hh[[:]mm[:ss]]` offset) compares as
//!     PostgreSQL compares after casting the literal to the column's type: a date compares
//!     dates (the literal's time is dropped), a `timestamp` compares local times (the
//!     literal's offset is ignored), a `timestamptz` compares instants (a literal without
//!     an offset is read as UTC: PostgreSQL uses the session's `TimeZone`, which is UTC on
//!     Supabase).
//!
//!   A text column that happens to hold such strings is compared the same way.
//! - **`in`** is `= ANY(list)`: true if the row value equals an item, otherwise unknown if
//!   an item is `NULL` or cannot be read in the row's type (or the value is `NULL`),
//!   otherwise false. The empty list is false for every value, `NULL` included (SQL's `ANY`
//!   over nothing), so `not.in.()` passes every row that has the column.
//! - **`like` / `ilike` / `match` / `imatch`** apply to strings only (Supabase accepts them
//!   only on text-like columns); on any other non-null value they are unknown. `ilike`
//!   lowercases both sides character by character (Unicode lowercase; a non-`C` collation
//!   could fold differently). `imatch` matches a character in any of its cases by Unicode
//!   simple case folding, as PostgreSQL matches a character's upper and lower case (folding
//!   also relates a few characters PostgreSQL does not, such as `k` and the Kelvin sign).
//!   `_` and `.` match one character, not one byte.
//! - **`is`**: `is.null` is true for `NULL` only; `is.true` / `is.false` test a boolean;
//!   `is.unknown` is true for a null value (for a boolean, `IS UNKNOWN` is `IS NULL`).
//!   Supabase rejects `is.true`/`is.false`/`is.unknown` on a non-boolean column; here they
//!   are unknown on a non-boolean, non-null value.
//! - **`isdistinct`** is `IS DISTINCT FROM`: never unknown when the row value is `NULL` (a
//!   null value is distinct from every literal, which is never `NULL`); otherwise `not eq`.
//!
//! # Regular expressions
//!
//! `match` (`~`) and `imatch` (`~*`) search the row's string for the pattern anywhere (use
//! `^` and `$` to anchor). PostgreSQL's advanced regular expressions are supported without
//! back-references or lookaround: literals, `.` (any character, newlines included),
//! bracket expressions (`[a-z]`, `[^0-9]`, `[[:alpha:]]`, `[[.a.]]`, `[[=a=]]`, escapes
//! inside), `^` and `$` (the start and end of the string only, as `\A` and `\Z`: `$` does
//! not match before a final newline), groups `(…)` and `(?:…)`, alternation `|`, the
//! quantifiers `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` (counts up to 255) and their
//! non-greedy forms (which match the same strings), the escapes `\d \D \s \S \w \W`, the
//! word-boundary escapes `\m \M \y \Y`, `\A`, `\Z`, character escapes (`\n \t \r \f \v
//! \e \a`, `\b` for backspace, `\B` for a backslash, `\cX`, `\0`, `\xhh`, `\uhhhh`,
//! `\Uhhhhhhhh`, and `\` before any character that is not a letter or digit), the prefixes
//! `***=` (the rest is a literal string) and `***:`, and the embedded options `(?i)`,
//! `(?c)`, `(?q)`, `(?s)` and `(?t)` at the start of the pattern. Anything else (another
//! escape letter such as `\p` or `\k`, back-references, lookaround, `(?` options elsewhere
//! or options such as `(?x)` and `(?n)`) is rejected when the filter is parsed.
//!
//! The [`regex`] crate does the matching: the pattern is translated to its syntax, every
//! literal character escaped, so nothing in the pattern is read with the crate's meaning
//! rather than PostgreSQL's. `\d`, `[[:digit:]]`, `[[:xdigit:]]` and `[[:punct:]]` are
//! ASCII; the other classes are Unicode, each as Rust's `char` predicate of that name
//! (`\s` and `[[:space:]]` are white space, `[[:alpha:]]` alphabetic characters,
//! `[[:alnum:]]` alphabetic characters and numbers, `[[:upper:]]` uppercase ones, …;
//! `[[:graph:]]` is neither control nor white space, `[[:print:]]` not control). Word
//! characters (`\w`, `[[:word:]]` and the word-boundary escapes) are the crate's Unicode
//! word characters: letters, marks, decimal digits, connector punctuation such as `_`, and
//! join controls (PostgreSQL's are `[[:alnum:]_]`, which differs for combining marks,
//! non-decimal numbers such as `²`, and connectors other than `_`). Matching takes time
//! linear in the length of the string, so no pattern can take exponential time. A
//! pattern whose compiled form would exceed 2 MiB is rejected: literal characters are
//! cheap, but a Unicode class costs about 50 KiB, so `\w{30}` is accepted and `\w{60}`
//! is not; parentheses may nest 100 deep.
//!
//! # Errors for clients
//!
//! [`supabase_error_message`] gives the text Supabase sends, in a `system` message, for a
//! filter it cannot parse.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The most items an `in` list may have (Supabase: "too many values for `in` filter.
/// Maximum 100").
pub const MAX_IN_VALUES: usize = 100;

/// The operators, as Supabase lists them.
const OPERATOR_NAMES: [&str; 13] = [
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "like",
    "ilike",
    "is",
    "match",
    "imatch",
    "isdistinct",
];

/// A parsed filter: zero or more conditions, all of which must hold.
///
/// See the [module documentation](self) for the grammar and the semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

/// Why a filter does not parse. The [`Display`](std::fmt::Display) text is meant for the
/// client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Two commas in a row, or a leading or trailing comma.
    #[error("filter must not contain empty conditions (check for extra commas)")]
    EmptyCondition,
    /// A condition without `=`.
    #[error(
        "filter condition `{condition}` has no `=`: expected `column=operator.value`, e.g. `id=eq.5`"
    )]
    MissingEquals {
        /// The condition, trimmed.
        condition: String,
    },
    /// A condition with nothing before its `=`.
    #[error("filter condition `{condition}` has no column before `=`")]
    EmptyColumn {
        /// The condition, trimmed.
        condition: String,
    },
    /// A condition without a `.` after the operator (`id=eq`, `id=5`).
    #[error(
        "filter condition `{condition}` has no `operator.value` after `=`: expected `column=operator.value`, e.g. `id=eq.5`"
    )]
    MissingOperator {
        /// The condition, trimmed.
        condition: String,
    },
    /// An operator that is not one of Supabase's.
    #[error(
        "unknown filter operator `{operator}`: expected one of eq, neq, lt, lte, gt, gte, in, like, ilike, match, imatch, is, isdistinct, optionally after `not.`"
    )]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
    /// An `in` value that is not `(…)`.
    #[error("`in` filter value must be wrapped in parentheses, e.g. `in.(1,2,3)`; got `{value}`")]
    InNotParenthesized {
        /// The value as written.
        value: String,
    },
    /// An `in` list PostgreSQL would not read as an array literal.
    #[error("`in` filter value `{value}` is malformed: {reason}")]
    MalformedInList {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `in` list with more than [`MAX_IN_VALUES`] items.
    #[error("too many values for `in` filter: {count}; at most 100 are allowed")]
    TooManyInValues {
        /// How many items the list has.
        count: usize,
    },
    /// An `is` value other than `null`, `true`, `false` and `unknown`.
    #[error("invalid value `{value}` for `is` filter: must be null, true, false or unknown")]
    InvalidIsValue {
        /// The value, unquoted.
        value: String,
    },
    /// A `LIKE` pattern that ends with its escape character.
    #[error("invalid LIKE pattern `{pattern}`: it must not end with the escape character `\\`")]
    InvalidLikePattern {
        /// The pattern, unquoted.
        pattern: String,
    },
    /// A `match`/`imatch` pattern that does not compile.
    #[error("invalid regular expression `{pattern}`: {reason}")]
    InvalidRegex {
        /// The pattern, unquoted.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One `column=[not.]operator.value` condition.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    column: String,
    negated: bool,
    test: Test,
}

/// An operator with its parsed value.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Compare(CompareOp, String),
    In(Vec<Option<String>>),
    Like(LikePattern),
    Regex(Regex),
    Is(IsValue),
    IsDistinct(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsValue {
    Null,
    True,
    False,
    Unknown,
}

impl Filter {
    /// Parses a Supabase filter string.
    ///
    /// An empty (or whitespace-only) string is a filter without conditions, which every
    /// row passes: Supabase treats it as no filter.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter {
                conditions: Vec::new(),
            });
        }
        let conditions = split_top_level(text)
            .into_iter()
            .map(parse_condition)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter { conditions })
    }

    /// The columns the filter reads, each once, in the order they first appear.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::with_capacity(self.conditions.len());
        for condition in &self.conditions {
            if !columns.contains(&condition.column.as_str()) {
                columns.push(&condition.column);
            }
        }
        columns
    }

    /// Whether `row` passes: every condition is true of it. A condition on a column missing
    /// from the row does not pass.
    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        self.conditions.iter().all(|condition| {
            row.get(&condition.column)
                .and_then(|value| condition.test.eval(value))
                .is_some_and(|result| result != condition.negated)
        })
    }
}

/// The text Supabase Realtime sends (as the `message` of a `system` event) when it cannot
/// parse `text` as a filter: ``Error parsing `filter` params: `` and a reason.
///
/// Supabase's reason is, for the first condition it cannot read (the filter is trimmed and
/// split on commas as [`Filter::parse`] does, each condition trimmed):
///
/// - an empty condition: `filter must not contain empty segments (check for extra commas)`;
/// - no `=`: the Elixir inspection of the list holding the whole condition, e.g.
///   `["undefined"]`;
/// - no `.` after the `=` (and after `not.`): the inspection of the list holding the text
///   after the `=` (and `not.`), e.g. `id=eq` gives `["eq"]`;
/// - an operator it does not know: the inspection of `[operator, value]`, e.g. `foo=hey.x`
///   gives `["hey", "x"]` (the column is not in it);
/// - an `in` value not wrapped in parentheses: `` `in` filter value must be wrapped by
///   parentheses ``.
///
/// The inspection is Elixir's `inspect/1` of a list of strings: `["a", "b"]`, with `", "`
/// between items and each string in double quotes, escaping `"`, `\`, `#{` and control
/// characters (`\n`, `\t`, …) as Elixir does.
///
/// Other problems (an `is` value, a malformed `in` list, a column the table lacks) Supabase
/// only finds when it creates the subscription, and it reports them with another message.
/// For a filter Supabase's parser accepts but [`Filter::parse`] rejects, this returns the
/// same prefix followed by the [`FilterError`] text; for a filter both accept (this function
/// is meant for ones [`Filter::parse`] rejects), the prefix and the inspection of the
/// trimmed filter in a list.
pub fn supabase_error_message(text: &str) -> String {
    const PREFIX: &str = "Error parsing `filter` params: ";
    let reason = match supabase_parse_reason(text) {
        Some(reason) => reason,
        None => match Filter::parse(text) {
            Err(error) => error.to_string(),
            Ok(_) => elixir_inspect_list(&[text.trim()]),
        },
    };
    format!("{PREFIX}{reason}")
}

/// The filter's conditions as Supabase shows them in the `system` error for a
/// subscription it cannot make: Elixir's `inspect` of a list of `{column, operator, value}`
/// tuples (`[{"id", "eq", "1"}]`; `[]` for no filter). `not.` stays part of the operator.
pub fn supabase_inspect_conditions(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "[]".to_owned();
    }
    let mut out = String::from("[");
    for (i, segment) in split_top_level(text).into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let segment = segment.trim();
        let (column, rest) = segment.split_once('=').unwrap_or((segment, ""));
        let (negation, op_value) = match rest.strip_prefix("not.") {
            Some(op_value) => ("not.", op_value),
            None => ("", rest),
        };
        let (operator, value) = op_value.split_once('.').unwrap_or((op_value, ""));
        let operator = format!("{negation}{operator}");
        out.push('{');
        for (j, part) in [column, operator.as_str(), value].into_iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            elixir_inspect_binary(part, 50, &mut out);
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// Supabase's reason for rejecting `text` (`parse_filters` in `subscriptions.ex`), or `None`
/// if its parser accepts it.
fn supabase_parse_reason(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    for segment in split_top_level(text) {
        let segment = segment.trim();
        if segment.is_empty() {
            return Some(
                "filter must not contain empty segments (check for extra commas)".to_owned(),
            );
        }
        let Some((_column, rest)) = segment.split_once('=') else {
            return Some(elixir_inspect_list(&[segment]));
        };
        let op_value = rest.strip_prefix("not.").unwrap_or(rest);
        let Some((operator, value)) = op_value.split_once('.') else {
            return Some(elixir_inspect_list(&[op_value]));
        };
        if !OPERATOR_NAMES.contains(&operator) {
            return Some(elixir_inspect_list(&[operator, value]));
        }
        if operator == "in" && parenthesized(value).is_none() {
            return Some("`in` filter value must be wrapped by parentheses".to_owned());
        }
    }
    None
}

/// Splits a trimmed filter on its top-level commas, exactly as Supabase's `split_top_level`
/// does (byte by byte; see the module documentation).
fn split_top_level(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut segments = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut quoted = false;
    let mut previous = 0u8;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if quoted {
            if byte == b'\\' && i + 1 < bytes.len() {
                previous = bytes[i + 1];
                i += 2;
                continue;
            }
            if byte == b'"' {
                quoted = false;
            }
        } else {
            match byte {
                b'"' if matches!(previous, b'.' | b'(' | b',') => quoted = true,
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    // Only ASCII bytes split, so both slices are on character boundaries.
                    segments.push(&text[start..i]);
                    start = i + 1;
                    previous = 0;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        previous = byte;
        i += 1;
    }
    segments.push(&text[start..]);
    segments
}

fn parse_condition(segment: &str) -> Result<Condition, FilterError> {
    let segment = segment.trim();
    if segment.is_empty() {
        return Err(FilterError::EmptyCondition);
    }
    let Some((column, rest)) = segment.split_once('=') else {
        return Err(FilterError::MissingEquals {
            condition: segment.to_owned(),
        });
    };
    if column.is_empty() {
        return Err(FilterError::EmptyColumn {
            condition: segment.to_owned(),
        });
    }
    let (negated, op_value) = match rest.strip_prefix("not.") {
        Some(op_value) => (true, op_value),
        None => (false, rest),
    };
    let Some((operator, value)) = op_value.split_once('.') else {
        return Err(FilterError::MissingOperator {
            condition: segment.to_owned(),
        });
    };
    let test = match operator {
        "eq" => Test::Compare(CompareOp::Eq, unquote_value(value)),
        "neq" => Test::Compare(CompareOp::Neq, unquote_value(value)),
        "lt" => Test::Compare(CompareOp::Lt, unquote_value(value)),
        "lte" => Test::Compare(CompareOp::Lte, unquote_value(value)),
        "gt" => Test::Compare(CompareOp::Gt, unquote_value(value)),
        "gte" => Test::Compare(CompareOp::Gte, unquote_value(value)),
        "isdistinct" => Test::IsDistinct(unquote_value(value)),
        "in" => Test::In(parse_in_list(value)?),
        "like" | "ilike" => {
            let pattern = unquote_value(value);
            match LikePattern::compile(&pattern, operator == "ilike") {
                Some(compiled) => Test::Like(compiled),
                None => return Err(FilterError::InvalidLikePattern { pattern }),
            }
        }
        "match" | "imatch" => {
            let pattern = unquote_value(value);
            match Regex::compile(&pattern, operator == "imatch") {
                Ok(compiled) => Test::Regex(compiled),
                Err(reason) => return Err(FilterError::InvalidRegex { pattern, reason }),
            }
        }
        "is" => {
            let value = unquote_value(value);
            Test::Is(match value.as_str() {
                "null" => IsValue::Null,
                "true" => IsValue::True,
                "false" => IsValue::False,
                "unknown" => IsValue::Unknown,
                _ => return Err(FilterError::InvalidIsValue { value }),
            })
        }
        _ => {
            return Err(FilterError::UnknownOperator {
                operator: operator.to_owned(),
            });
        }
    };
    Ok(Condition {
        column: column.to_owned(),
        negated,
        test,
    })
}

/// PostgREST's reading of a value: one whole double-quoted string is unquoted (a backslash
/// escaping the next character); anything else is verbatim.
fn unquote_value(value: &str) -> String {
    let Some(body) = value.strip_prefix('"') else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => return value.to_owned(),
            },
            '"' => {
                return if chars.as_str().is_empty() {
                    out
                } else {
                    value.to_owned()
                };
            }
            c => out.push(c),
        }
    }
    value.to_owned()
}

/// The text between the parentheses of `(…)`.
fn parenthesized(value: &str) -> Option<&str> {
    value.strip_prefix('(')?.strip_suffix(')')
}

fn parse_in_list(value: &str) -> Result<Vec<Option<String>>, FilterError> {
    let Some(inner) = parenthesized(value) else {
        return Err(FilterError::InNotParenthesized {
            value: value.to_owned(),
        });
    };
    let items = parse_array_items(inner).map_err(|reason| FilterError::MalformedInList {
        value: value.to_owned(),
        reason,
    })?;
    if items.len() > MAX_IN_VALUES {
        return Err(FilterError::TooManyInValues { count: items.len() });
    }
    Ok(items)
}

/// PostgreSQL's `isspace`, which `array_in`, `numeric_in` and `boolin` skip.
fn pg_isspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}')
}

/// The items of a one-dimensional PostgreSQL array literal, given the text between its
/// braces (`array_in`): `None` for an unquoted `NULL`.
fn parse_array_items(inner: &str) -> Result<Vec<Option<String>>, String> {
    let mut items = Vec::new();
    if inner.chars().all(pg_isspace) {
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
                c if pg_isspace(c) => {
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

impl Test {
    /// The three-valued result on a present value: `None` is SQL's unknown.
    fn eval(&self, value: &Value) -> Option<bool> {
        match self {
            Test::Compare(CompareOp::Eq, literal) => equals(value, literal),
            Test::Compare(CompareOp::Neq, literal) => equals(value, literal).map(|eq| !eq),
            Test::Compare(op, literal) => {
                let ordering = order(value, literal)?;
                Some(match op {
                    CompareOp::Lt => ordering == Ordering::Less,
                    CompareOp::Lte => ordering != Ordering::Greater,
                    CompareOp::Gt => ordering == Ordering::Greater,
                    _ => ordering != Ordering::Less,
                })
            }
            Test::In(items) => {
                let mut result = Some(false);
                for item in items {
                    match item.as_deref().map(|item| equals(value, item)) {
                        Some(Some(true)) => return Some(true),
                        Some(Some(false)) => {}
                        _ => result = None,
                    }
                }
                result
            }
            Test::Like(pattern) => match value {
                Value::String(text) => Some(pattern.matches(text)),
                _ => None,
            },
            Test::Regex(regex) => match value {
                Value::String(text) => Some(regex.is_match(text)),
                _ => None,
            },
            Test::Is(is) => match (is, value) {
                (IsValue::Null | IsValue::Unknown, Value::Null) => Some(true),
                (_, Value::Null) => Some(false),
                (IsValue::Null, _) => Some(false),
                (IsValue::True, Value::Bool(b)) => Some(*b),
                (IsValue::False, Value::Bool(b)) => Some(!*b),
                (IsValue::Unknown, Value::Bool(_)) => Some(false),
                _ => None,
            },
            Test::IsDistinct(literal) => match value {
                Value::Null => Some(true),
                _ => equals(value, literal).map(|eq| !eq),
            },
        }
    }
}

/// `value = literal`, the literal read in the value's type; `None` when unknown.
fn equals(value: &Value, literal: &str) -> Option<bool> {
    match value {
        Value::Null => None,
        Value::Array(items) => array_equals(items, literal),
        Value::Object(_) => {
            let literal: Value = serde_json::from_str(literal).ok()?;
            Some(json_equal(value, &literal))
        }
        _ => order(value, literal).map(|ordering| ordering == Ordering::Equal),
    }
}

/// How `value` compares with `literal` read in the value's type; `None` when unknown or
/// when the type has no order here.
fn order(value: &Value, literal: &str) -> Option<Ordering> {
    match value {
        Value::Bool(b) => parse_bool(literal).map(|literal| b.cmp(&literal)),
        Value::Number(n) => Some(Numeric::of(n).cmp(&Numeric::parse(literal)?)),
        Value::String(text) => Some(compare_text(text, literal)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// An array value against a PostgreSQL array literal (`{…}`) or a JSON array (`[…]`).
fn array_equals(items: &[Value], literal: &str) -> Option<bool> {
    let trimmed = literal.trim_matches(pg_isspace);
    if trimmed.starts_with('[') {
        let literal: Value = serde_json::from_str(trimmed).ok()?;
        return Some(literal.as_array().is_some_and(|other| {
            other.len() == items.len() && items.iter().zip(other).all(|(a, b)| json_equal(a, b))
        }));
    }
    let inner = trimmed.strip_prefix('{')?.strip_suffix('}')?;
    let literal_items = parse_array_items(inner).ok()?;
    if literal_items.len() != items.len() {
        return Some(false);
    }
    let mut result = Some(true);
    for (item, literal) in items.iter().zip(&literal_items) {
        // Array comparison treats NULL items as equal to each other.
        let item_result = match (item, literal) {
            (Value::Null, None) => Some(true),
            (Value::Null, Some(_)) | (_, None) => Some(false),
            (item, Some(literal)) => equals(item, literal),
        };
        match item_result {
            Some(true) => {}
            Some(false) => return Some(false),
            None => result = None,
        }
    }
    result
}

/// `jsonb` equality: numbers numerically, objects regardless of key order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => Numeric::of(a).cmp(&Numeric::of(b)).is_eq(),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_equal(a, b)))
        }
        _ => false,
    }
}

/// PostgreSQL's `boolin`: surrounding whitespace, then (any case) `t`/`true` and its
/// prefixes, `yes` and its prefixes, `on`, `1`; `f`/`false` and its prefixes, `no` and its
/// prefixes, `of`/`off`, `0`.
fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim_matches(pg_isspace).to_ascii_lowercase();
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

/// Two strings, the second a literal, compared as the module documentation describes.
fn compare_text(text: &str, literal: &str) -> Ordering {
    if is_canonical_uuid(text)
        && let (Some(a), Some(b)) = (parse_uuid(text), parse_uuid(literal))
    {
        return a.cmp(&b);
    }
    if let Some(a) = Temporal::parse(text, true)
        && let Some(b) = Temporal::parse(literal, false)
    {
        return a.compare_with_literal(&b);
    }
    if matches!(text, "NaN" | "Infinity" | "-Infinity")
        && let (Some(a), Some(b)) = (Numeric::parse(text), Numeric::parse(literal))
    {
        return a.cmp(&b);
    }
    text.as_bytes().cmp(literal.as_bytes())
}

/// A `uuid` as PostgreSQL writes it: 36 characters, lowercase hex, hyphens at 8, 13, 18, 23.
fn is_canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// PostgreSQL's `uuid_in`: 32 hex digits, any case, optionally in braces, optionally with a
/// hyphen after any group of four digits. (Not the `uuid` crate's parser: it accepts only
/// the standard hyphen positions, and also `urn:uuid:` forms, which PostgreSQL rejects.)
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    let braces = bytes.first() == Some(&b'{');
    let mut i = usize::from(braces);
    let mut out = [0u8; 16];
    for (k, byte) in out.iter_mut().enumerate() {
        let hi = hex_digit(*bytes.get(i)?)?;
        let lo = hex_digit(*bytes.get(i + 1)?)?;
        *byte = (hi << 4) | lo;
        i += 2;
        if k % 2 == 1 && k < 15 && bytes.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    if braces {
        if bytes.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    (i == bytes.len()).then_some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// ---------------------------------------------------------------------------------------
// Numbers

/// A number as PostgreSQL's `numeric` orders it: `-Infinity` < finite < `Infinity` < `NaN`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Numeric {
    NegInfinity,
    /// `0.d₁d₂…dₙ × 10^exponent`, with no leading or trailing zero digit; zero has no digits
    /// and is never negative.
    Finite {
        negative: bool,
        digits: Vec<u8>,
        exponent: i64,
    },
    Infinity,
    NaN,
}

impl Numeric {
    /// A JSON number, exactly as `serde_json` holds it.
    fn of(number: &serde_json::Number) -> Numeric {
        // `serde_json` writes integers exactly and floats as the shortest round-trip
        // decimal, both of which `parse` reads.
        Numeric::parse(&number.to_string()).unwrap_or(Numeric::NaN)
    }

    /// `numeric_in`'s syntax (plus `float8in`'s `inf`). Hand-written because decimal
    /// crates either round (`rust_decimal` keeps 28 digits) or read another syntax
    /// (no `NaN`/`Infinity`, PostgreSQL's whitespace), and only ordering is needed here.
    fn parse(text: &str) -> Option<Numeric> {
        const EXPONENT_CAP: i64 = 1 << 40;
        let text = text.trim_matches(pg_isspace);
        let (negative, body) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case("nan") {
            return (body.len() == text.len()).then_some(Numeric::NaN);
        }
        if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
            return Some(if negative {
                Numeric::NegInfinity
            } else {
                Numeric::Infinity
            });
        }
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut digits = Vec::new();
        let mut integer_digits: i64 = 0;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            digits.push(d - b'0');
            integer_digits += 1;
            i += 1;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                digits.push(d - b'0');
                i += 1;
            }
        }
        if digits.is_empty() {
            return None;
        }
        let mut exponent: i64 = 0;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exponent_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                exponent = (exponent * 10 + i64::from(d - b'0')).min(EXPONENT_CAP);
                i += 1;
            }
            if i == start {
                return None;
            }
            if exponent_negative {
                exponent = -exponent;
            }
        }
        if i != bytes.len() {
            return None;
        }
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        let trailing = digits[leading..]
            .iter()
            .rev()
            .take_while(|&&d| d == 0)
            .count();
        let significant = digits[leading..digits.len() - trailing].to_vec();
        if significant.is_empty() {
            return Some(Numeric::Finite {
                negative: false,
                digits: significant,
                exponent: 0,
            });
        }
        // `leading` is at most the number of digits, which fits an i64.
        let leading = i64::try_from(leading).unwrap_or(i64::MAX);
        Some(Numeric::Finite {
            negative,
            digits: significant,
            exponent: integer_digits - leading + exponent,
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Numeric::NegInfinity => 0,
            Numeric::Finite { .. } => 1,
            Numeric::Infinity => 2,
            Numeric::NaN => 3,
        }
    }

    fn cmp(&self, other: &Numeric) -> Ordering {
        let (
            Numeric::Finite {
                negative: a_negative,
                digits: a_digits,
                exponent: a_exponent,
            },
            Numeric::Finite {
                negative: b_negative,
                digits: b_digits,
                exponent: b_exponent,
            },
        ) = (self, other)
        else {
            return self.rank().cmp(&other.rank());
        };
        let sign = |negative: bool, digits: &[u8]| -> i8 {
            if digits.is_empty() {
                0
            } else if negative {
                -1
            } else {
                1
            }
        };
        let (a_sign, b_sign) = (sign(*a_negative, a_digits), sign(*b_negative, b_digits));
        if a_sign != b_sign || a_sign == 0 {
            return a_sign.cmp(&b_sign);
        }
        let magnitude = a_exponent
            .cmp(b_exponent)
            .then_with(|| a_digits.cmp(b_digits));
        if a_sign > 0 {
            magnitude
        } else {
            magnitude.reverse()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dates and timestamps

/// A date or timestamp, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Temporal {
    NegInfinity,
    Finite {
        /// Days since 1970-01-01 (proleptic Gregorian, astronomical years).
        days: i64,
        /// Microseconds since midnight, if there is a time.
        time: Option<i64>,
        /// Seconds east of UTC, if there is an offset.
        offset: Option<i64>,
    },
    Infinity,
}

impl Temporal {
    /// Hand-written because date-time crates do not read PostgreSQL's input forms (` BC`,
    /// `infinity`, `±hh` offsets, a space or `t` before the time, years past 9999).
    ///
    /// `strict`: only `to_jsonb`'s forms (`2026-01-02`, `2026-01-02T03:04:05[.f{1,6}]`,
    /// optionally `+hh:mm[:ss]`, optionally ` BC`, `infinity`, `-infinity`). Otherwise, a
    /// literal: surrounding whitespace, `T`, `t` or spaces before the time, optional
    /// seconds, any fraction (rounded to microseconds), spaces before an offset, and `Z`,
    /// `±hh`, `±hhmm`, `±hh:mm`, `±hh:mm:ss` offsets.
    fn parse(text: &str, strict: bool) -> Option<Temporal> {
        let text = if strict {
            text
        } else {
            text.trim_matches(pg_isspace)
        };
        if text.eq_ignore_ascii_case("infinity") && (!strict || text == "infinity") {
            return Some(Temporal::Infinity);
        }
        if text.eq_ignore_ascii_case("-infinity") && (!strict || text == "-infinity") {
            return Some(Temporal::NegInfinity);
        }
        let (text, bc) = match text.strip_suffix(" BC") {
            Some(body) => (body, true),
            None => (text, false),
        };
        let mut cursor = Cursor::new(text);
        let year_digits = cursor.digits_run();
        if !(4..=9).contains(&year_digits.len()) {
            return None;
        }
        let mut year: i64 = year_digits.parse().ok()?;
        if bc {
            if year == 0 {
                return None;
            }
            year = 1 - year;
        }
        cursor.expect(b'-')?;
        let month = cursor.fixed_digits(2)?;
        cursor.expect(b'-')?;
        let day = cursor.fixed_digits(2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        if cursor.done() {
            return Some(Temporal::Finite {
                days,
                time: None,
                offset: None,
            });
        }
        match cursor.next()? {
            b'T' => {}
            b't' if !strict => {}
            b' ' if !strict => cursor.skip_spaces(),
            _ => return None,
        }
        let hour = cursor.fixed_digits(2)?;
        cursor.expect(b':')?;
        let minute = cursor.fixed_digits(2)?;
        let mut second = 0;
        let mut micros = 0;
        if cursor.peek() == Some(b':') || strict {
            cursor.expect(b':')?;
            second = cursor.fixed_digits(2)?;
            if cursor.peek() == Some(b'.') {
                cursor.next();
                let fraction = cursor.digits_run();
                if fraction.is_empty() || (strict && fraction.len() > 6) {
                    return None;
                }
                micros = fraction_to_micros(fraction);
            }
        }
        if hour > 24
            || minute > 59
            || second > 60
            || (hour == 24 && (minute, second, micros) != (0, 0, 0))
        {
            return None;
        }
        let time = ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros;
        if !strict {
            cursor.skip_spaces();
        }
        let offset = if cursor.done() {
            None
        } else {
            Some(cursor.offset(strict)?)
        };
        cursor.done().then_some(Temporal::Finite {
            days,
            time: Some(time),
            offset,
        })
    }

    /// How a row value (`self`, parsed strictly, so its kind is the column's type)
    /// compares with a literal cast to that type.
    fn compare_with_literal(&self, literal: &Temporal) -> Ordering {
        const DAY: i128 = 86_400_000_000;
        let rank = |t: &Temporal| match t {
            Temporal::NegInfinity => 0,
            Temporal::Finite { .. } => 1,
            Temporal::Infinity => 2,
        };
        let (
            Temporal::Finite { days, time, offset },
            Temporal::Finite {
                days: literal_days,
                time: literal_time,
                offset: literal_offset,
            },
        ) = (self, literal)
        else {
            return rank(self).cmp(&rank(literal));
        };
        let local =
            |days: i64, time: Option<i64>| i128::from(days) * DAY + i128::from(time.unwrap_or(0));
        match (time, offset) {
            // A date: the literal's date part.
            (None, _) => days.cmp(literal_days),
            // A timestamp without time zone: local times, the literal's offset ignored.
            (Some(_), None) => local(*days, *time).cmp(&local(*literal_days, *literal_time)),
            // A timestamptz: instants, a literal without an offset being UTC.
            (Some(_), Some(offset)) => {
                let instant = local(*days, *time) - i128::from(*offset) * 1_000_000;
                let literal_instant = local(*literal_days, *literal_time)
                    - i128::from(literal_offset.unwrap_or(0)) * 1_000_000;
                instant.cmp(&literal_instant)
            }
        }
    }
}

/// A fraction of a second's digits, rounded to microseconds.
fn fraction_to_micros(digits: &str) -> i64 {
    let mut micros: i64 = 0;
    for (i, d) in digits.bytes().take(6).enumerate() {
        micros += i64::from(d - b'0') * 10_i64.pow(5 - u32::try_from(i).unwrap_or(5));
    }
    if digits.as_bytes().get(6).is_some_and(|d| *d >= b'5') {
        micros += 1;
    }
    micros
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A byte cursor over ASCII syntax.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn done(&self) -> bool {
        self.at == self.text.len()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// The run of ASCII digits here.
    fn digits_run(&mut self) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    /// Exactly `n` ASCII digits.
    fn fixed_digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..n {
            let b = self.next().filter(u8::is_ascii_digit)?;
            value = value * 10 + i64::from(b - b'0');
        }
        Some(value)
    }

    /// A UTC offset in seconds east: `±hh:mm[:ss]` if `strict`, else also `Z`, `±hh`,
    /// `±hhmm`.
    fn offset(&mut self, strict: bool) -> Option<i64> {
        let sign = match self.next()? {
            b'+' => 1,
            b'-' => -1,
            b'Z' | b'z' if !strict => return Some(0),
            _ => return None,
        };
        let hours = self.fixed_digits(2)?;
        let mut minutes = 0;
        let mut seconds = 0;
        match self.peek() {
            Some(b':') => {
                self.next();
                minutes = self.fixed_digits(2)?;
                if self.peek() == Some(b':') {
                    self.next();
                    seconds = self.fixed_digits(2)?;
                }
            }
            Some(b'0'..=b'9') if !strict => minutes = self.fixed_digits(2)?,
            None if !strict => {}
            _ => return None,
        }
        if hours > 15 || minutes > 59 || seconds > 59 {
            return None;
        }
        Some(sign * (hours * 3600 + minutes * 60 + seconds))
    }
}

// ---------------------------------------------------------------------------------------
// LIKE
//
// Not translated to a `regex` crate pattern, although that would match the same strings:
// a compiled regex needs a size limit (each `_` compiles to about 1 KiB of automaton, and a
// filter may be megabytes long), and an oversized LIKE pattern could only be reported as
// `FilterError::InvalidLikePattern`, whose text says the pattern ends with its escape
// character. This matcher needs no compilation and no limit: it backtracks only to the
// last `%`, so it takes at most pattern × text steps.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeToken {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// A compiled `LIKE` (or, lowercased, `ILIKE`) pattern.
#[derive(Debug, Clone, PartialEq)]
struct LikePattern {
    tokens: Vec<LikeToken>,
    case_insensitive: bool,
}

impl LikePattern {
    /// `None` if the pattern ends with a lone backslash.
    fn compile(pattern: &str, case_insensitive: bool) -> Option<LikePattern> {
        let mut tokens = Vec::new();
        let push_char = |tokens: &mut Vec<LikeToken>, c: char| {
            if case_insensitive {
                tokens.extend(c.to_lowercase().map(LikeToken::Char));
            } else {
                tokens.push(LikeToken::Char(c));
            }
        };
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => push_char(&mut tokens, chars.next()?),
                '%' => {
                    if tokens.last() != Some(&LikeToken::Any) {
                        tokens.push(LikeToken::Any);
                    }
                }
                '_' => tokens.push(LikeToken::One),
                c => push_char(&mut tokens, c),
            }
        }
        Some(LikePattern {
            tokens,
            case_insensitive,
        })
    }

    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = if self.case_insensitive {
            text.to_lowercase().chars().collect()
        } else {
            text.chars().collect()
        };
        let tokens = &self.tokens;
        let (mut p, mut t) = (0, 0);
        // The last `%` seen and the text position it is currently matched up to.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match tokens.get(p) {
                Some(LikeToken::Any) => {
                    backtrack = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(LikeToken::One) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                Some(LikeToken::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            }
        }
        tokens[p..].iter().all(|token| *token == LikeToken::Any)
    }
}

// ---------------------------------------------------------------------------------------
// Regular expressions (`match`, `imatch`)

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
struct Regex {
    regex: regex::Regex,
    case_insensitive: bool,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.case_insensitive == other.case_insensitive
            && self.regex.as_str() == other.regex.as_str()
    }
}

impl Regex {
    fn compile(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
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
    fn is_match(&self, text: &str) -> bool {
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
fn translate_regex(pattern: &str, case_insensitive: bool) -> Result<(String, bool), String> {
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
    let mut translator = RegexTranslator {
        chars: body.chars().collect(),
        at: 0,
        out: String::with_capacity(body.len() * 2),
    };
    translator.run()?;
    Ok((translator.out, case_insensitive))
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

/// What the previous piece of a regular expression was, for where a quantifier may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegexPiece {
    /// Nothing yet in this branch: the start, or just after `(` or `|`.
    Nothing,
    /// Something a quantifier may follow: a character, class, `.` or group.
    Atom,
    /// `^`, `$` or a `\` constraint, which cannot be quantified.
    Constraint,
    /// A quantifier, which cannot be quantified again.
    Quantifier,
}

/// What a backslash escape stands for.
enum RegexEscape {
    Char(char),
    /// A class: its items in the `regex` crate's bracket syntax, and whether it is
    /// negated (`\D`, `\S`, `\W`).
    Class(&'static str, bool),
    /// A constraint, in the `regex` crate's syntax.
    Constraint(&'static str),
}

/// The items, in the `regex` crate's bracket syntax, of a POSIX class named in a bracket
/// expression (`[[:alpha:]]`). The crate's own POSIX classes are ASCII-only, so the
/// Unicode ones are spelled out, each as Rust's `char` predicate of the same name defines
/// it (`alpha` is `char::is_alphabetic`, `alnum` `char::is_alphanumeric`, …); `word` is
/// the crate's Unicode `\w`, the word characters of `\m \M \y \Y`.
fn posix_class_items(name: &str) -> Option<&'static str> {
    Some(match name {
        "alnum" => r"\p{Alphabetic}\p{N}",
        "alpha" => r"\p{Alphabetic}",
        "blank" => r"\x{20}\t",
        "cntrl" => r"\p{Cc}",
        "digit" => "0-9",
        "graph" => r"[^\p{Cc}\p{White_Space}]",
        "lower" => r"\p{Lowercase}",
        "print" => r"\P{Cc}",
        "punct" => "[:punct:]",
        "space" => r"\p{White_Space}",
        "upper" => r"\p{Uppercase}",
        "word" => r"\w",
        "xdigit" => "0-9A-Fa-f",
        _ => return None,
    })
}

/// Writes a class's items inside a bracket expression being written.
fn push_class_items(out: &mut String, items: &str, negated: bool) {
    if negated {
        out.push_str("[^");
        out.push_str(items);
        out.push(']');
    } else {
        out.push_str(items);
    }
}

/// Reads a PostgreSQL regular expression and writes it in the `regex` crate's syntax,
/// checking it as PostgreSQL does.
struct RegexTranslator {
    chars: Vec<char>,
    at: usize,
    out: String,
}

impl RegexTranslator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn run(&mut self) -> Result<(), String> {
        let unbalanced = || "parentheses () not balanced".to_owned();
        let mut depth = 0;
        let mut last = RegexPiece::Nothing;
        loop {
            if self.starts_quantifier() {
                if last != RegexPiece::Atom {
                    return Err("quantifier operand invalid".to_owned());
                }
                self.quantifier()?;
                last = RegexPiece::Quantifier;
                continue;
            }
            let Some(c) = self.bump() else {
                break;
            };
            last = match c {
                '(' => {
                    if depth >= MAX_REGEX_DEPTH {
                        return Err("parentheses are nested too deeply".to_owned());
                    }
                    if self.peek() == Some('?') {
                        if self.peek_at(1) != Some(':') {
                            return Err("lookaround constraints and `(?` options inside a pattern are not supported".to_owned());
                        }
                        self.at += 2;
                    }
                    depth += 1;
                    self.out.push_str("(?:");
                    RegexPiece::Nothing
                }
                ')' => {
                    if depth == 0 {
                        return Err(unbalanced());
                    }
                    depth -= 1;
                    self.out.push(')');
                    RegexPiece::Atom
                }
                '|' => {
                    self.out.push('|');
                    RegexPiece::Nothing
                }
                // With `.` matching newlines (the crate's `s` flag).
                '.' => {
                    self.out.push('.');
                    RegexPiece::Atom
                }
                // Not the crate's `^` and `$`, so that no flag can make them match at
                // line breaks.
                '^' => {
                    self.out.push_str(r"\A");
                    RegexPiece::Constraint
                }
                '$' => {
                    self.out.push_str(r"\z");
                    RegexPiece::Constraint
                }
                '[' => {
                    self.bracket()?;
                    RegexPiece::Atom
                }
                '\\' => match self.escape(false)? {
                    RegexEscape::Char(c) => {
                        push_regex_literal(&mut self.out, c);
                        RegexPiece::Atom
                    }
                    RegexEscape::Class(items, negated) => {
                        self.out.push('[');
                        push_class_items(&mut self.out, items, negated);
                        self.out.push(']');
                        RegexPiece::Atom
                    }
                    RegexEscape::Constraint(constraint) => {
                        self.out.push_str(constraint);
                        RegexPiece::Constraint
                    }
                },
                c => {
                    push_regex_literal(&mut self.out, c);
                    RegexPiece::Atom
                }
            };
        }
        if depth > 0 {
            return Err(unbalanced());
        }
        Ok(())
    }

    fn starts_quantifier(&self) -> bool {
        match self.peek() {
            Some('*' | '+' | '?') => true,
            Some('{') => self.peek_at(1).is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        }
    }

    /// `*`, `+`, `?` or a bound, optionally followed by `?` (non-greedy, which matches the
    /// same strings).
    fn quantifier(&mut self) -> Result<(), String> {
        match self.bump() {
            Some('{') => {
                let (min, max) = self.bound()?;
                let _ = match max {
                    Some(max) if max == min => write!(self.out, "{{{min}}}"),
                    Some(max) => write!(self.out, "{{{min},{max}}}"),
                    None => write!(self.out, "{{{min},}}"),
                };
            }
            Some(c) => self.out.push(c),
            None => {}
        }
        if self.peek() == Some('?') {
            self.at += 1;
            self.out.push('?');
        }
        Ok(())
    }

    /// `{m}`, `{m,}`, `{m,n}`, after the `{`.
    fn bound(&mut self) -> Result<(u32, Option<u32>), String> {
        let invalid = || "invalid repetition count(s)".to_owned();
        let min = self.count().ok_or_else(invalid)?;
        let max = if self.peek() == Some(',') {
            self.at += 1;
            if self.peek() == Some('}') {
                None
            } else {
                Some(self.count().ok_or_else(invalid)?)
            }
        } else {
            Some(min)
        };
        if self.bump() != Some('}') {
            return Err("braces {} not balanced".to_owned());
        }
        if min > MAX_REGEX_REPEAT || max.is_some_and(|max| max > MAX_REGEX_REPEAT || max < min) {
            return Err(invalid());
        }
        Ok((min, max))
    }

    fn count(&mut self) -> Option<u32> {
        let start = self.at;
        let mut value: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(d);
            self.at += 1;
        }
        (self.at > start).then_some(value)
    }

    /// A backslash escape, after the backslash.
    fn escape(&mut self, in_bracket: bool) -> Result<RegexEscape, String> {
        let Some(c) = self.bump() else {
            return Err("invalid escape \\ sequence: the pattern ends with a backslash".to_owned());
        };
        let constraint = |constraint| {
            if in_bracket {
                Err(format!("invalid escape \\{c} sequence inside brackets"))
            } else {
                Ok(RegexEscape::Constraint(constraint))
            }
        };
        Ok(match c {
            'a' => RegexEscape::Char('\u{07}'),
            // Backspace, as in PostgreSQL (not the crate's word boundary).
            'b' => RegexEscape::Char('\u{08}'),
            'B' => RegexEscape::Char('\\'),
            'e' => RegexEscape::Char('\u{1b}'),
            'f' => RegexEscape::Char('\u{0c}'),
            'n' => RegexEscape::Char('\n'),
            'r' => RegexEscape::Char('\r'),
            't' => RegexEscape::Char('\t'),
            'v' => RegexEscape::Char('\u{0b}'),
            'c' => {
                let control = self
                    .bump()
                    .ok_or_else(|| "invalid escape \\c sequence".to_owned())?;
                RegexEscape::Char(char::from_u32(u32::from(control) & 0x1f).unwrap_or('\0'))
            }
            'x' => RegexEscape::Char(self.hex_escape(1, 8)?),
            'u' => RegexEscape::Char(self.hex_escape(4, 4)?),
            'U' => RegexEscape::Char(self.hex_escape(8, 8)?),
            '0' => {
                let mut value = 0;
                for _ in 0..2 {
                    match self.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.at += 1;
                        }
                        None => break,
                    }
                }
                RegexEscape::Char(char::from_u32(value).unwrap_or('\0'))
            }
            '1'..='9' => return Err("back-references are not supported".to_owned()),
            // ASCII digits, as `[[:digit:]]`; the crate's Unicode `\d` has more.
            'd' => RegexEscape::Class("0-9", false),
            'D' => RegexEscape::Class("0-9", true),
            's' => RegexEscape::Class(r"\s", false),
            'S' => RegexEscape::Class(r"\s", true),
            'w' => RegexEscape::Class(r"\w", false),
            'W' => RegexEscape::Class(r"\w", true),
            'A' => return constraint(r"\A"),
            // End of text only (the crate's `\z`; its `\Z` does not exist).
            'Z' => return constraint(r"\z"),
            'm' => return constraint(r"\b{start}"),
            'M' => return constraint(r"\b{end}"),
            'y' => return constraint(r"\b"),
            'Y' => return constraint(r"\B"),
            c if c.is_alphanumeric() => return Err(format!("invalid escape \\{c} sequence")),
            c => RegexEscape::Char(c),
        })
    }

    /// Between `min` and `max` hex digits, as a character.
    fn hex_escape(&mut self, min: usize, max: usize) -> Result<char, String> {
        let mut value: u32 = 0;
        let mut digits = 0;
        while digits < max {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    value = value * 16 + d;
                    digits += 1;
                    self.at += 1;
                }
                None => break,
            }
        }
        if digits < min {
            return Err("invalid escape: too few hex digits".to_owned());
        }
        char::from_u32(value).ok_or_else(|| "invalid escape: not a character".to_owned())
    }

    /// A bracket expression, after the `[`.
    fn bracket(&mut self) -> Result<(), String> {
        let unbalanced = || "brackets [] not balanced".to_owned();
        let mut class = String::from("[");
        if self.peek() == Some('^') {
            self.at += 1;
            class.push('^');
        }
        let mut first = true;
        loop {
            let c = self.bump().ok_or_else(unbalanced)?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = match c {
                '[' if self.peek() == Some(':') => {
                    self.at += 1;
                    let name = self.bracket_name(':')?;
                    let items = posix_class_items(&name)
                        .ok_or_else(|| format!("invalid character class `{name}`"))?;
                    class.push_str(items);
                    continue;
                }
                '[' if matches!(self.peek(), Some('.' | '=')) => {
                    let delimiter = self.bump().unwrap_or('.');
                    self.single_char_name(delimiter)?
                }
                '\\' => match self.escape(true)? {
                    RegexEscape::Char(c) => c,
                    RegexEscape::Class(items, negated) => {
                        push_class_items(&mut class, items, negated);
                        continue;
                    }
                    RegexEscape::Constraint(_) => {
                        return Err("invalid escape inside brackets".to_owned());
                    }
                },
                c => c,
            };
            push_regex_literal(&mut class, low);
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.at += 1;
                let high = match self.bump().ok_or_else(unbalanced)? {
                    '[' if matches!(self.peek(), Some('.' | '=')) => {
                        let delimiter = self.bump().unwrap_or('.');
                        self.single_char_name(delimiter)?
                    }
                    '\\' => match self.escape(true)? {
                        RegexEscape::Char(c) => c,
                        _ => return Err("invalid character range".to_owned()),
                    },
                    c => c,
                };
                if high < low {
                    return Err("invalid character range".to_owned());
                }
                class.push('-');
                push_regex_literal(&mut class, high);
            }
        }
        class.push(']');
        self.out.push_str(&class);
        Ok(())
    }

    /// The text of `[:name:]` (or `[.x.]`, `[=x=]`) after the opening `[:`, up to and
    /// including the closing `:]`.
    fn bracket_name(&mut self, delimiter: char) -> Result<String, String> {
        let mut name = String::new();
        loop {
            match self.bump() {
                Some(c) if c == delimiter && self.peek() == Some(']') => {
                    self.at += 1;
                    return Ok(name);
                }
                Some(c) => name.push(c),
                None => return Err("brackets [] not balanced".to_owned()),
            }
        }
    }

    /// `[.x.]` or `[=x=]` naming a single character.
    fn single_char_name(&mut self, delimiter: char) -> Result<char, String> {
        let name = self.bracket_name(delimiter)?;
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(format!("invalid collating element `{name}`")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Elixir's `inspect/1`, for Supabase's error texts

/// `inspect/1` of a list of strings (Elixir 1.19 defaults: `limit: 50`,
/// `printable_limit: 4096`, no line breaks).
fn elixir_inspect_list(items: &[&str]) -> String {
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
fn elixir_inspect_binary(text: &str, limit: usize, out: &mut String) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
    }

    fn error(text: &str) -> FilterError {
        match Filter::parse(text) {
            Ok(filter) => panic!("{text:?} should not parse, got {filter:?}"),
            Err(error) => error,
        }
    }

    /// Whether the row `{"v": value}` passes `filter`.
    fn passes(filter: &str, value: Value) -> bool {
        passes_row(filter, json!({ "v": value }))
    }

    fn passes_row(filter: &str, row: Value) -> bool {
        parse(filter).matches(row.as_object().expect("an object"))
    }

    /// `(column, negated, test)` of each condition.
    fn conditions(text: &str) -> Vec<(String, bool, Test)> {
        parse(text)
            .conditions
            .into_iter()
            .map(|c| (c.column, c.negated, c.test))
            .collect()
    }

    fn only(text: &str) -> (String, bool, Test) {
        let mut all = conditions(text);
        assert_eq!(all.len(), 1, "{text:?} should have one condition");
        all.remove(0)
    }

    fn cmp(op: CompareOp, value: &str) -> Test {
        Test::Compare(op, value.to_owned())
    }

    fn items(values: &[Option<&str>]) -> Test {
        Test::In(values.iter().map(|v| v.map(str::to_owned)).collect())
    }

    // ----- parsing: operators

    #[test]
    fn parses_every_comparison_operator() {
        for (name, op) in [
            ("eq", CompareOp::Eq),
            ("neq", CompareOp::Neq),
            ("lt", CompareOp::Lt),
            ("lte", CompareOp::Lte),
            ("gt", CompareOp::Gt),
            ("gte", CompareOp::Gte),
        ] {
            assert_eq!(
                only(&format!("id={name}.5")),
                ("id".to_owned(), false, cmp(op, "5"))
            );
            assert_eq!(
                only(&format!("id=not.{name}.5")),
                ("id".to_owned(), true, cmp(op, "5"))
            );
        }
    }

    #[test]
    fn parses_in_is_isdistinct_like_match() {
        assert_eq!(
            only("id=in.(1,2,3)").2,
            items(&[Some("1"), Some("2"), Some("3")])
        );
        assert!(only("id=not.in.(1)").1);
        assert_eq!(only("v=is.null").2, Test::Is(IsValue::Null));
        assert_eq!(only("v=is.true").2, Test::Is(IsValue::True));
        assert_eq!(only("v=is.false").2, Test::Is(IsValue::False));
        assert_eq!(only("v=is.unknown").2, Test::Is(IsValue::Unknown));
        assert_eq!(
            only("v=not.is.null"),
            ("v".to_owned(), true, Test::Is(IsValue::Null))
        );
        assert_eq!(only("v=isdistinct.5").2, Test::IsDistinct("5".to_owned()));
        assert!(matches!(
            only("v=like.a%").2,
            Test::Like(LikePattern {
                case_insensitive: false,
                ..
            })
        ));
        assert!(matches!(
            only("v=ilike.a%").2,
            Test::Like(LikePattern {
                case_insensitive: true,
                ..
            })
        ));
        assert!(matches!(
            only("v=match.^a").2,
            Test::Regex(Regex {
                case_insensitive: false,
                ..
            })
        ));
        assert!(matches!(
            only("v=imatch.^a").2,
            Test::Regex(Regex {
                case_insensitive: true,
                ..
            })
        ));
        assert!(only("v=not.like.a%").1);
        assert!(only("v=not.isdistinct.a").1);
    }

    #[test]
    fn the_value_is_everything_after_the_operator() {
        assert_eq!(only("a=eq.b=c.d").2, cmp(CompareOp::Eq, "b=c.d"));
        assert_eq!(only("a=eq.").2, cmp(CompareOp::Eq, ""));
        assert_eq!(
            only("a=eq. x ").2,
            cmp(CompareOp::Eq, " x"),
            "the condition is trimmed"
        );
        assert_eq!(only("a=eq.not.x").2, cmp(CompareOp::Eq, "not.x"));
        assert_eq!(
            only("a=eq.O'Brien \"x\"").2,
            cmp(CompareOp::Eq, "O'Brien \"x\"")
        );
    }

    #[test]
    fn the_column_is_verbatim() {
        assert_eq!(only("my col=eq.1").0, "my col");
        assert_eq!(
            only("a =eq.1").0,
            "a ",
            "only the condition as a whole is trimmed"
        );
        assert_eq!(only("  id=eq.1  ").0, "id");
        assert_eq!(only("\"Id\"=eq.1").0, "\"Id\"");
        assert_eq!(only("a.b=eq.1").0, "a.b");
    }

    #[test]
    fn empty_filters_have_no_conditions_and_pass_every_row() {
        for text in ["", "   ", "\n\t"] {
            let filter = parse(text);
            assert!(filter.conditions.is_empty());
            assert!(filter.columns().is_empty());
            assert!(filter.matches(&Map::new()));
        }
    }

    // ----- parsing: lists, quotes, parentheses

    #[test]
    fn commas_join_conditions() {
        let all = conditions("status=eq.open,priority=gt.2, id=not.in.(1,2) ");
        assert_eq!(
            all,
            vec![
                ("status".to_owned(), false, cmp(CompareOp::Eq, "open")),
                ("priority".to_owned(), false, cmp(CompareOp::Gt, "2")),
                ("id".to_owned(), true, items(&[Some("1"), Some("2")])),
            ]
        );
        assert_eq!(conditions("id=gt.0,id=lt.100").len(), 2);
        assert_eq!(
            conditions("name=in.(red,blue),quantity=gt.0")[0].2,
            items(&[Some("red"), Some("blue")])
        );
    }

    #[test]
    fn a_quoted_value_keeps_its_commas_and_is_unquoted() {
        assert_eq!(
            conditions("name=eq.\"a,b\",id=gt.0"),
            vec![
                ("name".to_owned(), false, cmp(CompareOp::Eq, "a,b")),
                ("id".to_owned(), false, cmp(CompareOp::Gt, "0")),
            ]
        );
        assert_eq!(
            only("name=eq.\"a.b:c(d)\"").2,
            cmp(CompareOp::Eq, "a.b:c(d)")
        );
        assert_eq!(
            only("name=not.neq.\"a,b\""),
            ("name".to_owned(), true, cmp(CompareOp::Neq, "a,b"))
        );
        assert_eq!(only("name=eq.\"\"").2, cmp(CompareOp::Eq, ""));
        assert_eq!(only("name=eq.\" a \"").2, cmp(CompareOp::Eq, " a "));
    }

    #[test]
    fn backslashes_escape_inside_quoted_values() {
        assert_eq!(
            only(r#"name=eq."she said \"hi\"""#).2,
            cmp(CompareOp::Eq, "she said \"hi\"")
        );
        assert_eq!(
            only(r#"path=eq."C:\\tmp""#).2,
            cmp(CompareOp::Eq, r"C:\tmp")
        );
        assert_eq!(only(r#"path=eq."C:\new""#).2, cmp(CompareOp::Eq, "C:new"));
        assert_eq!(
            conditions(r#"a=eq."x\,y",b=eq.1"#)[0].2,
            cmp(CompareOp::Eq, "x,y")
        );
        // Outside quotes a backslash is an ordinary character.
        assert_eq!(only(r"a=eq.x\y").2, cmp(CompareOp::Eq, r"x\y"));
    }

    #[test]
    fn malformed_quoted_values_are_taken_verbatim_like_postgrest() {
        assert_eq!(
            only("name=eq.\"unterminated").2,
            cmp(CompareOp::Eq, "\"unterminated")
        );
        assert_eq!(only("name=eq.\"ab\"cd").2, cmp(CompareOp::Eq, "\"ab\"cd"));
        assert_eq!(only(r#"name=eq."ab\"#).2, cmp(CompareOp::Eq, r#""ab\"#));
        // An unterminated quote keeps the following commas in the value.
        assert_eq!(only("a=eq.\"x,b=eq.1").2, cmp(CompareOp::Eq, "\"x,b=eq.1"));
    }

    #[test]
    fn a_quote_inside_a_value_does_not_protect_commas() {
        assert_eq!(
            conditions("desc=eq.5\" tall,id=gt.0"),
            vec![
                ("desc".to_owned(), false, cmp(CompareOp::Eq, "5\" tall")),
                ("id".to_owned(), false, cmp(CompareOp::Gt, "0")),
            ]
        );
    }

    #[test]
    fn parentheses_protect_commas_and_stray_closing_ones_are_literal() {
        assert_eq!(
            conditions("a=eq.x),b=eq.y),c=eq.z"),
            vec![
                ("a".to_owned(), false, cmp(CompareOp::Eq, "x)")),
                ("b".to_owned(), false, cmp(CompareOp::Eq, "y)")),
                ("c".to_owned(), false, cmp(CompareOp::Eq, "z")),
            ]
        );
        assert_eq!(only("a=eq.f(x,y)").2, cmp(CompareOp::Eq, "f(x,y)"));
        // An unclosed `(` keeps every following comma.
        assert_eq!(only("a=eq.x(,b=eq.1").2, cmp(CompareOp::Eq, "x(,b=eq.1"));
    }

    #[test]
    fn in_lists_read_as_postgres_array_literals() {
        assert_eq!(only("t=in.(\"a,b\",c)").2, items(&[Some("a,b"), Some("c")]));
        assert_eq!(
            only("t=in.(\"a,b\",\"c,d\")").2,
            items(&[Some("a,b"), Some("c,d")])
        );
        assert_eq!(
            only("t=in.( a , b c ,d)").2,
            items(&[Some("a"), Some("b c"), Some("d")])
        );
        assert_eq!(only("t=in.(\" a \")").2, items(&[Some(" a ")]));
        assert_eq!(
            only("t=in.(\"(x)\",\")\")").2,
            items(&[Some("(x)"), Some(")")])
        );
        assert_eq!(
            only("t=in.(\"\",\"NULL\",NULL,null)").2,
            items(&[Some(""), Some("NULL"), None, None])
        );
        assert_eq!(
            only(r"t=in.(a\,b,c\ )").2,
            items(&[Some("a,b"), Some("c ")])
        );
        assert_eq!(
            only(r#"t=in.("say \"hi\"",x)"#).2,
            items(&[Some("say \"hi\""), Some("x")])
        );
        assert_eq!(
            only("t=in.(a\"b,c\"d)").2,
            items(&[Some("ab,cd")]),
            "quotes may start mid-item"
        );
        assert_eq!(
            only("t=in.(O'Brien,Smith)").2,
            items(&[Some("O'Brien"), Some("Smith")])
        );
        assert_eq!(only("t=in.(1.5,2)").2, items(&[Some("1.5"), Some("2")]));
        assert_eq!(only("t=in.()").2, items(&[]));
        assert_eq!(only("t=in.( )").2, items(&[]));
        assert_eq!(only("t=in.(f(x),y)").2, items(&[Some("f(x)"), Some("y")]));
        let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let Test::In(list) = only(&format!("t=in.({})", hundred.join(","))).2 else {
            panic!("an in list");
        };
        assert_eq!(list.len(), 100);
    }

    #[test]
    fn columns_are_listed_once_in_order() {
        assert_eq!(parse("b=eq.1,a=gt.2,b=lt.9").columns(), vec!["b", "a"]);
        assert_eq!(parse("id=eq.1").columns(), vec!["id"]);
    }

    // ----- parsing: errors

    #[test]
    fn empty_conditions_are_errors() {
        for text in [
            "a=eq.1,",
            ",a=eq.1",
            "a=eq.1,,b=eq.2",
            "a=eq.1, ,b=eq.2",
            ",",
        ] {
            assert_eq!(error(text), FilterError::EmptyCondition, "{text:?}");
        }
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            error("foo"),
            FilterError::MissingEquals {
                condition: "foo".into()
            }
        );
        assert_eq!(
            error("a=eq.1,undefined"),
            FilterError::MissingEquals {
                condition: "undefined".into()
            }
        );
        assert_eq!(
            error("=eq.1"),
            FilterError::EmptyColumn {
                condition: "=eq.1".into()
            }
        );
        assert_eq!(
            error("id=eq"),
            FilterError::MissingOperator {
                condition: "id=eq".into()
            }
        );
        assert_eq!(
            error("id=5"),
            FilterError::MissingOperator {
                condition: "id=5".into()
            }
        );
        assert_eq!(
            error("id=not.eq"),
            FilterError::MissingOperator {
                condition: "id=not.eq".into()
            }
        );
        assert_eq!(
            error("id="),
            FilterError::MissingOperator {
                condition: "id=".into()
            }
        );
    }

    #[test]
    fn unknown_operators_are_errors() {
        for (text, operator) in [
            ("id=foo.5", "foo"),
            ("id=EQ.5", "EQ"),
            ("id=not.not.eq.5", "not"),
            ("id=.5", ""),
            ("id=cs.{1}", "cs"),
            ("id=fts.x", "fts"),
        ] {
            assert_eq!(
                error(text),
                FilterError::UnknownOperator {
                    operator: operator.into()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn in_list_errors() {
        assert_eq!(
            error("id=in.1"),
            FilterError::InNotParenthesized { value: "1".into() }
        );
        assert_eq!(
            error("id=in.(1,2"),
            FilterError::InNotParenthesized {
                value: "(1,2".into()
            }
        );
        assert_eq!(
            error("id=in.1,2)"),
            FilterError::InNotParenthesized { value: "1".into() }
        );
        assert_eq!(
            error("id=in.{1,2}"),
            FilterError::InNotParenthesized { value: "{1".into() }
        );
        for (text, reason) in [
            ("id=in.(1,,2)", "empty value"),
            ("id=in.(1,)", "empty value"),
            ("id=in.(,1)", "empty value"),
            ("id=in.(\"a)", "unterminated double quote"),
            ("id=in.({1},{2})", "nested"),
            ("id=in.(a})", "unexpected `}`"),
            (r"id=in.(a\)", "backslash"),
        ] {
            match error(text) {
                FilterError::MalformedInList { reason: got, .. } => {
                    assert!(got.contains(reason), "{text:?}: {got}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert_eq!(
            error(&format!("id=in.({})", many.join(","))),
            FilterError::TooManyInValues { count: 101 }
        );
    }

    #[test]
    fn is_like_and_regex_errors() {
        for value in ["maybe", "NULL", "True", "", "nil"] {
            assert_eq!(
                error(&format!("v=is.{value}")),
                FilterError::InvalidIsValue {
                    value: value.into()
                }
            );
        }
        assert_eq!(only("v=is.\"null\"").2, Test::Is(IsValue::Null));
        assert_eq!(
            error(r"v=like.abc\"),
            FilterError::InvalidLikePattern {
                pattern: r"abc\".into()
            }
        );
        assert!(matches!(
            error(r"v=ilike.\"),
            FilterError::InvalidLikePattern { .. }
        ));
        for pattern in [
            "(a",
            "a)",
            "[a",
            "*a",
            "a**",
            "a{256}",
            r"(a)\1",
            "(?=a)",
            "(?!a)",
            "a|*",
            "\"a{2,1}\"",
            "\"a{1,256}\"",
            "[[:nope:]]",
            "[z-a]",
            r"\q",
            r"a\",
            "^*",
            "(?x)a",
            "a{1",
        ] {
            match error(&format!("v=match.{pattern}")) {
                FilterError::InvalidRegex { pattern: got, .. } => {
                    assert_eq!(got, unquote_value(pattern));
                }
                other => panic!("{pattern:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_texts_name_the_problem() {
        assert_eq!(
            error("foo").to_string(),
            "filter condition `foo` has no `=`: expected `column=operator.value`, e.g. `id=eq.5`"
        );
        assert_eq!(
            error("id=foo.1").to_string(),
            "unknown filter operator `foo`: expected one of eq, neq, lt, lte, gt, gte, in, like, ilike, match, imatch, is, isdistinct, optionally after `not.`"
        );
        assert_eq!(
            error("a=eq.1,").to_string(),
            "filter must not contain empty conditions (check for extra commas)"
        );
        assert_eq!(
            error("=eq.1").to_string(),
            "filter condition `=eq.1` has no column before `=`"
        );
        assert_eq!(
            error("id=eq").to_string(),
            "filter condition `id=eq` has no `operator.value` after `=`: expected `column=operator.value`, e.g. `id=eq.5`"
        );
        assert_eq!(
            error("id=in.1").to_string(),
            "`in` filter value must be wrapped in parentheses, e.g. `in.(1,2,3)`; got `1`"
        );
        assert_eq!(
            error("id=in.(1,,2)").to_string(),
            "`in` filter value `(1,,2)` is malformed: it has an empty value (quote it, `\"\"`, to mean the empty string)"
        );
        let many: Vec<String> = (0..150).map(|i| i.to_string()).collect();
        assert_eq!(
            error(&format!("id=in.({})", many.join(","))).to_string(),
            "too many values for `in` filter: 150; at most 100 are allowed"
        );
        assert_eq!(
            error("v=is.maybe").to_string(),
            "invalid value `maybe` for `is` filter: must be null, true, false or unknown"
        );
        assert_eq!(
            error(r"v=like.a\").to_string(),
            r"invalid LIKE pattern `a\`: it must not end with the escape character `\`"
        );
        assert_eq!(
            error("v=match.(a").to_string(),
            "invalid regular expression `(a`: parentheses () not balanced"
        );
    }

    // ----- matching: numbers

    #[test]
    fn numbers_compare_numerically_and_exactly() {
        assert!(passes("v=eq.5", json!(5)));
        assert!(passes("v=eq.5.0", json!(5)));
        assert!(passes("v=eq.5", json!(5.0)));
        assert!(passes("v=eq.5e0", json!(5)));
        assert!(passes("v=eq.0.5e1", json!(5)));
        assert!(passes("v=eq. 5 ", json!(5)));
        assert!(passes("v=eq.+5", json!(5)));
        assert!(passes("v=eq.005.000", json!(5)));
        assert!(passes("v=eq.-0", json!(0)));
        assert!(passes("v=eq.0", json!(-0.0)));
        assert!(passes("v=eq..5", json!(0.5)));
        assert!(passes("v=eq.5.", json!(5)));
        assert!(!passes("v=eq.6", json!(5)));
        assert!(passes("v=neq.6", json!(5)));
        assert!(!passes("v=neq.5.0", json!(5)));
        assert!(passes("v=eq.0.1", json!(0.1)));
        assert!(passes("v=eq.-2.5", json!(-2.5)));
        assert!(passes("v=eq.1e20", json!(1e20)));
        assert!(passes("v=eq.100000000000000000000", json!(1e20)));
        // Integers are exact at the limits of i64 and u64.
        assert!(passes("v=eq.9223372036854775807", json!(i64::MAX)));
        assert!(!passes("v=eq.9223372036854775806", json!(i64::MAX)));
        assert!(passes("v=eq.-9223372036854775808", json!(i64::MIN)));
        assert!(passes("v=eq.18446744073709551615", json!(u64::MAX)));
        assert!(passes("v=lt.18446744073709551616", json!(u64::MAX)));
        assert!(passes(
            "v=gt.18446744073709551614.999999999999",
            json!(u64::MAX)
        ));
        assert!(passes(
            "v=gt.9007199254740992",
            json!(9_007_199_254_740_993_i64)
        ));
    }

    #[test]
    fn number_order() {
        assert!(passes("v=lt.10", json!(9)));
        assert!(!passes("v=lt.9", json!(9)));
        assert!(passes("v=lte.9", json!(9)));
        assert!(passes("v=gt.-1", json!(0)));
        assert!(passes("v=gte.0", json!(0)));
        assert!(passes("v=gt.-10", json!(-9)));
        assert!(passes("v=lt.-8.5", json!(-9)));
        assert!(passes("v=lt.2", json!(1.999_999)));
        assert!(passes("v=gt.1e-400", json!(0.000_1)));
        assert!(passes("v=lt.1e400", json!(f64::MAX)));
        assert!(passes("v=gt.-1e400", json!(f64::MIN)));
        assert!(passes("v=gt.0.09999999999999999", json!(0.1)));
        assert!(passes("v=lt.10e-1", json!(0.99)));
        assert!(passes("v=gt.10e-1", json!(1.01)));
    }

    #[test]
    fn special_numeric_literals_order_as_postgres() {
        assert!(passes("v=lt.Infinity", json!(1e300)));
        assert!(passes("v=lt.inf", json!(1)));
        assert!(passes("v=gt.-Infinity", json!(-1e300)));
        assert!(passes("v=lt.NaN", json!(1e300)));
        assert!(!passes("v=eq.NaN", json!(1)));
        assert!(passes("v=neq.nan", json!(1)));
        // `to_jsonb` renders these as strings; they compare numerically with numbers.
        assert!(passes("v=gt.1e300", json!("NaN")));
        assert!(passes("v=eq.NaN", json!("NaN")));
        assert!(passes("v=gt.5", json!("Infinity")));
        assert!(passes("v=lt.-5", json!("-Infinity")));
        assert!(passes("v=eq.-inf", json!("-Infinity")));
    }

    #[test]
    fn a_literal_that_is_not_a_number_never_passes_a_number() {
        for filter in [
            "v=eq.abc",
            "v=neq.abc",
            "v=not.eq.abc",
            "v=lt.abc",
            "v=not.gt.x",
            "v=eq.",
            "v=eq.1_000",
            "v=eq.0x10",
            "v=eq.1e",
            "v=eq.--1",
            "v=eq.1.2.3",
            "v=eq.-nan",
        ] {
            assert!(!passes(filter, json!(5)), "{filter}");
        }
    }

    // ----- matching: booleans

    #[test]
    fn booleans_read_the_literal_as_postgres_does() {
        for literal in ["true", "t", "TRUE", "tr", "yes", "y", "on", "1", " true "] {
            assert!(passes(&format!("v=eq.{literal}"), json!(true)), "{literal}");
            assert!(
                !passes(&format!("v=eq.{literal}"), json!(false)),
                "{literal}"
            );
        }
        for literal in ["false", "f", "fal", "no", "n", "off", "of", "0", "False"] {
            assert!(
                passes(&format!("v=eq.{literal}"), json!(false)),
                "{literal}"
            );
            assert!(
                passes(&format!("v=neq.{literal}"), json!(true)),
                "{literal}"
            );
        }
        for literal in ["o", "truex", "2", "", "yess", "onn"] {
            assert!(
                !passes(&format!("v=eq.{literal}"), json!(true)),
                "{literal}"
            );
            assert!(
                !passes(&format!("v=neq.{literal}"), json!(true)),
                "{literal}"
            );
            assert!(
                !passes(&format!("v=not.eq.{literal}"), json!(false)),
                "{literal}"
            );
        }
        assert!(passes("v=lt.true", json!(false)));
        assert!(!passes("v=lt.false", json!(false)));
        assert!(passes("v=gte.false", json!(true)));
    }

    // ----- matching: strings

    #[test]
    fn strings_compare_by_bytes() {
        assert!(passes("v=eq.hello", json!("hello")));
        assert!(!passes("v=eq.Hello", json!("hello")));
        assert!(
            passes("v=eq.hello ", json!("hello")),
            "the condition is trimmed"
        );
        assert!(!passes("v=eq.hello  x", json!("hello x")));
        assert!(passes("v=eq.\"hello \"", json!("hello ")));
        assert!(passes("v=eq.", json!("")));
        assert!(passes("v=eq.5", json!("5")));
        assert!(!passes("v=eq.5.0", json!("5")), "a string is not a number");
        assert!(passes("v=neq.b", json!("a")));
        assert!(passes("v=lt.b", json!("a")));
        assert!(
            passes("v=lt.a", json!("B")),
            "C collation: uppercase before lowercase"
        );
        assert!(passes("v=gt.abc", json!("abcd")));
        assert!(passes("v=lte.abc", json!("abc")));
        assert!(passes("v=gt.z", json!("é")));
        assert!(passes("v=eq.héllo wörld", json!("héllo wörld")));
    }

    #[test]
    fn uuids_compare_as_uuids() {
        let id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for literal in [
            id,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert!(passes(&format!("v=eq.{literal}"), json!(id)), "{literal}");
        }
        assert!(!passes(
            "v=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
            json!(id)
        ));
        assert!(passes(
            "v=lt.B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            json!(id)
        ));
        assert!(passes(
            &format!("v=in.(x,{})", id.to_uppercase()),
            json!(id)
        ));
        // Not a UUID literal: compared as text.
        assert!(passes("v=gt.a0", json!(id)));
    }

    #[test]
    fn timestamptz_compares_instants() {
        let at = json!("2026-01-02T03:04:05.678+00:00");
        assert!(passes("v=eq.2026-01-02T03:04:05.678+00:00", at.clone()));
        assert!(passes("v=eq.2026-01-02T03:04:05.678Z", at.clone()));
        assert!(
            passes("v=eq.2026-01-02 03:04:05.678", at.clone()),
            "no offset: UTC"
        );
        assert!(passes("v=eq.2026-01-02 05:04:05.678+02", at.clone()));
        assert!(passes("v=eq.2026-01-02T05:34:05.678+0230", at.clone()));
        assert!(passes("v=eq.2026-01-01T22:04:05.678-05:00", at.clone()));
        assert!(passes("v=eq.2026-01-02 03:04:05.678 +00:00", at.clone()));
        assert!(
            passes("v=eq.2026-01-02T03:04:05.6780001Z", at.clone()),
            "rounded to microseconds"
        );
        assert!(!passes("v=eq.2026-01-02T03:04:05Z", at.clone()));
        assert!(passes("v=gt.2026-01-02T03:04:05Z", at.clone()));
        assert!(passes("v=gt.2026-01-02", at.clone()));
        assert!(passes("v=lt.2026-01-03", at.clone()));
        assert!(passes("v=gte.2026-01-02T03:04", at.clone()));
        assert!(!passes(
            "v=lt.2026-01-02T04:00:00+01:00",
            json!("2026-01-02T03:30:00+00:00")
        ));
        assert!(passes(
            "v=lt.2026-01-02T04:00:00+00:30",
            json!("2026-01-02T03:29:00+00:00")
        ));
        assert!(passes(
            "v=eq.2026-01-02T03:04:05+00:00",
            json!("2026-01-02T08:34:05+05:30")
        ));
        assert!(passes(
            "v=eq.2026-01-02T03:04:05+00:00",
            json!("2026-01-02T03:23:37+00:19:32")
        ));
        assert!(passes("v=lt.infinity", at.clone()));
        assert!(passes("v=gt.-infinity", at.clone()));
        assert!(passes("v=gt.2026-01-01", json!("infinity")));
        assert!(passes("v=eq.Infinity", json!("infinity")));
        // Not a timestamp literal: compared as text.
        assert!(passes("v=gt.2026-01-02T", at.clone()));
        assert!(passes("v=lt.today", at));
    }

    #[test]
    fn timestamps_without_zone_ignore_the_literal_offset() {
        let at = json!("2026-01-02T03:04:05.678");
        assert!(passes("v=eq.2026-01-02 03:04:05.678", at.clone()));
        assert!(passes("v=eq.2026-01-02T03:04:05.678+05:00", at.clone()));
        assert!(passes("v=gt.2026-01-02T03:04:05", at.clone()));
        assert!(passes("v=lt.2026-01-02T03:04:06", at.clone()));
        assert!(passes("v=lt.2026-01-02T03:04:05.6781", at.clone()));
        assert!(!passes(
            "v=lt.0044-03-15 BC",
            json!("0044-03-15T12:00:00 BC")
        ));
        assert!(passes(
            "v=gt.0044-03-15 BC",
            json!("0044-03-15T12:00:00 BC")
        ));
        assert!(passes("v=lt.0001-01-01", json!("0044-03-15T12:00:00 BC")));
        assert!(passes(
            "v=eq.2026-01-03 00:00",
            json!("2026-01-02T24:00:00")
        ));
    }

    #[test]
    fn dates_compare_dates() {
        let day = json!("2026-01-02");
        assert!(passes("v=eq.2026-01-02", day.clone()));
        assert!(
            passes("v=eq.2026-01-02T23:59:59-10:00", day.clone()),
            "the time is dropped"
        );
        assert!(passes("v=lt.2026-01-03", day.clone()));
        assert!(passes("v=gt.2025-12-31", day.clone()));
        assert!(!passes("v=gt.2026-01-02 01:00", day.clone()));
        assert!(passes("v=gt.2025-02-28", json!("2025-03-01")));
        assert!(passes("v=gt.2024-02-29", json!("2024-03-01")));
        assert!(passes("v=lt.10000-01-01", json!("9999-12-31")));
        assert!(passes("v=gt.0001-01-01 BC", json!("0001-01-01")));
        // An impossible date is no date: compared as text.
        assert!(passes("v=lt.2026-02-30", day.clone()));
        assert!(!passes("v=eq.2026-1-2", day));
    }

    // ----- matching: null and missing columns

    #[test]
    fn null_passes_only_is_isdistinct_and_not_in_nothing() {
        for filter in [
            "v=eq.1",
            "v=neq.1",
            "v=not.eq.1",
            "v=not.neq.1",
            "v=lt.1",
            "v=not.lt.1",
            "v=gte.1",
            "v=in.(1,2)",
            "v=not.in.(1,2)",
            "v=in.()",
            "v=like.%",
            "v=not.like.%",
            "v=ilike.%",
            "v=match..*",
            "v=not.match.x",
            "v=eq.null",
            "v=is.true",
            "v=is.false",
            "v=not.is.null",
            "v=not.isdistinct.1",
        ] {
            assert!(!passes(filter, Value::Null), "{filter}");
        }
        for filter in [
            "v=is.null",
            "v=is.unknown",
            "v=not.is.true",
            "v=not.is.false",
            "v=isdistinct.1",
            "v=isdistinct.null",
            "v=not.in.()",
        ] {
            assert!(passes(filter, Value::Null), "{filter}");
        }
    }

    #[test]
    fn a_missing_column_never_passes() {
        for filter in [
            "w=eq.1",
            "w=not.eq.1",
            "w=is.null",
            "w=not.is.null",
            "w=isdistinct.1",
            "w=not.in.(1)",
            "v=eq.1,w=is.null",
        ] {
            assert!(!passes_row(filter, json!({ "v": 1 })), "{filter}");
        }
        assert!(!parse("id=eq.1").matches(&Map::new()));
    }

    // ----- matching: in, is, isdistinct

    #[test]
    fn in_is_equality_with_any_item() {
        assert!(passes("v=in.(1,2,3)", json!(2)));
        assert!(passes("v=in.(1,2.0,3)", json!(2)));
        assert!(!passes("v=in.(1,3)", json!(2)));
        assert!(passes("v=not.in.(1,3)", json!(2)));
        assert!(!passes("v=not.in.(1,2)", json!(2)));
        assert!(passes("v=in.(red,blue)", json!("blue")));
        assert!(!passes("v=in.(red,blue)", json!("Blue")));
        assert!(passes("v=in.(\"a,b\",c)", json!("a,b")));
        assert!(passes("v=in.( a )", json!("a")));
        assert!(passes("v=in.(\" a \")", json!(" a ")));
        assert!(passes("v=in.(\"\")", json!("")));
        assert!(passes("v=in.(\"NULL\")", json!("NULL")));
        assert!(passes("v=in.(t)", json!(true)));
        assert!(!passes("v=in.()", json!(1)));
        assert!(passes("v=not.in.()", json!(1)));
        // `x = ANY('{1,NULL}')` is unknown when x is not 1.
        assert!(passes("v=in.(1,NULL)", json!(1)));
        assert!(!passes("v=in.(2,NULL)", json!(1)));
        assert!(!passes("v=not.in.(2,NULL)", json!(1)));
        // Items unreadable in the value's type make it unknown unless another item matches.
        assert!(passes("v=in.(x,1)", json!(1)));
        assert!(!passes("v=not.in.(x,2)", json!(1)));
    }

    #[test]
    fn is_tests_null_and_booleans() {
        assert!(passes("v=is.true", json!(true)));
        assert!(!passes("v=is.true", json!(false)));
        assert!(passes("v=is.false", json!(false)));
        assert!(passes("v=not.is.true", json!(false)));
        assert!(!passes("v=is.unknown", json!(true)));
        assert!(passes("v=not.is.unknown", json!(false)));
        assert!(!passes("v=is.null", json!(0)));
        assert!(passes("v=not.is.null", json!("")));
        assert!(passes("v=not.is.null", json!(false)));
        // IS TRUE on a non-boolean is something Supabase refuses: never passes.
        for filter in [
            "v=is.true",
            "v=not.is.true",
            "v=is.false",
            "v=not.is.unknown",
        ] {
            assert!(!passes(filter, json!("true")), "{filter}");
            assert!(!passes(filter, json!(1)), "{filter}");
        }
    }

    #[test]
    fn isdistinct_is_not_equal_with_null_known() {
        assert!(passes("v=isdistinct.1", json!(2)));
        assert!(!passes("v=isdistinct.1", json!(1)));
        assert!(!passes("v=isdistinct.1.0", json!(1)));
        assert!(passes("v=not.isdistinct.1", json!(1)));
        assert!(passes("v=isdistinct.a", json!("b")));
        assert!(passes("v=isdistinct.a", Value::Null));
        assert!(
            !passes("v=isdistinct.x", json!(1)),
            "unreadable literal: unknown"
        );
        assert!(!passes("v=not.isdistinct.x", json!(1)));
    }

    // ----- matching: like, ilike

    #[test]
    fn like_patterns() {
        assert!(passes("v=like.hel%", json!("hello")));
        assert!(passes("v=like.%llo", json!("hello")));
        assert!(passes("v=like.%ll%", json!("hello")));
        assert!(passes("v=like.%", json!("")));
        assert!(passes("v=like.%%", json!("x")));
        assert!(passes("v=like.h_llo", json!("hello")));
        assert!(
            passes("v=like.h_llo", json!("héllo")),
            "`_` is one character"
        );
        assert!(!passes("v=like.h_llo", json!("hllo")));
        assert!(
            !passes("v=like.hel", json!("hello")),
            "anchored at both ends"
        );
        assert!(!passes("v=like.ello", json!("hello")));
        assert!(passes("v=like.hello", json!("hello")));
        assert!(!passes("v=like.Hello", json!("hello")));
        assert!(passes("v=like.%a%b%c%", json!("xxaxxbxxcxx")));
        assert!(!passes("v=like.%a%b%c%", json!("xxcxxbxxaxx")));
        assert!(passes("v=like.a%a%a", json!("aaa")));
        assert!(!passes("v=like.a%a%a", json!("aa")));
        assert!(passes("v=like.___", json!("abc")));
        assert!(!passes("v=like.___", json!("ab")));
        assert!(passes("v=like._%_", json!("ab")));
        assert!(passes("v=not.like.hel%", json!("world")));
        assert!(!passes("v=not.like.hel%", json!("help")));
        assert!(!passes("v=like.%", json!(5)), "like on a number is unknown");
        assert!(!passes("v=not.like.x", json!(5)));
        assert!(passes("v=like.\"a,b%\"", json!("a,bc")));
    }

    #[test]
    fn like_escapes() {
        assert!(passes(r"v=like.50\%", json!("50%")));
        assert!(!passes(r"v=like.50\%", json!("500")));
        assert!(passes(r"v=like.a\_b", json!("a_b")));
        assert!(!passes(r"v=like.a\_b", json!("axb")));
        assert!(passes(r"v=like.a\\b", json!(r"a\b")));
        assert!(passes(r"v=like.\a\b", json!("ab")));
        assert!(passes(r"v=like.%\%", json!("100%")));
    }

    #[test]
    fn ilike_ignores_case() {
        assert!(passes("v=ilike.HEL%", json!("hello")));
        assert!(passes("v=ilike.hel%", json!("HELLO")));
        assert!(passes("v=ilike.ÉTÉ", json!("été")));
        assert!(passes("v=ilike.straße", json!("STRAßE")));
        assert!(!passes("v=ilike.hel", json!("HELLO")));
        assert!(passes(r"v=ilike.A\%", json!("a%")));
        assert!(passes("v=not.ilike.x%", json!("Y")));
    }

    // ----- matching: regular expressions

    fn re(pattern: &str, text: &str) -> bool {
        passes(&format!("v=match.{pattern}"), json!(text))
    }

    fn ire(pattern: &str, text: &str) -> bool {
        passes(&format!("v=imatch.{pattern}"), json!(text))
    }

    #[test]
    fn regex_basics() {
        assert!(re("ell", "hello"), "unanchored");
        assert!(re("^hel", "hello"));
        assert!(!re("^ell", "hello"));
        assert!(re("llo$", "hello"));
        assert!(!re("ll$", "hello"));
        assert!(re("^$", ""));
        assert!(re("", "anything"));
        assert!(re("h.llo", "hallo"));
        assert!(re("a.b", "a\nb"), "`.` matches a newline");
        assert!(re("^(cat|dog)s?$", "dogs"));
        assert!(!re("^(cat|dog)s?$", "cow"));
        assert!(re("^(?:ab)+$", "ababab"));
        assert!(!re("^(?:ab)+$", "ababa"));
        assert!(re("^a*$", ""));
        assert!(re("^a+b?c*$", "aaacc"));
        assert!(re("^a{3}$", "aaa"));
        assert!(!re("^a{3}$", "aaaa"));
        assert!(re("\"^a{2,}$\"", "aaaaa"));
        assert!(!re("\"^a{2,}$\"", "a"));
        assert!(re("\"^a{1,3}$\"", "aa"));
        assert!(!re("\"^a{1,3}$\"", "aaaa"));
        assert!(re("(a{1,3})", "a"), "parentheses protect commas too");
        assert!(re("^a{0}b$", "b"));
        assert!(re("^a*?b+?$", "aab"), "non-greedy quantifiers");
        assert!(
            re("\"^x{,y$\"", "x{,y"),
            "`{{` not before a digit is literal"
        );
        assert!(re("a|", "zzz"));
        assert!(re("^(a|)$", ""));
        assert!(re("^()$", ""));
        assert!(re("^(a*)*$", "aaaa"));
        assert!(re("^post-", "post-123"));
        assert!(
            re("^\"q\"$", "\"q\""),
            "a quote inside the value is literal"
        );
        assert!(re("\"^q$\"", "q"));
    }

    #[test]
    fn regex_classes_and_escapes() {
        assert!(re("^[a-c]+$", "abcba"));
        assert!(!re("^[a-c]+$", "abd"));
        assert!(re("^[^0-9]+$", "abc"));
        assert!(!re("^[^0-9]+$", "a1"));
        assert!(re("^[]a]+$", "]a]"));
        assert!(re("^[a-]+$", "-a-"));
        assert!(re("^[[:alpha:]]+$", "héllo"));
        assert!(re("^[[:digit:][:space:]]+$", "1 2\t3"));
        assert!(re("^[[:upper:]][[:lower:]]+$", "Hello"));
        assert!(re("^[[:xdigit:]]+$", "DeadBeef"));
        assert!(re("^[[:punct:]]+$", "!?.,"));
        assert!(re("^[[.a.]-c]+$", "abc"));
        assert!(re(r"^\d+$", "12345"));
        assert!(!re(r"^\d+$", "12a45"));
        assert!(re(r"^\D+$", "abc"));
        assert!(re(r"^\w+\s\w+$", "hello world"));
        assert!(re(r"^\S+$", "a-b"));
        assert!(re(r"^\W$", "-"));
        assert!(re(r"^[\d\s]+$", "1 2"));
        assert!(re(r"^[\w-]+$", "a-b_c"));
        assert!(re(r"^a\.b$", "a.b"));
        assert!(!re(r"^a\.b$", "axb"));
        assert!(re(r"^\(x\)$", "(x)"));
        assert!(re(r"^a\tb$", "a\tb"));
        assert!(re(r"^\x41\u0042\U00000043$", "ABC"));
        assert!(re(r"^\\$", r"\"));
        assert!(re(r"^\Bx$", r"\x"));
        assert!(re(r"\Aab\Z", "ab"));
        assert!(re(r"\mcat\M", "the cat sat"));
        assert!(!re(r"\mcat\M", "concatenate"));
        assert!(re(r"\ycat\y", "a cat"));
        assert!(re(r"\Yat", "cat"));
        assert!(!re(r"\Ycat", "cat"));
        assert!(re("^é+$", "ééé"), "characters, not bytes");
        assert!(re("^.$", "é"));
        assert!(re("***=a.b", "xa.by"));
        assert!(!re("***=a.b", "axb"));
        assert!(re("***:^a", "ab"));
        assert!(re("(?q)a.b", "a.b"));
    }

    #[test]
    fn regex_case_insensitivity() {
        assert!(ire("^HEL+O$", "hello"));
        assert!(ire("^hello$", "HELLO"));
        assert!(ire("^[A-Z]+$", "abc"));
        assert!(ire("^[a-z]+$", "ABC"));
        assert!(!ire("^[^a]$", "A"));
        assert!(ire("^[[:upper:]]$", "a"));
        assert!(ire("^ÉTÉ$", "été"));
        assert!(!re("^hello$", "HELLO"));
        assert!(re("(?i)^hello$", "HELLO"));
        assert!(!ire("(?c)^hello$", "HELLO"));
        assert!(
            !passes("v=match.x", json!(1)),
            "match on a number is unknown"
        );
        assert!(!passes("v=not.match.x", json!(1)));
        assert!(passes("v=not.imatch.^x", json!("Yx")));
    }

    #[test]
    fn regex_time_is_linear() {
        let text = "a".repeat(20_000);
        let start = std::time::Instant::now();
        assert!(!re("^(a*)*b$", &text));
        assert!(!re("(a|aa)*c", &text));
        assert!(!re("^(a?){30}a{30}b", &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn deeply_nested_regexes_are_rejected() {
        let deep = format!("v=match.{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(matches!(error(&deep), FilterError::InvalidRegex { .. }));
        let fine = format!("v=match.{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(passes(&fine, json!("a")));
    }

    #[test]
    fn huge_regex_programs_are_rejected() {
        // The bound is the compiled size (2 MiB), not a count of repetitions: literal
        // characters are cheap, Unicode classes are not.
        for pattern in [
            "((a{255}){255}){2}",
            r"\w{60}",
            "[[:alpha:]]{255}",
            "(.{255}){10}",
        ] {
            assert_eq!(
                error(&format!("v=match.{pattern}")),
                FilterError::InvalidRegex {
                    pattern: pattern.to_owned(),
                    reason: "regular expression is too large".to_owned(),
                },
            );
        }
        assert!(matches!(
            error("v=imatch.((a{255}){255})"),
            FilterError::InvalidRegex { .. }
        ));
        for pattern in ["a{255}", "((a{100}){100})", r"\w{30}", ".{255}"] {
            assert!(
                Filter::parse(&format!("v=match.{pattern}")).is_ok(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn regex_translation_writes_nothing_unescaped() {
        let translated = |pattern: &str| translate_regex(pattern, false).map(|(t, _)| t);
        assert_eq!(translated(r"^a.b$").as_deref(), Ok(r"\Aa.b\z"));
        assert_eq!(translated("(x|y)+?").as_deref(), Ok(r"(?:x|y)+?"));
        assert_eq!(
            translated(r"a\{1\}{2,3}").as_deref(),
            Ok(r"a\x{7B}1\x{7D}{2,3}")
        );
        assert_eq!(
            translated(r"[^a-z[:alpha:]\d\W-]").as_deref(),
            Ok(r"[^a-z\p{Alphabetic}0-9[^\w]\x{2D}]")
        );
        assert_eq!(
            translated(r"\m\M\y\Y\A\Z").as_deref(),
            Ok(r"\b{start}\b{end}\b\B\A\z")
        );
        assert_eq!(translated("é ").as_deref(), Ok(r"\x{E9}\x{20}"));
        assert_eq!(
            translate_regex("***=(?i)a", false),
            Ok((r"\x{28}\x{3F}i\x{29}a".to_owned(), false))
        );
        assert_eq!(translate_regex("(?i)a", false), Ok(("a".to_owned(), true)));
        assert_eq!(translate_regex("(?c)a", true), Ok(("a".to_owned(), false)));
        assert_eq!(
            translate_regex("***:(?iq)a.b", false),
            Ok((r"a\x{2E}b".to_owned(), true))
        );
    }

    #[test]
    fn regex_crate_syntax_keeps_its_postgres_meaning() {
        // `\b` is a backspace in PostgreSQL, not a word boundary; `\B` a backslash.
        assert!(re(r"a\bb", "a\u{8}b"));
        assert!(!re(r"\bcat", "cat"));
        assert!(re(r"^[\b]$", "\u{8}"));
        assert!(re(r"a\Bb", r"a\b"));
        // `$`, `\Z` and `^` are the ends of the string, not of a line.
        assert!(!re("a$", "a\n"));
        assert!(!re(r"a\Z", "a\n"));
        assert!(re("a\n$", "a\n"));
        assert!(!re("^b", "a\nb"));
        assert!(!re("a$", "a\nb"));
        // The crate's operators are literals (or errors) here.
        assert!(re(r"\<a\>", "<a>"));
        assert!(!re(r"\<a\>", "a"));
        assert!(re("^[&~]+$", "&&~~"));
        assert!(re("^[--/]+$", "-./"));
        assert!(re("^a b#c$", "a b#c"));
        assert!(re("^[[]$", "["));
        assert!(re(r"^\x28\x7b$", "({"));
        assert!(re(r"^\0\cA$", "\0\u{1}"));
        assert!(re("***=(?i)A", "x(?i)A"));
        assert!(!re("***=(?i)A", "a"));
        assert!(re("***=\\p{L}$", "\\p{L}$"));
        assert!(
            re(r"^\b{start}x$", "\u{8}{start}x"),
            "`{{` before a letter is literal"
        );
        // What the crate would read with another meaning, or PostgreSQL does not support,
        // is rejected.
        for pattern in [
            r"\p{L}", r"\P{L}", r"[\p{L}]", r"\k<a>", r"\z", r"\h", "a(?i)b", "(?i", "((?i)a)",
            "(?P<n>a)", "(?<n>a)", "(?<=a)b", "(?<!a)b", "(?x)a b", "(?n)a", "(?s-i)a", r"[\m]",
            r"[\A]", r"[a-\d]", r"\x{41}", r"\uD800",
        ] {
            match error(&format!("v=match.\"{}\"", pattern.replace('\\', r"\\"))) {
                FilterError::InvalidRegex { pattern: got, .. } => assert_eq!(got, pattern),
                other => panic!("{pattern:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn regex_word_boundaries_are_unicode() {
        assert!(re(r"\mété\M", "un été chaud"));
        assert!(!re(r"\mté", "été"));
        assert!(re(r"\yx\y", "x"));
        assert!(re(r"a\Yb", "ab"));
        assert!(!re(r"a\Y b", "a b"));
        assert!(re(r"\M$", "word"));
        assert!(!re(r"\m$", "word"));
        assert!(re(r"^\w+$", "naïve_1"));
        assert!(re(r"^[[:word:]]+$", "naïve_1"));
        assert!(re(r"^\W$", "-"));
    }

    #[test]
    fn regex_classes_are_unicode_where_postgres_s_are() {
        assert!(re("^[[:alpha:]]+$", "Ωμέγα"));
        assert!(!re("^[[:alpha:]]$", "1"));
        assert!(re("^[[:alnum:]]+$", "x²½Ⅻ"));
        assert!(re("^[[:upper:]]+$", "ÉΩ"));
        assert!(re("^[[:lower:]]+$", "éω"));
        assert!(re("^[[:space:]]+$", "\u{2003}\n\t"));
        assert!(re(r"^\s$", "\u{a0}"));
        assert!(re("^[[:blank:]]+$", " \t"));
        assert!(!re("^[[:blank:]]$", "\n"));
        assert!(re("^[[:cntrl:]]$", "\u{7f}"));
        assert!(re("^[[:graph:]]+$", "a-é"));
        assert!(!re("^[[:graph:]]$", " "));
        assert!(re("^[[:print:]]+$", "a é"));
        assert!(!re("^[[:print:]]$", "\u{1}"));
        // ASCII only, as documented.
        assert!(!re(r"^\d$", "٣"));
        assert!(!re("^[[:digit:]]$", "٣"));
        assert!(!re("^[[:punct:]]$", "¿"));
        assert!(!re("^[[:xdigit:]]$", "g"));
        // Negated escapes inside brackets.
        assert!(re(r"^[\D]+$", "ab"));
        assert!(!re(r"^[\D]+$", "a1"));
        assert!(re(r"^[^\W]+$", "abc"));
        assert!(!re(r"^[^\W]+$", "a-c"));
        assert!(re(r"^[\S\s]+$", "any thing"));
    }

    #[test]
    fn imatch_folds_case_simply() {
        assert!(ire("^k$", "\u{212A}"), "the Kelvin sign folds to k");
        assert!(ire("^[[:lower:]]+$", "ABC"));
        assert!(ire("^σ$", "Σ"));
        assert!(ire("^ς$", "Σ"));
        assert!(!ire("^ss$", "ß"), "simple folding only");
        assert!(ire(r"^\x41$", "a"));
        assert!(ire("***=A.B", "a.b"));
    }

    #[test]
    fn deeply_nested_quantified_groups_stay_within_the_crate_s_limits() {
        let pattern = format!("{}[[:graph:]\\D\\W]{}", "(".repeat(100), ")*".repeat(100));
        assert!(passes(&format!("v=match.{pattern}"), json!("x")));
    }

    // ----- matching: arrays and json

    #[test]
    fn arrays_compare_with_array_literals() {
        // Commas split the filter, so a list literal is quoted.
        assert!(passes("v=eq.\"{1,2,3}\"", json!([1, 2, 3])));
        assert!(passes("v=eq.\"{1.0, 2 ,3}\"", json!([1, 2, 3])));
        assert!(!passes("v=eq.\"{1,2}\"", json!([1, 2, 3])));
        assert!(passes("v=neq.\"{1,2}\"", json!([1, 2, 3])));
        assert!(passes("v=eq.{}", json!([])));
        assert!(passes("v=eq.{7}", json!([7])));
        assert!(passes(r#"v=eq."{a,\"b,c\"}""#, json!(["a", "b,c"])));
        assert!(passes("v=eq.\"{1,NULL}\"", json!([1, null])));
        assert!(!passes("v=eq.\"{1,2}\"", json!([1, null])));
        assert!(passes("v=eq.\"[1,2,3]\"", json!([1, 2, 3])));
        assert!(passes("v=eq.\"[1.0,2,3]\"", json!([1, 2, 3])));
        assert!(!passes("v=eq.\"[1,2]\"", json!([1, 2, 3])));
        assert!(Filter::parse("v=eq.{1,2}").is_err());
        assert!(
            !passes("v=eq.1", json!([1])),
            "not an array literal: unknown"
        );
        assert!(!passes("v=neq.1", json!([1])));
        assert!(!passes("v=lt.{2}", json!([1])), "no order on arrays");
        assert!(!passes("v=eq.{x}", json!([1])), "unreadable item: unknown");
        assert!(passes("v=in.(\"{1,2}\",\"{3}\")", json!([3])));
    }

    #[test]
    fn json_objects_compare_as_jsonb() {
        let object = json!({ "a": 1, "b": [true, null, "x"], "c": { "d": 2.5 } });
        assert!(passes(
            r#"v=eq."{\"c\":{\"d\":2.50},\"b\":[true,null,\"x\"],\"a\":1.0}""#,
            object.clone()
        ));
        assert!(!passes(r#"v=eq.{"a":1}"#, object.clone()));
        assert!(passes(r#"v=neq.{"a":1}"#, object.clone()));
        assert!(!passes("v=eq.{not json", object.clone()));
        assert!(!passes("v=neq.{not json", object.clone()));
        assert!(!passes(r#"v=gt.{"a":0}"#, object.clone()));
        assert!(passes(r#"v=isdistinct.{"a":2}"#, object));
    }

    // ----- matching: several conditions

    #[test]
    fn every_condition_must_hold() {
        let row = json!({ "status": "open", "priority": 3, "owner": null, "tags": ["a"] });
        assert!(passes_row("status=eq.open,priority=gt.2", row.clone()));
        assert!(!passes_row("status=eq.open,priority=gt.3", row.clone()));
        assert!(passes_row(
            "status=eq.open,owner=is.null,priority=in.(1,3)",
            row.clone()
        ));
        assert!(passes_row("priority=gt.0,priority=lt.100", row.clone()));
        assert!(!passes_row("priority=gt.0,nope=lt.100", row.clone()));
        assert!(passes_row(
            "status=not.in.(closed,\"on hold\"),tags=eq.{a}",
            row
        ));
    }

    // ----- Supabase's error texts

    #[test]
    fn supabase_error_texts() {
        let message = |text: &str| supabase_error_message(text);
        assert_eq!(message("foo"), r#"Error parsing `filter` params: ["foo"]"#);
        assert_eq!(
            message("undefined"),
            r#"Error parsing `filter` params: ["undefined"]"#
        );
        assert_eq!(
            message("wrong"),
            r#"Error parsing `filter` params: ["wrong"]"#
        );
        assert_eq!(
            message("subject=foo.hey"),
            r#"Error parsing `filter` params: ["foo", "hey"]"#
        );
        assert_eq!(
            message("foo=hey"),
            r#"Error parsing `filter` params: ["hey"]"#
        );
        assert_eq!(message("id=eq"), r#"Error parsing `filter` params: ["eq"]"#);
        assert_eq!(
            message("id=not.eq"),
            r#"Error parsing `filter` params: ["eq"]"#
        );
        assert_eq!(
            message("id=not.not.eq.5"),
            r#"Error parsing `filter` params: ["not", "eq.5"]"#
        );
        assert_eq!(message("id="), r#"Error parsing `filter` params: [""]"#);
        assert_eq!(
            message("id=.5"),
            r#"Error parsing `filter` params: ["", "5"]"#
        );
        assert_eq!(
            message("  foo  "),
            r#"Error parsing `filter` params: ["foo"]"#
        );
        assert_eq!(
            message("id=gt.0,id=foo.100"),
            r#"Error parsing `filter` params: ["foo", "100"]"#
        );
        assert_eq!(
            message("a=eq.1,,b=eq.2"),
            "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
        );
        assert_eq!(
            message("id=gt.0,"),
            "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
        );
        assert_eq!(
            message("id=in.1"),
            "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
        );
        // The first failing condition decides.
        assert_eq!(message("id=in.1,foo"), message("id=in.1"));
        assert_eq!(message("foo,id=in.1"), message("foo"));
    }

    #[test]
    fn supabase_error_texts_escape_like_elixir_inspect() {
        let message = |text: &str| supabase_error_message(text);
        assert_eq!(
            message(r#"a"b"#),
            r#"Error parsing `filter` params: ["a\"b"]"#
        );
        assert_eq!(
            message(r"a\b"),
            r#"Error parsing `filter` params: ["a\\b"]"#
        );
        assert_eq!(
            message("x#{y}"),
            r#"Error parsing `filter` params: ["x\#{y}"]"#
        );
        assert_eq!(
            message("x#y{"),
            r#"Error parsing `filter` params: ["x#y{"]"#
        );
        assert_eq!(
            message("a\tb\u{7}c\u{1b}d\u{7f}"),
            r#"Error parsing `filter` params: ["a\tb\ac\ed\d"]"#
        );
        assert_eq!(
            message("x=a\nb.c"),
            r#"Error parsing `filter` params: ["a\nb", "c"]"#
        );
        assert_eq!(
            message("héllo wörld"),
            r#"Error parsing `filter` params: ["héllo wörld"]"#
        );
        assert_eq!(
            message("a\u{a0}b\u{200b}"),
            r#"Error parsing `filter` params: ["a\u00A0b\u200B"]"#
        );
        // Not printable: a binary, bytes shown up to the inspect limit.
        assert_eq!(
            message("a\u{1}"),
            "Error parsing `filter` params: [<<97, 1>>]"
        );
        assert_eq!(
            message("x=\u{0}.\u{1}"),
            "Error parsing `filter` params: [<<0>>, <<1>>]"
        );
        let long = format!("{}\u{1}", "a".repeat(60));
        let mut bytes: Vec<String> = vec!["97".to_owned(); 49];
        bytes.push("...".to_owned());
        assert_eq!(
            message(&long),
            format!("Error parsing `filter` params: [<<{}>>]", bytes.join(", "))
        );
        let long_op = format!("x={}.\u{1}", "\u{2}".repeat(48));
        assert_eq!(
            message(&long_op),
            format!(
                "Error parsing `filter` params: [<<{}>>, <<...>>]",
                vec!["2"; 48].join(", ")
            )
        );
        let much_longer_op = format!("x={}.y", "\u{2}".repeat(49));
        assert_eq!(
            message(&much_longer_op),
            format!(
                "Error parsing `filter` params: [<<{}>>, ...]",
                vec!["2"; 49].join(", ")
            )
        );
        // Printable strings over 4096 characters are cut.
        let huge = "b".repeat(5000);
        assert_eq!(
            message(&huge),
            format!(
                "Error parsing `filter` params: [\"{}\" <> ...]",
                "b".repeat(4096)
            )
        );
    }

    #[test]
    fn supabase_error_texts_fall_back_to_ours() {
        assert_eq!(
            supabase_error_message("v=is.maybe"),
            "Error parsing `filter` params: invalid value `maybe` for `is` filter: must be null, true, false or unknown"
        );
        assert_eq!(
            supabase_error_message("=eq.1"),
            "Error parsing `filter` params: filter condition `=eq.1` has no column before `=`"
        );
        assert!(
            supabase_error_message("id=in.(1,,2)").starts_with(
                "Error parsing `filter` params: `in` filter value `(1,,2)` is malformed"
            )
        );
        assert_eq!(
            supabase_error_message("id=eq.1"),
            r#"Error parsing `filter` params: ["id=eq.1"]"#
        );
    }

    // ----- internals

    #[test]
    fn numeric_parsing_normalizes() {
        let finite = |negative, digits: &[u8], exponent| Numeric::Finite {
            negative,
            digits: digits.to_vec(),
            exponent,
        };
        assert_eq!(
            Numeric::parse("123.4500"),
            Some(finite(false, &[1, 2, 3, 4, 5], 3))
        );
        assert_eq!(Numeric::parse("-0.00120"), Some(finite(true, &[1, 2], -2)));
        assert_eq!(Numeric::parse("1e-3"), Some(finite(false, &[1], -2)));
        assert_eq!(Numeric::parse("-0.0"), Some(finite(false, &[], 0)));
        assert_eq!(
            Numeric::parse("1e99999999999999999999"),
            Some(finite(false, &[1], 1 + (1 << 40)))
        );
        assert_eq!(Numeric::parse("NaN"), Some(Numeric::NaN));
        assert_eq!(Numeric::parse("-Infinity"), Some(Numeric::NegInfinity));
        assert_eq!(Numeric::parse("."), None);
        assert_eq!(Numeric::parse(""), None);
        assert_eq!(Numeric::parse("1 2"), None);
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(
            days_from_civil(0, 3, 1) - days_from_civil(0, 2, 28),
            2,
            "year 0 (1 BC) is a leap year"
        );
    }

    // ----- properties

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = Filter::parse(&text);
            let _ = supabase_error_message(&text);
        }

        #[test]
        fn parse_never_panics_on_filter_like_text(text in r#"[a-z=.,()"\\ %_{}\[\]^$*+?|:0-9-]{0,40}"#) {
            if let Ok(filter) = Filter::parse(&text) {
                let row = json!({ "a": 1, "b": "x(y", "c": null, "d": [1, "2"], "e": { "f": true } });
                let _ = filter.matches(row.as_object().expect("an object"));
            }
            let _ = supabase_error_message(&text);
        }

        #[test]
        fn matching_never_panics(
            operator in prop::sample::select(vec![
                "eq", "neq", "lt", "lte", "gt", "gte", "like", "ilike", "match", "imatch", "isdistinct",
            ]),
            literal in "[a-z0-9 .:+T%_-]{0,24}",
            text in any::<String>(),
            number in any::<f64>(),
        ) {
            if let Ok(filter) = Filter::parse(&format!("v={operator}.{literal}")) {
                for value in [json!(text.clone()), json!(number), json!(true), Value::Null] {
                    let _ = filter.matches(json!({ "v": value }).as_object().expect("an object"));
                }
            }
        }

        #[test]
        fn translated_regexes_are_valid_crate_syntax(
            pattern in r"[ab(){}\[\]^$.*+?|\\:=,0-9dDsSwWmMyYbBAZxu&~<>#-]{0,24}",
            case_insensitive in any::<bool>(),
        ) {
            // Every pattern the translator accepts compiles: the only compile error is size.
            if let Err(reason) = Regex::compile(&pattern, case_insensitive) {
                prop_assert!(!reason.contains("could not be compiled"), "{}: {}", pattern, reason);
            }
        }

        #[test]
        fn integers_order_exactly(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(passes(&format!("v=lt.{b}"), json!(a)), a < b);
            prop_assert_eq!(passes(&format!("v=eq.{b}"), json!(a)), a == b);
            prop_assert_eq!(passes(&format!("v=gte.{b}.0"), json!(a)), a >= b);
        }

        #[test]
        fn floats_order_as_floats(a in -1e30f64..1e30, b in -1e30f64..1e30) {
            prop_assert_eq!(passes(&format!("v=lt.{b}"), json!(a)), a < b);
            prop_assert_eq!(passes(&format!("v=eq.{b:e}"), json!(a)), a == b);
        }

        #[test]
        fn like_without_wildcards_is_equality(text in "[a-zA-Z0-9 ]{0,12}", other in "[a-zA-Z0-9 ]{0,12}") {
            let quoted = format!("\"{text}\"");
            let like = format!("v=like.{quoted}");
            let ilike = format!("v=ilike.{quoted}");
            prop_assert!(passes(&like, json!(text.clone())));
            prop_assert_eq!(passes(&like, json!(other.clone())), text == other);
            prop_assert!(passes(&ilike, json!(text.to_uppercase())));
        }

        #[test]
        fn quoted_in_items_round_trip(values in prop::collection::vec("[a-z,() \"\\\\]{0,6}", 1..5)) {
            let quoted: Vec<String> = values
                .iter()
                .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let filter = format!("v=in.({})", quoted.join(","));
            let expected = Test::In(values.iter().cloned().map(Some).collect());
            prop_assert_eq!(only(&filter).2, expected);
            prop_assert!(passes(&filter, json!(values[0].clone())));
        }
    }

    #[test]
    fn conditions_are_inspected_as_elixir_tuples() {
        assert_eq!(supabase_inspect_conditions(""), "[]");
        assert_eq!(
            supabase_inspect_conditions("id=eq.1"),
            r#"[{"id", "eq", "1"}]"#
        );
        assert_eq!(
            supabase_inspect_conditions(r#"a=not.in.(1,2),b=like."x"#),
            r#"[{"a", "not.in", "(1,2)"}, {"b", "like", "\"x"}]"#
        );
    }
}
