//! Unit tests of filters, by concern: the grammar, matching, regular expressions,
//! Supabase's texts, and properties over arbitrary input.

use serde_json::{Map, Value, json};

use super::parse::unquote_value;
use super::regexp::translate_regex;
use super::*;

mod matching;
mod parsing;
mod properties;
mod regexp;
mod supabase;

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
