//! The proleptic Gregorian calendar, with astronomical year numbers (year 0 is 1 BC), as
//! PostgreSQL counts dates: conversions between a date and its day number since
//! 1970-01-01.
//!
//! Both directions count in 400-year eras of 146,097 days that start on March 1st, so
//! the leap day is the last day of a year and needs no special case. 719,468 is the
//! number of days from 0000-03-01 to 1970-01-01.

/// Days in a 400-year era.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (the start of an era) to 1970-01-01.
const EPOCH_FROM_ERA_START: i64 = 719_468;

/// Whether `year` (astronomical: 0 is 1 BC, a leap year) has a February 29th.
pub(crate) fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// The number of days of `month` (1 to 12) in `year`.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date (negative before it). The date must be valid.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start on March 1st: January and February belong to the year before.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    // Months from March: 153 days per five months.
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_FROM_ERA_START
}

/// The date `days` after 1970-01-01, as `(year, month, day)`: the inverse of
/// [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + EPOCH_FROM_ERA_START;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(
            days_from_civil(0, 3, 1) - days_from_civil(0, 2, 28),
            2,
            "year 0 (1 BC) is a leap year"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn month_lengths() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(-4, 2), 29, "5 BC");
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_in_month(2026, 12), 31);
    }

    proptest! {
        /// Each day number is one date, the next day's number is one more, and the
        /// conversions are inverses.
        #[test]
        fn conversions_are_inverse_and_consecutive(days in -1_000_000_000i64..1_000_000_000) {
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month));
            prop_assert!(day >= 1 && day <= days_in_month(year, month));
            prop_assert_eq!(days_from_civil(year, month, day), days);
            let next = civil_from_days(days + 1);
            let expected = if day < days_in_month(year, month) {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
            prop_assert_eq!(next, expected);
        }
    }
}
