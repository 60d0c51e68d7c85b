//! `numeric_in`'s syntax: an optional sign, digits with an optional fraction and
//! exponent, or one of the special values; and the canonical text `numeric_out` writes.
//!
//! Rendering reads numbers PostgreSQL wrote and writes them as `to_jsonb` would; filters
//! read literals to compare them with row values. Both read the same grammar with
//! [`parse`], but they have always accepted slightly different inputs, so the
//! differences are options ([`Syntax`]) rather than two readers.

use super::is_space;

/// The variant of the syntax a caller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// The whitespace skipped around the number.
    pub(crate) space: Space,
    /// How long and how large an exponent may be.
    pub(crate) exponent: ExponentLimit,
}

/// The whitespace around a number that is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// What `str::trim` removes: Unicode white space.
    Unicode,
    /// PostgreSQL's `isspace`: ASCII white space only ([`is_space`]).
    Postgres,
}

/// What exponents are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExponentLimit {
    /// At most four digits and within ±1000, as `numeric_in` bounds it
    /// (`NUMERIC_MAX_PRECISION`); anything else is not a number.
    NumericIn,
    /// Any number of digits; the value saturates at ±2⁴⁰, far beyond any number a
    /// comparison can tell apart from it.
    Saturating,
}

impl Syntax {
    /// Numbers PostgreSQL wrote (`int`, `float` and `numeric` output, the numbers in
    /// `json` text), read back as `numeric_in` reads them. Surrounding Unicode white
    /// space is skipped, as it always was here; the server never writes any.
    pub(crate) const OUTPUT: Syntax = Syntax {
        space: Space::Unicode,
        exponent: ExponentLimit::NumericIn,
    };

    /// A filter's literal, compared with a row's number. Only the order matters, so an
    /// exponent beyond `numeric_in`'s bound still orders as the huge or tiny number it
    /// is.
    pub(crate) const LITERAL: Syntax = Syntax {
        space: Space::Postgres,
        exponent: ExponentLimit::Saturating,
    };
}

/// A number as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number<'a> {
    /// Digits, possibly with a fraction and an exponent.
    Finite(Decimal<'a>),
    /// `NaN` in any case, without a sign (as `numeric_in` and `float8in` read it).
    NaN,
    /// `Infinity` or `inf` in any case (`float8in` reads `inf` too), with its sign.
    Infinity {
        /// Written with `-`.
        negative: bool,
    },
}

/// A finite number as written: `whole.fraction × 10^exponent`. The digits are kept as
/// written, leading and trailing zeros included, because `numeric_out` keeps the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal<'a> {
    /// Written with `-` (`-0` too).
    pub(crate) negative: bool,
    /// The ASCII digits before the point (possibly none).
    pub(crate) whole: &'a str,
    /// The ASCII digits after the point (possibly none; not both are empty).
    pub(crate) fraction: &'a str,
    /// The exponent's value, within the [`ExponentLimit`].
    pub(crate) exponent: i64,
}

/// Reads `text` in the variant `syntax` of `numeric_in`'s syntax: surrounding
/// white space, an optional `+` or `-`, then digits with an optional `.` and fraction
/// (at least one digit in all) and an optional `e`/`E` exponent with an optional sign;
/// or `NaN`, `Infinity`, `inf` (any case). `None` for anything else.
pub(crate) fn parse(text: &str, syntax: Syntax) -> Option<Number<'_>> {
    let text = match syntax.space {
        Space::Unicode => text.trim(),
        Space::Postgres => text.trim_matches(is_space),
    };
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.eq_ignore_ascii_case("nan") {
        return (unsigned.len() == text.len()).then_some(Number::NaN);
    }
    if unsigned.eq_ignore_ascii_case("infinity") || unsigned.eq_ignore_ascii_case("inf") {
        return Some(Number::Infinity { negative });
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let exponent = match exponent {
        Some(exponent) => read_exponent(exponent, syntax.exponent)?,
        None => 0,
    };
    Some(Number::Finite(Decimal {
        negative,
        whole,
        fraction,
        exponent,
    }))
}

/// The text `numeric_out(numeric_in(text))` gives for a finite number PostgreSQL wrote
/// (read with [`Syntax::OUTPUT`]): no exponent, no sign on zero, and as many fraction
/// digits as the input had after applying its exponent (`1.5e-10` → `0.00000000015`,
/// `1.50e2` → `150`, `-0` → `0`). `None` for anything else (`NaN`, `Infinity`, an
/// exponent `numeric_in` would reject).
pub(crate) fn normalize(text: &str) -> Option<String> {
    match parse(text, Syntax::OUTPUT)? {
        Number::Finite(decimal) => Some(decimal.canonical_text()),
        Number::NaN | Number::Infinity { .. } => None,
    }
}

impl Decimal<'_> {
    /// The number as `numeric_out` writes it (see [`normalize`]). For a number read with
    /// [`Syntax::OUTPUT`], whose exponent is at most ±1000: the text has as many digits
    /// as the exponent moves the point by.
    pub(crate) fn canonical_text(&self) -> String {
        // The digits, and where the decimal point falls among them after the exponent.
        let digits = [self.whole.as_bytes(), self.fraction.as_bytes()].concat();
        let point = self.whole.len() as i64 + self.exponent;
        let scale = (self.fraction.len() as i64 - self.exponent).max(0);
        let digit_at = |i: i64| -> u8 {
            if i >= 0 && (i as usize) < digits.len() {
                digits[i as usize]
            } else {
                b'0'
            }
        };
        let mut out = String::with_capacity(point.max(1) as usize + scale as usize + 3);
        if self.negative && digits.iter().any(|&d| d != b'0') {
            out.push('-');
        }
        let integer: Vec<u8> = (0..point)
            .map(digit_at)
            .skip_while(|&d| d == b'0')
            .collect();
        if integer.is_empty() {
            out.push('0');
        } else {
            out.extend(integer.into_iter().map(char::from));
        }
        if scale > 0 {
            out.push('.');
            out.extend((point..point + scale).map(|i| char::from(digit_at(i))));
        }
        out
    }
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// The value of an exponent's text (after the `e`): an optional sign, then digits.
fn read_exponent(text: &str, limit: ExponentLimit) -> Option<i64> {
    /// Far beyond any number's exponent, and small enough that the arithmetic on it
    /// (adding a count of digits) cannot overflow.
    const SATURATION: i64 = 1 << 40;
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !all_digits(digits) {
        return None;
    }
    let magnitude = match limit {
        ExponentLimit::NumericIn => {
            // numeric_in rejects exponents beyond ±1000 (NUMERIC_MAX_PRECISION).
            if digits.len() > 4 {
                return None;
            }
            let magnitude: i64 = digits.parse().ok()?;
            if magnitude > 1000 {
                return None;
            }
            magnitude
        }
        ExponentLimit::Saturating => digits.bytes().fold(0, |value: i64, d| {
            (value * 10 + i64::from(d - b'0')).min(SATURATION)
        }),
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finite<'a>(
        negative: bool,
        whole: &'a str,
        fraction: &'a str,
        exponent: i64,
    ) -> Option<Number<'a>> {
        Some(Number::Finite(Decimal {
            negative,
            whole,
            fraction,
            exponent,
        }))
    }

    #[test]
    fn the_grammar_is_numeric_in_s() {
        for syntax in [Syntax::OUTPUT, Syntax::LITERAL] {
            assert_eq!(parse("12.50", syntax), finite(false, "12", "50", 0));
            assert_eq!(parse("-.5e-3", syntax), finite(true, "", "5", -3));
            assert_eq!(parse("+5.E+2", syntax), finite(false, "5", "", 2));
            assert_eq!(parse(" 7\t", syntax), finite(false, "7", "", 0));
            assert_eq!(parse("NaN", syntax), Some(Number::NaN));
            assert_eq!(parse("nan", syntax), Some(Number::NaN));
            assert_eq!(parse("+NaN", syntax), None, "NaN takes no sign");
            assert_eq!(
                parse("-Infinity", syntax),
                Some(Number::Infinity { negative: true })
            );
            assert_eq!(
                parse("INF", syntax),
                Some(Number::Infinity { negative: false })
            );
            for bad in [
                "", "-", ".", "e5", "1e", "1e+", "1.2.3", "1e5e5", "1 2", "0x10", "1_000",
            ] {
                assert_eq!(parse(bad, syntax), None, "{bad:?}");
            }
        }
    }

    /// Where the callers have always differed: rendering trims Unicode white space and
    /// keeps to `numeric_in`'s exponent bound; filters trim only PostgreSQL's white
    /// space and take any exponent.
    #[test]
    fn the_two_syntaxes_differ_in_white_space_and_exponents() {
        assert_eq!(parse("\u{a0}5", Syntax::OUTPUT), finite(false, "5", "", 0));
        assert_eq!(parse("\u{a0}5", Syntax::LITERAL), None);
        assert_eq!(
            parse("5\u{2003}", Syntax::OUTPUT),
            finite(false, "5", "", 0)
        );
        assert_eq!(parse("5\u{2003}", Syntax::LITERAL), None);

        assert_eq!(
            parse("1e1000", Syntax::OUTPUT),
            finite(false, "1", "", 1000)
        );
        assert_eq!(
            parse("1e-1000", Syntax::OUTPUT),
            finite(false, "1", "", -1000)
        );
        assert_eq!(parse("1e1001", Syntax::OUTPUT), None);
        assert_eq!(parse("1e+0005", Syntax::OUTPUT), finite(false, "1", "", 5));
        assert_eq!(
            parse("1e00005", Syntax::OUTPUT),
            None,
            "five exponent digits"
        );
        assert_eq!(
            parse("1e1001", Syntax::LITERAL),
            finite(false, "1", "", 1001)
        );
        assert_eq!(parse("1e00005", Syntax::LITERAL), finite(false, "1", "", 5));
        assert_eq!(
            parse("1e-99999999999999999999", Syntax::LITERAL),
            finite(false, "1", "", -(1 << 40))
        );
    }

    #[test]
    fn normalize_writes_what_numeric_out_writes() {
        for (text, canonical) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.000", "0.000"),
            ("007", "7"),
            ("1.50e2", "150"),
            ("1.500e1", "15.00"),
            ("1e+15", "1000000000000000"),
            ("1.5e-10", "0.00000000015"),
            ("-12.5", "-12.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("+3", "3"),
        ] {
            assert_eq!(normalize(text).as_deref(), Some(canonical), "{text:?}");
        }
        for text in ["NaN", "Infinity", "-Infinity", "1e1001", "abc", ""] {
            assert_eq!(normalize(text), None, "{text:?}");
        }
    }
}
