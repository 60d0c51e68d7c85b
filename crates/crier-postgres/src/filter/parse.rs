//! The filter grammar: a filter split into conditions, and each condition read into a
//! column, a negation and a [`Test`].

use super::{CompareOp, Condition, FilterError, IsValue, LikePattern, MAX_IN_VALUES, Regex, Test};
use crate::pgtext::array;

/// Splits a trimmed filter on its top-level commas, exactly as Supabase's `split_top_level`
/// does (byte by byte; see the `filter` documentation).
pub(super) fn split_top_level(text: &str) -> Vec<&str> {
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

pub(super) fn parse_condition(segment: &str) -> Result<Condition, FilterError> {
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
pub(super) fn unquote_value(value: &str) -> String {
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
pub(super) fn parenthesized(value: &str) -> Option<&str> {
    value.strip_prefix('(')?.strip_suffix(')')
}

fn parse_in_list(value: &str) -> Result<Vec<Option<String>>, FilterError> {
    let Some(inner) = parenthesized(value) else {
        return Err(FilterError::InNotParenthesized {
            value: value.to_owned(),
        });
    };
    let items = array::literal_items(inner).map_err(|reason| FilterError::MalformedInList {
        value: value.to_owned(),
        reason,
    })?;
    if items.len() > MAX_IN_VALUES {
        return Err(FilterError::TooManyInValues { count: items.len() });
    }
    Ok(items)
}
