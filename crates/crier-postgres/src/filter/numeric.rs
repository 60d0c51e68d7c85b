//! Numbers ordered as PostgreSQL's `numeric` orders them.

use std::cmp::Ordering;

use crate::pgtext::numeric::{self, Decimal, Number, Syntax};

/// A number as PostgreSQL's `numeric` orders it: `-Infinity` < finite < `Infinity` < `NaN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Numeric {
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
    pub(super) fn of(number: &serde_json::Number) -> Numeric {
        // `serde_json` writes integers exactly and floats as the shortest round-trip
        // decimal, both of which `parse` reads.
        Numeric::parse(&number.to_string()).unwrap_or(Numeric::NaN)
    }

    /// A literal in `numeric_in`'s syntax (plus `float8in`'s `inf`), read by
    /// [`crate::pgtext::numeric`] as filters read it ([`Syntax::LITERAL`]). Only ordering is
    /// needed here, so the number keeps its significant digits and where they stand,
    /// exactly, whatever their count (decimal crates round or read another syntax).
    pub(super) fn parse(text: &str) -> Option<Numeric> {
        Some(match numeric::parse(text, Syntax::LITERAL)? {
            Number::NaN => Numeric::NaN,
            Number::Infinity { negative: true } => Numeric::NegInfinity,
            Number::Infinity { negative: false } => Numeric::Infinity,
            Number::Finite(decimal) => Numeric::of_decimal(&decimal),
        })
    }

    /// A finite number's significant digits, and their exponent.
    fn of_decimal(decimal: &Decimal<'_>) -> Numeric {
        let digits: Vec<u8> = decimal
            .whole
            .bytes()
            .chain(decimal.fraction.bytes())
            .map(|d| d - b'0')
            .collect();
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        let trailing = digits[leading..]
            .iter()
            .rev()
            .take_while(|&&d| d == 0)
            .count();
        let significant = digits[leading..digits.len() - trailing].to_vec();
        if significant.is_empty() {
            return Numeric::Finite {
                negative: false,
                digits: significant,
                exponent: 0,
            };
        }
        // Both counts are at most the text's length, which fits an i64; the exponent is
        // at most ±2⁴⁰ ([`Syntax::LITERAL`] saturates it), so the sum cannot overflow.
        let integer_digits = i64::try_from(decimal.whole.len()).unwrap_or(i64::MAX);
        let leading = i64::try_from(leading).unwrap_or(i64::MAX);
        Numeric::Finite {
            negative: decimal.negative,
            digits: significant,
            exponent: integer_digits - leading + decimal.exponent,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Numeric::NegInfinity => 0,
            Numeric::Finite { .. } => 1,
            Numeric::Infinity => 2,
            Numeric::NaN => 3,
        }
    }

    pub(super) fn cmp(&self, other: &Numeric) -> Ordering {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
