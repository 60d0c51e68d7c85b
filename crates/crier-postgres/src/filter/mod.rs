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
//!
//! # Parts
//!
//! - `parse`: the grammar ([`Filter::parse`]).
//! - `compare`: a condition evaluated on a row value, with SQL's three-valued logic.
//! - `numeric`: numbers ordered as `numeric` orders them.
//! - `like`, `regexp`: `like`/`ilike` patterns and `match`/`imatch` regular expressions.
//! - `supabase`, `elixir`: Supabase's error texts, which quote the filter as Elixir's
//!   `inspect` does.
//!
//! The literals' syntaxes (`numeric`, `bool`, `uuid`, dates and timestamps, array
//! literals) are read by `crate::pgtext`, shared with rendering.

use serde_json::{Map, Value};

mod compare;
mod elixir;
mod like;
mod numeric;
mod parse;
mod regexp;
mod supabase;
#[cfg(test)]
mod tests;

use like::LikePattern;
use regexp::Regex;
pub use supabase::{supabase_error_message, supabase_inspect_conditions};

/// The most items an `in` list may have (Supabase: "too many values for `in` filter.
/// Maximum 100").
pub const MAX_IN_VALUES: usize = 100;

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
        let conditions = parse::split_top_level(text)
            .into_iter()
            .map(parse::parse_condition)
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
