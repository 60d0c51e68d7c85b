//! The commit time as Supabase delivers it.

use crate::pgtext::calendar::civil_from_days;
use crate::pgtext::datetime::{Form, Temporal};

/// A commit time (microseconds since the Unix epoch) as Supabase delivers it: UTC,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated (PostgreSQL's `to_char` with
/// `MS`). Years beyond 9999 get more digits; times before year 1 are not meaningful.
pub fn format_commit_timestamp(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1_000;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60,
    )
}

/// Reads a timestamp as Crier delivers them, back into microseconds since the Unix epoch:
/// a `commit_timestamp` (`2026-01-02T03:04:05.678Z`) or a `timestamptz` column's value
/// (`2026-01-02T03:04:05.678901+00:00`), or any literal PostgreSQL's input reads with a
/// date, a time and an offset. `None` for anything else (no offset, an infinity).
/// For tools that measure delivery, so that they share this crate's calendar.
pub fn parse_timestamp_micros(text: &str) -> Option<i64> {
    match Temporal::parse(text, Form::Literal)? {
        Temporal::Finite {
            days,
            time: Some(time),
            offset: Some(offset),
        } => Some(days * 86_400_000_000 + time - offset * 1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn delivered_timestamps_read_back_to_their_microseconds() {
        // 2026-01-02T03:04:05Z is 1,767,323,045 s after the epoch.
        let base = 1_767_323_045_000_000;
        assert_eq!(
            parse_timestamp_micros("2026-01-02T03:04:05.678901+00:00"),
            Some(base + 678_901)
        );
        assert_eq!(
            parse_timestamp_micros("2026-01-02T03:04:05.678Z"),
            Some(base + 678_000)
        );
        assert_eq!(
            parse_timestamp_micros("2026-01-02T08:34:05.5+05:30"),
            Some(base + 500_000)
        );
        assert_eq!(
            parse_timestamp_micros(&format_commit_timestamp(base + 42_000)),
            Some(base + 42_000)
        );
        assert_eq!(parse_timestamp_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp_micros("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000),
            "a leap day"
        );
        assert_eq!(
            parse_timestamp_micros("2026-01-02T03:04:05"),
            None,
            "no offset"
        );
        assert_eq!(parse_timestamp_micros("garbage"), None);
    }

    proptest! {
        #[test]
        fn commit_timestamps_match_a_day_by_day_calendar(
            micros in -62_135_596_800_000_000i64..253_402_300_800_000_000i64
        ) {
            prop_assert_eq!(format_commit_timestamp(micros), reference_timestamp(micros));
        }
    }

    /// The same timestamp counted year by year and month by month from 1970.
    fn reference_timestamp(micros: i64) -> String {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let year_days = |y: i64| if leap(y) { 366 } else { 365 };
        let mut seconds = micros.div_euclid(1_000_000);
        let millis = micros.rem_euclid(1_000_000) / 1_000;
        let mut days = seconds.div_euclid(86_400);
        seconds = seconds.rem_euclid(86_400);
        let mut year = 1970;
        while days < 0 {
            year -= 1;
            days += year_days(year);
        }
        while days >= year_days(year) {
            days -= year_days(year);
            year += 1;
        }
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 0;
        while days >= lengths[month] {
            days -= lengths[month];
            month += 1;
        }
        format!(
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            month + 1,
            days + 1,
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )
    }

    #[test]
    fn commit_timestamps_known_values() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (999, "1970-01-01T00:00:00.000Z"),
            (999_999, "1970-01-01T00:00:00.999Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-1_000, "1969-12-31T23:59:59.999Z"),
            (-1_001, "1969-12-31T23:59:59.998Z"),
            (-14_182_940_000_000, "1969-07-20T20:17:40.000Z"),
            (-2_203_891_200_000_000, "1900-03-01T00:00:00.000Z"),
            (-2_203_891_200_000_001, "1900-02-28T23:59:59.999Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999_999, "2000-02-29T23:59:59.999Z"),
            (1_709_251_199_999_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000_000, "2024-03-01T00:00:00.000Z"),
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000Z"),
            (1_767_323_045_678_901, "2026-01-02T03:04:05.678Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000_000, "10000-01-01T00:00:00.000Z"),
            (-62_135_596_800_000_000, "0001-01-01T00:00:00.000Z"),
        ];
        for (micros, expected) in cases {
            assert_eq!(format_commit_timestamp(micros), expected, "{micros}");
        }
        // The extremes do not overflow.
        format_commit_timestamp(i64::MIN);
        format_commit_timestamp(i64::MAX);
    }
}
