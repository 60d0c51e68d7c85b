//! `date`, `timestamp` and `timestamptz` texts: the forms `to_jsonb` writes, and the
//! literals PostgreSQL's date/time input reads (the subset filters accept).

use super::calendar::{days_from_civil, days_in_month};
use super::cursor::Cursor;
use super::is_space;

/// A date or timestamp, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporal {
    /// `-infinity`.
    NegInfinity,
    /// A date, with a time for a timestamp, with an offset for a `timestamptz`.
    Finite {
        /// Days since 1970-01-01 (proleptic Gregorian, astronomical years).
        days: i64,
        /// Microseconds since midnight, if there is a time.
        time: Option<i64>,
        /// Seconds east of UTC, if there is an offset.
        offset: Option<i64>,
    },
    /// `infinity`.
    Infinity,
}

/// Which texts [`Temporal::parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Only `to_jsonb`'s forms: `2026-01-02`, `2026-01-02T03:04:05[.f{1,6}]`, optionally
    /// `+hh:mm[:ss]`, optionally ` BC`; `infinity`, `-infinity`. A string in one of these
    /// forms is (almost certainly) a date or timestamp column's value.
    ToJsonb,
    /// A literal, as the date/time input functions read it: also surrounding
    /// white space, `t` or spaces before the time, optional seconds, any fraction
    /// (rounded to microseconds), spaces before an offset, and `Z`, `±hh`, `±hhmm`,
    /// `±hh:mm`, `±hh:mm:ss` offsets; `infinity` in any case.
    Literal,
}

impl Temporal {
    /// Reads `text` in `form`; `None` if it is not a valid date or timestamp there.
    pub(crate) fn parse(text: &str, form: Form) -> Option<Temporal> {
        let strict = form == Form::ToJsonb;
        let text = if strict {
            text
        } else {
            text.trim_matches(is_space)
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
        let days = date(&mut cursor, bc)?;
        if cursor.at_end() {
            return Some(Temporal::Finite {
                days,
                time: None,
                offset: None,
            });
        }
        match cursor.next()? {
            'T' => {}
            't' if !strict => {}
            ' ' if !strict => cursor.skip_spaces(),
            _ => return None,
        }
        let time = time_of_day(&mut cursor, strict)?;
        if !strict {
            cursor.skip_spaces();
        }
        let offset = if cursor.at_end() {
            None
        } else {
            Some(offset(&mut cursor, strict)?)
        };
        cursor.at_end().then_some(Temporal::Finite {
            days,
            time: Some(time),
            offset,
        })
    }
}

/// `yyyy-mm-dd` (four to nine year digits), as days since 1970-01-01; `bc` counts the
/// year before year 1 (1 BC is year 0).
fn date(cursor: &mut Cursor<'_>, bc: bool) -> Option<i64> {
    let year_digits = cursor.digits();
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
    cursor.expect('-')?;
    let month = cursor.fixed_digits(2)?;
    cursor.expect('-')?;
    let day = cursor.fixed_digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// `hh:mm[:ss[.f…]]` (seconds required when `strict`), as microseconds since midnight.
/// `24:00:00` is midnight at the end of the day, as PostgreSQL reads it.
fn time_of_day(cursor: &mut Cursor<'_>, strict: bool) -> Option<i64> {
    let hour = cursor.fixed_digits(2)?;
    cursor.expect(':')?;
    let minute = cursor.fixed_digits(2)?;
    let mut second = 0;
    let mut micros = 0;
    if cursor.peek() == Some(':') || strict {
        cursor.expect(':')?;
        second = cursor.fixed_digits(2)?;
        if cursor.peek() == Some('.') {
            cursor.next();
            let fraction = cursor.digits();
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
    Some(((hour * 60 + minute) * 60 + second) * 1_000_000 + micros)
}

/// A UTC offset in seconds east: `±hh:mm[:ss]` if `strict`, else also `Z`, `±hh`,
/// `±hhmm`.
fn offset(cursor: &mut Cursor<'_>, strict: bool) -> Option<i64> {
    let sign = match cursor.next()? {
        '+' => 1,
        '-' => -1,
        'Z' | 'z' if !strict => return Some(0),
        _ => return None,
    };
    let hours = cursor.fixed_digits(2)?;
    let mut minutes = 0;
    let mut seconds = 0;
    match cursor.peek() {
        Some(':') => {
            cursor.next();
            minutes = cursor.fixed_digits(2)?;
            if cursor.peek() == Some(':') {
                cursor.next();
                seconds = cursor.fixed_digits(2)?;
            }
        }
        Some('0'..='9') if !strict => minutes = cursor.fixed_digits(2)?,
        None if !strict => {}
        _ => return None,
    }
    if hours > 15 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60 + seconds))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finite(days: i64, time: Option<i64>, offset: Option<i64>) -> Option<Temporal> {
        Some(Temporal::Finite { days, time, offset })
    }

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn to_jsonb_forms() {
        let form = Form::ToJsonb;
        assert_eq!(Temporal::parse("1970-01-02", form), finite(1, None, None));
        assert_eq!(
            Temporal::parse("1970-01-01T01:00:00.5", form),
            finite(0, Some(HOUR + 500_000), None)
        );
        assert_eq!(
            Temporal::parse("1970-01-01T00:00:00+05:30", form),
            finite(0, Some(0), Some(19_800))
        );
        assert_eq!(
            Temporal::parse("0001-01-01 BC", form),
            finite(days_from_civil(0, 1, 1), None, None),
            "1 BC is year 0"
        );
        assert_eq!(Temporal::parse("infinity", form), Some(Temporal::Infinity));
        for literal_only in [
            " 1970-01-01",
            "1970-01-01 01:00:00",
            "1970-01-01T01:00",
            "1970-01-01T01:00:00Z",
            "1970-01-01T01:00:00+05",
            "1970-01-01T01:00:00.1234567",
            "Infinity",
        ] {
            assert_eq!(
                Temporal::parse(literal_only, form),
                None,
                "{literal_only:?}"
            );
            assert!(
                Temporal::parse(literal_only, Form::Literal).is_some(),
                "{literal_only:?}"
            );
        }
    }

    #[test]
    fn literals() {
        let form = Form::Literal;
        assert_eq!(
            Temporal::parse(" 1970-01-01t01:00 z ", form),
            finite(0, Some(HOUR), Some(0))
        );
        assert_eq!(
            Temporal::parse("1970-01-01  24:00:00 -0130", form),
            finite(0, Some(24 * HOUR), Some(-5_400))
        );
        assert_eq!(
            Temporal::parse("1970-01-01T00:00:00.0000005", form),
            finite(0, Some(1), None),
            "rounded to microseconds"
        );
        for bad in [
            "1970-02-29",
            "1970-13-01",
            "0000-01-01 BC",
            "70-01-01",
            "1970-01-01T24:00:01",
            "1970-01-01T01:00+16",
            "1970-01-01T01:00:00.",
            "1970-01-01T01:00x",
            "１９７０-01-01",
        ] {
            assert_eq!(Temporal::parse(bad, form), None, "{bad:?}");
        }
    }
}
