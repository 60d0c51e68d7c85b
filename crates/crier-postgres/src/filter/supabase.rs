//! Supabase's texts about filters: the error for one it cannot parse, and the
//! conditions as its `system` errors show them.

use super::Filter;
use super::elixir::{elixir_inspect_binary, elixir_inspect_list};
use super::parse::{parenthesized, split_top_level};

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
/// same prefix followed by the [`FilterError`](super::FilterError) text; for a filter both accept (this function
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
