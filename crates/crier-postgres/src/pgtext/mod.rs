//! PostgreSQL's text formats, read the way PostgreSQL reads them.
//!
//! Rendering (`types`) reads the text output pgoutput sends for each value; filters
//! (`filter`) read the literals of a subscription's filter as PostgreSQL would cast them.
//! Both read the same syntaxes, so each syntax has one reader here, and where the two
//! callers accept different inputs the reader takes an option that says so.
//!
//! - [`cursor`]: a position in a text being parsed.
//! - [`numeric`]: `numeric_in`'s syntax, and the canonical text `numeric_out` writes.
//! - [`calendar`]: the proleptic Gregorian calendar, as days since 1970-01-01.
//! - [`datetime`]: `date`, `timestamp` and `timestamptz` texts.
//! - [`boolean`] and [`uuid`]: `boolin` and `uuid_in`.
//! - [`array`](mod@array): `array_out` text, and the items of an array literal.
//! - [`record`]: `record_out` text.
//! - [`hstore`]: `hstore_out` text.
//! - [`jsonb`]: JSON text read as `jsonb` stores it.
//!
//! Every reader is hand-written: the crates that read these formats either read another
//! dialect (no `NaN`, no ` BC`, no `±hh` offsets) or round (decimals), and the callers
//! need PostgreSQL's exact reading. None of them panics on any input.

pub(crate) mod array;
pub(crate) mod boolean;
pub(crate) mod calendar;
pub(crate) mod cursor;
pub(crate) mod datetime;
pub(crate) mod hstore;
pub(crate) mod jsonb;
pub(crate) mod numeric;
pub(crate) mod record;
pub(crate) mod uuid;

/// How deep arrays and JSON may nest (and, in `types`, composites and domains) before a
/// value is given up on: a guard against stack exhaustion. PostgreSQL allows 6 array
/// dimensions and composites cannot contain themselves, so only malformed or hostile
/// text gets near it.
pub(crate) const MAX_DEPTH: usize = 256;

/// PostgreSQL's `scanner_isspace` / `array_isspace`, and the `isspace` that `numeric_in`
/// and `boolin` skip: ASCII whitespace only (a no-break space is not whitespace to them).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}
