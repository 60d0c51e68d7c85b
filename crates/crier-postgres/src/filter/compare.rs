//! A condition evaluated on a row value: the literal read in the value's type, compared
//! with SQL's three-valued logic (`None` is unknown). See the module documentation of
//! [`filter`](crate::filter) for the rules.

use std::cmp::Ordering;

use serde_json::Value;

use super::numeric::Numeric;
use super::{CompareOp, IsValue, Test};
use crate::pgtext::datetime::{Form, Temporal};
use crate::pgtext::{array, boolean, is_space, uuid};

impl Test {
    /// The three-valued result on a present value: `None` is SQL's unknown.
    pub(super) fn eval(&self, value: &Value) -> Option<bool> {
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
        Value::Bool(b) => boolean::parse(literal).map(|literal| b.cmp(&literal)),
        Value::Number(n) => Some(Numeric::of(n).cmp(&Numeric::parse(literal)?)),
        Value::String(text) => Some(compare_text(text, literal)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// An array value against a PostgreSQL array literal (`{…}`) or a JSON array (`[…]`).
fn array_equals(items: &[Value], literal: &str) -> Option<bool> {
    let trimmed = literal.trim_matches(is_space);
    if trimmed.starts_with('[') {
        let literal: Value = serde_json::from_str(trimmed).ok()?;
        return Some(literal.as_array().is_some_and(|other| {
            other.len() == items.len() && items.iter().zip(other).all(|(a, b)| json_equal(a, b))
        }));
    }
    let inner = trimmed.strip_prefix('{')?.strip_suffix('}')?;
    let literal_items = array::literal_items(inner).ok()?;
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

/// Two strings, the second a literal, compared as the `filter` documentation describes.
fn compare_text(text: &str, literal: &str) -> Ordering {
    if uuid::is_canonical(text)
        && let (Some(a), Some(b)) = (uuid::parse(text), uuid::parse(literal))
    {
        return a.cmp(&b);
    }
    if let Some(a) = Temporal::parse(text, Form::ToJsonb)
        && let Some(b) = Temporal::parse(literal, Form::Literal)
    {
        return compare_temporal(&a, &b);
    }
    if matches!(text, "NaN" | "Infinity" | "-Infinity")
        && let (Some(a), Some(b)) = (Numeric::parse(text), Numeric::parse(literal))
    {
        return a.cmp(&b);
    }
    text.as_bytes().cmp(literal.as_bytes())
}

/// How a row value (read in `to_jsonb`'s forms, so its kind is the column's type)
/// compares with a literal cast to that type.
fn compare_temporal(value: &Temporal, literal: &Temporal) -> Ordering {
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
    ) = (value, literal)
    else {
        return rank(value).cmp(&rank(literal));
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
