//! Timestamps: the forms the Beskedfordeler sends, and the one form the replica stores.
//!
//! Every time in the replica is UTC text `YYYY-MM-DDTHH:MM:SS.fffZ`, always with three fraction
//! digits, so that string order is time order in SQL. That only holds for four-digit years, so
//! only instants from `0001-01-01T00:00:00.000Z` to `9999-12-31T23:59:59.999Z` are ever stored:
//! [`parse_timestamp`] and [`normalize`] refuse anything outside that range rather than bend it.

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Europe::Copenhagen;

/// The first year the stored form can hold.
pub const FIRST_YEAR: i32 = 1;
/// The last year the stored form can hold.
pub const LAST_YEAR: i32 = 9999;

/// The largest offset from UTC accepted, in seconds (14 hours, as in xs:dateTime).
const MAX_OFFSET_SECONDS: i32 = 14 * 3600;
/// Danish winter time, UTC+1, in seconds.
const WINTER: i32 = 3600;
/// Danish summer time, UTC+2, in seconds.
const SUMMER: i32 = 2 * 3600;

/// Whether `instant` lies in the years the stored form can hold ([`FIRST_YEAR`]..=[`LAST_YEAR`]).
pub fn is_storable(instant: DateTime<Utc>) -> bool {
    (FIRST_YEAR..=LAST_YEAR).contains(&instant.year())
}

/// Formats a UTC instant the way the replica stores it, or `None` when its year is outside
/// [`FIRST_YEAR`]..=[`LAST_YEAR`].
pub fn try_format_utc(instant: DateTime<Utc>) -> Option<String> {
    is_storable(instant).then(|| format_utc(instant))
}

/// Formats a UTC instant the way the replica stores it.
///
/// Every instant from year [`FIRST_YEAR`] to [`LAST_YEAR`] gets the stored form
/// `YYYY-MM-DDTHH:MM:SS.fffZ`; the fraction is cut (not rounded) to milliseconds. An instant
/// outside those years is never bent into that form: its year is written with an explicit sign
/// and at least four digits (`+10000-01-01T00:00:00.000Z`, `-0001-…`, `+0000-…`), so the text is
/// still true but cannot be mistaken for a stored value. Use [`try_format_utc`] to refuse such
/// instants instead; [`parse_timestamp`] never returns one. A leap second (which chrono can
/// represent, although nothing here produces one) is written as second `60`.
pub fn format_utc(instant: DateTime<Utc>) -> String {
    // By hand: this runs for every timestamp of every message, and is much cheaper than
    // chrono's general formatter.
    let (date, time) = (instant.date_naive(), instant.time());
    let (second, nanos) = match time.nanosecond().checked_sub(1_000_000_000) {
        Some(leap) => (time.second() + 1, leap),
        None => (time.second(), time.nanosecond()),
    };
    let mut out = String::with_capacity(24);
    if is_storable(instant) {
        push_digits(&mut out, date.year().unsigned_abs(), 4, '-');
    } else {
        out.push_str(&format!("{:+05}-", date.year()));
    }
    push_digits(&mut out, date.month(), 2, '-');
    push_digits(&mut out, date.day(), 2, 'T');
    push_digits(&mut out, time.hour(), 2, ':');
    push_digits(&mut out, time.minute(), 2, ':');
    push_digits(&mut out, second, 2, '.');
    push_digits(&mut out, nanos / 1_000_000, 3, 'Z');
    out
}

/// Appends the last `width` (at most 4) decimal digits of `value`, then `after`.
fn push_digits(out: &mut String, value: u32, width: usize, after: char) {
    let mut digits = [b'0'; 4];
    let mut rest = value;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    for &digit in &digits[..width] {
        out.push(char::from(digit));
    }
    out.push(after);
}

/// Now, in the replica's format.
pub fn now_utc() -> String {
    format_utc(Utc::now())
}

/// A stored timestamp as Danish local time for people (`2026-03-01 11:00:00`), the operator's
/// clock; the text as it is when it is not a stored timestamp.
pub fn local_display(stored: &str) -> String {
    match parse_stored(stored) {
        Some(instant) => instant
            .with_timezone(&Copenhagen)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => stored.to_owned(),
    }
}

/// A timestamp as the replica stores it (RFC 3339, `2026-03-01T10:00:00.000Z`), or None.
pub fn parse_stored(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// Parses a `TidsstempelDatoTid` value into UTC.
///
/// The accepted form is the xs:dateTime lexical form with a four-digit year:
/// `YYYY-MM-DDThh:mm:ss[.f…][zone]`, where
/// - every digit is an ASCII digit and every field has exactly the width shown;
/// - the date must exist (`2023-02-30` is refused);
/// - `hh` is `00`..=`23`, or `24` for `24:00:00` exactly (any fraction all zeros), which is
///   midnight at the end of that day, that is `00:00:00` on the next day;
/// - `ss` is `00`..=`59`: a leap second (`23:59:60`) is refused;
/// - the fraction is a dot and at least one digit (`12:00:00.Z` is refused); any number of digits
///   is read, and everything past milliseconds is cut, not rounded;
/// - `zone` is `Z`, or an offset written exactly `+hh:mm` or `-hh:mm` with `mm` below 60 and at
///   most `14:00` either way (`+14:00` and `-00:00` yes; `+14:01`, `+15:00`, `+00:60`, `+1:00`,
///   `+01:0`, `+01`, `+0100` no), or absent;
/// - the separators `T` and `Z` may also be written `t` and `z` (as RFC 3339 allows);
/// - space, tab, CR and LF around the value are ignored (as XML Schema's whitespace collapsing
///   does); anything else before or after it, or any whitespace inside it, is refused.
///
/// A time without a zone is Danish local time: `+01:00` in winter and `+02:00` in summer, and
/// never anything else. Exactly: the offset is the one Europe/Copenhagen's tz data gives for
/// that local time, when that is `+01:00` or `+02:00`. When a local time has two readings (the
/// hour that repeats when summer time ends), the first reading that is `+01:00` or `+02:00` is
/// taken, which is `+02:00`. When no reading is `+01:00` or `+02:00` (a time in the hour skipped
/// when summer time starts, or a time for which the tz data has another offset, such as local
/// mean time, `+00:50:20` or `+00:53:28`, before standard time came in 1893–1894, or double
/// summer time, `+03:00`, in 1945–1947), `+01:00` is used. From 2100 on, where the tz data has
/// no rules, the EU rule in force since 1996 is applied.
///
/// The result is refused (`None`) unless the instant in UTC falls in years
/// [`FIRST_YEAR`]..=[`LAST_YEAR`], so that the stored text is always exact: a negative or
/// five-digit year is refused by the form already, and `9999-12-31T23:59:59-12:00` or
/// `0001-01-01T00:30:00+01:00` by the range (while `0000-12-31T23:00:00-01:00`, which is
/// `0001-01-01T00:00:00Z`, is accepted).
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    let (local, offset) = split_timestamp(value)?;
    let offset = offset.unwrap_or_else(|| danish_offset(&local));
    let instant = local
        .checked_sub_signed(TimeDelta::seconds(i64::from(offset)))?
        .and_utc();
    is_storable(instant).then_some(instant)
}

/// The first year the tz data has no summer-time rules for; from it on, the EU rule in force
/// since 1996 is applied (see [`eu_offset`]).
const RULES_END: i32 = 2100;

/// The offset, in seconds, of Danish local time at `local` (see [`parse_timestamp`]).
fn danish_offset(local: &NaiveDateTime) -> i32 {
    if local.year() >= RULES_END {
        return eu_offset(local);
    }
    let seconds = |offset: &<chrono_tz::Tz as TimeZone>::Offset| offset.fix().local_minus_utc();
    let readings = match Copenhagen.offset_from_local_datetime(local) {
        LocalResult::Single(only) => [Some(seconds(&only)), None],
        LocalResult::Ambiguous(first, second) => [Some(seconds(&first)), Some(seconds(&second))],
        LocalResult::None => [None, None],
    };
    readings
        .into_iter()
        .flatten()
        .find(|&offset| offset == WINTER || offset == SUMMER)
        .unwrap_or(WINTER)
}

/// The offset of Danish local time under the EU rule: summer time from 02:00 (winter time) on
/// the last Sunday of March to 03:00 (summer time) on the last Sunday of October. The skipped
/// hour reads as winter time and the repeated hour as summer time, as for earlier years.
fn eu_offset(local: &NaiveDateTime) -> i32 {
    let last_sunday = |month: u32| {
        let last = NaiveDate::from_ymd_opt(local.year(), month, 31)
            .expect("March and October have 31 days");
        last - TimeDelta::days(i64::from(last.weekday().num_days_from_sunday()))
    };
    let at = |date: NaiveDate, hour: u32| {
        date.and_hms_opt(hour, 0, 0)
            .expect("a whole hour is a valid time")
    };
    // From 03:00 on the first day (02:00-03:00 does not exist) to 03:00 on the last.
    if *local >= at(last_sunday(3), 3) && *local < at(last_sunday(10), 3) {
        SUMMER
    } else {
        WINTER
    }
}

/// Splits `YYYY-MM-DDThh:mm:ss[.fraction][Z|+hh:mm|-hh:mm]` into the local date-time and the
/// offset in seconds (`None` when there is no offset). See [`parse_timestamp`] for the rules.
fn split_timestamp(value: &str) -> Option<(NaiveDateTime, Option<i32>)> {
    let bytes = value.as_bytes();
    if bytes.len() < 19 {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |acc, &byte| {
            byte.is_ascii_digit()
                .then(|| acc * 10 + u32::from(byte - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, expected)| bytes[at] != expected)
        || !matches!(bytes[10], b'T' | b't')
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);

    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    let mut fraction_is_zero = true;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (place, &digit) in fraction[..digits.min(9)].iter().enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - place as u32);
        }
        fraction_is_zero = fraction[..digits].iter().all(|&digit| digit == b'0');
        rest = &fraction[digits..];
    }

    let offset = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |b: &u8| b.is_ascii_digit().then(|| i32::from(b - b'0'));
            let (hours, minutes) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
            let seconds = hours * 3600 + minutes * 60;
            if minutes >= 60 || seconds > MAX_OFFSET_SECONDS {
                return None;
            }
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return None,
    };

    let local = if hour == 24 {
        // xs:dateTime's end-of-day midnight: only 24:00:00 exactly.
        if minute != 0 || second != 0 || !fraction_is_zero {
            return None;
        }
        date.succ_opt()?.and_time(NaiveTime::MIN)
    } else {
        // `from_hms_nano_opt` refuses hour 24+, minute 60+ and second 60+ (nanos stay below
        // one second, so no leap second can be made here).
        NaiveDateTime::new(
            date,
            NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?,
        )
    };
    Some((local, offset))
}

/// Parses a timestamp and formats it for the replica (see [`parse_timestamp`] for what is
/// accepted). `None` for anything refused, including instants outside the storable years.
pub fn normalize(value: &str) -> Option<String> {
    parse_timestamp(value).and_then(try_format_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_accepted_form_to_utc_text() {
        let long_fraction = format!("2026-03-01T10:00:00.{}Z", "9".repeat(10_000));
        let long_zero_fraction = format!("2026-03-01T24:00:00.{}Z", "0".repeat(10_000));
        let cases: &[(&str, &str)] = &[
            ("2023-02-13T11:22:05.154Z", "2023-02-13T11:22:05.154Z"),
            ("2023-02-13T12:22:31.990+01:00", "2023-02-13T11:22:31.990Z"),
            ("2023-02-13T12:22:31+01:00", "2023-02-13T11:22:31.000Z"),
            ("2023-02-13T11:22:05Z", "2023-02-13T11:22:05.000Z"),
            ("2023-02-13T11:22:05.1-03:30", "2023-02-13T14:52:05.100Z"),
            ("2023-12-31T23:59:59.999+00:00", "2023-12-31T23:59:59.999Z"),
            ("2023-12-31T23:59:59.999-00:00", "2023-12-31T23:59:59.999Z"),
            // Lower-case `t` and `z`.
            ("2024-02-29t00:00:00z", "2024-02-29T00:00:00.000Z"),
            ("2024-02-29t00:00:00", "2024-02-28T23:00:00.000Z"),
            // XML whitespace around the value.
            ("  2023-02-13T11:22:05Z\n", "2023-02-13T11:22:05.000Z"),
            ("\t2023-02-13T11:22:05Z\r\n", "2023-02-13T11:22:05.000Z"),
            // Fractions: cut, never rounded, however long.
            ("2023-02-13T11:22:05.1234567Z", "2023-02-13T11:22:05.123Z"),
            ("2023-02-13T11:22:05.123456789Z", "2023-02-13T11:22:05.123Z"),
            (
                "2023-02-13T11:22:05.9999999999Z",
                "2023-02-13T11:22:05.999Z",
            ),
            ("2023-02-13T11:22:05.0Z", "2023-02-13T11:22:05.000Z"),
            (&long_fraction, "2026-03-01T10:00:00.999Z"),
            ("9999-12-31T23:59:59.9999999Z", "9999-12-31T23:59:59.999Z"),
            // The widest offsets.
            ("2026-03-01T14:00:00+14:00", "2026-03-01T00:00:00.000Z"),
            ("2026-03-01T10:00:00-14:00", "2026-03-02T00:00:00.000Z"),
            ("2026-03-01T10:00:00+13:59", "2026-02-28T20:01:00.000Z"),
            ("2026-03-01T10:00:00-05:45", "2026-03-01T15:45:00.000Z"),
            // 24:00:00 is midnight at the end of the day.
            ("2026-03-01T24:00:00Z", "2026-03-02T00:00:00.000Z"),
            ("2026-12-31T24:00:00.000+01:00", "2026-12-31T23:00:00.000Z"),
            ("2026-02-28T24:00:00", "2026-02-28T23:00:00.000Z"),
            (&long_zero_fraction, "2026-03-02T00:00:00.000Z"),
            // The edges of the storable range.
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
            ("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000Z"),
            ("0001-01-01T01:00:00", "0001-01-01T00:00:00.000Z"),
            ("0000-12-31T23:00:00-01:00", "0001-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
            ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59.000Z"),
            ("9999-12-31T23:59:59+14:00", "9999-12-31T09:59:59.000Z"),
            ("9999-12-31T23:59:59", "9999-12-31T22:59:59.000Z"),
            ("9999-12-31T24:00:00+01:00", "9999-12-31T23:00:00.000Z"),
            ("9999-12-31T24:00:00", "9999-12-31T23:00:00.000Z"),
            ("9999-12-31T09:59:59-14:00", "9999-12-31T23:59:59.000Z"),
            // No offset: Danish winter time is UTC+1 ...
            ("2026-03-01T12:40:53.519", "2026-03-01T11:40:53.519Z"),
            // ... and summer time is UTC+2.
            ("2026-07-01T12:40:53", "2026-07-01T10:40:53.000Z"),
            // The repeated hour when summer time ends (2026-10-25 03:00 -> 02:00): first reading.
            ("2026-10-25T02:30:00", "2026-10-25T00:30:00.000Z"),
            ("2026-10-25T01:59:59", "2026-10-24T23:59:59.000Z"),
            ("2026-10-25T03:00:00", "2026-10-25T02:00:00.000Z"),
            // The skipped hour when summer time starts (2026-03-29 02:00 -> 03:00): winter time.
            ("2026-03-29T02:30:00", "2026-03-29T01:30:00.000Z"),
            ("2026-03-29T03:00:00", "2026-03-29T01:00:00.000Z"),
            // Before standard time (local mean time in the tz data): +01:00, not +00:50:20 or
            // +00:53:28.
            ("1850-06-01T12:00:00", "1850-06-01T11:00:00.000Z"),
            ("1890-01-01T00:00:00", "1889-12-31T23:00:00.000Z"),
            ("1893-01-01T12:00:00.5", "1893-01-01T11:00:00.500Z"),
            ("1900-07-01T12:00:00", "1900-07-01T11:00:00.000Z"),
            // Double summer time (+03:00) in the tz data: +01:00.
            ("1945-07-01T12:00:00", "1945-07-01T11:00:00.000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Some(*expected), "{input:.80}");
        }
    }

    #[test]
    fn refuses_what_is_not_exactly_a_timestamp() {
        let long_bad_fraction = format!("2026-03-01T10:00:00.{}x", "1".repeat(10_000));
        let refused = [
            "",
            " ",
            "yesterday",
            "2023-02-13",
            "2023-02-13T11:22Z",
            "2023-02-13T11:22:05+",
            // Dates and times that do not exist.
            "2023-02-30T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2023-00-13T10:00:00Z",
            "2023-13-01T10:00:00Z",
            "2023-02-00T10:00:00Z",
            "2023-02-13T25:00:00",
            "2023-02-13T23:60:00Z",
            "2023-02-13T99:99:99Z",
            // Leap seconds.
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2023-02-13T10:00:61Z",
            // 24:00 only as 24:00:00 exactly.
            "2023-02-13T24:00:01Z",
            "2023-02-13T24:01:00Z",
            "2023-02-13T24:00:00.001Z",
            "2023-02-13T24:00:00.0000000001Z",
            // Outside years 0001..=9999 in UTC, however it is written.
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T24:00:00Z",
            "9999-12-31T10:00:00-14:00",
            "0001-01-01T00:30:00+01:00",
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00+00:01",
            "0000-01-01T00:00:00Z",
            "0000-12-31T23:59:59Z",
            // Years that are not four ASCII digits.
            "-0001-01-01T00:00:00Z",
            "-2023-02-13T10:00:00Z",
            "+2023-02-13T10:00:00Z",
            "10000-01-01T00:00:00Z",
            "12023-02-13T10:00:00Z",
            "023-02-13T10:00:00Z",
            // Fields of the wrong width.
            "2023-2-13T10:00:00Z",
            "2023-02-3T10:00:00Z",
            "2023-02-13T1:00:00Z",
            "2023-02-13T10:0:00Z",
            "2023-02-13T10:00:0Z",
            // Separators.
            "2023/02/13T10:00:00Z",
            "2023-02-13X10:00:00Z",
            "2023-02-13 10:00:00Z",
            "2023-02-13T10.00.00Z",
            "2023-02-13Z10:00:00Z",
            // Offsets: only ±hh:mm, minutes below 60, at most 14:00.
            "2023-02-13T10:00:00+14:01",
            "2023-02-13T10:00:00-14:01",
            "2023-02-13T10:00:00+14:60",
            "2023-02-13T10:00:00+15:00",
            "2023-02-13T10:00:00-15:00",
            "2023-02-13T10:00:00+99:00",
            "2023-02-13T10:00:00+00:60",
            "2023-02-13T10:00:00+00:99",
            "2023-02-13T10:00:00+1:00",
            "2023-02-13T10:00:00+01:0",
            "2023-02-13T10:00:00+01",
            "2023-02-13T10:00:00+0100",
            "2023-02-13T10:00:00+01:00:00",
            "2023-02-13T10:00:00+01:00Z",
            "2023-02-13T10:00:00Z+01:00",
            "2023-02-13T10:00:00ZZ",
            "2023-02-13T10:00:00 +01:00",
            "2023-02-13T10:00:00+01 :00",
            "2023-02-13T10:00:00+01:+0",
            "2023-02-13T10:00:00\u{2212}01:00",
            "2023-02-13T10:00:00UTC",
            "2023-02-13T10:00:00GMT+1",
            // Fractions.
            "2023-02-13T10:00:00.Z",
            "2023-02-13T10:00:00.",
            "2023-02-13T10:00:00..1Z",
            "2023-02-13T10:00:00.1.2Z",
            "2023-02-13T10:00:00.aZ",
            "2023-02-13T10:00:00.12aZ",
            "2023-02-13T10:00:00.1e3Z",
            "2023-02-13T10:00:00,5Z",
            "2023-02-13T10:00:00.-1Z",
            "2023-02-13T10:00:00.+1Z",
            &long_bad_fraction,
            // Non-ASCII digits.
            "\u{662}\u{660}\u{662}\u{663}-02-13T10:00:00Z",
            "２０２３-02-13T10:00:00Z",
            "2023-02-13T10:00:00.\u{ff11}Z",
            "2023-02-13T10:00:00+\u{ff10}1:00",
            // Whitespace inside, garbage around, other whitespace around.
            "2023-02-13T 10:00:00Z",
            "2023-02-13T10:00:00 Z",
            "2023-02-13T10:00:00.1 Z",
            "2023 -02-13T10:00:00Z",
            "x2023-02-13T10:00:00Z",
            "2023-02-13T10:00:00Zx",
            "2023-02-13T10:00:00Z.",
            "2023-02-13T10:00:00x",
            "2023-02-13T10:00:00\u{0}",
            "\u{0}2023-02-13T10:00:00Z",
            "\u{a0}2023-02-13T10:00:00Z",
            "2023-02-13T10:00:00Z\u{a0}",
            "2023-02-13T10:00:00Z\u{2028}",
            "\u{feff}2023-02-13T10:00:00Z",
            "2023-02-13T10:00:00Z\u{b}",
            "2023-02-13T10:00:00Zæ",
            "2023-02-13T10:00:00Z 2023-02-13T10:00:00Z",
        ];
        for input in refused {
            assert_eq!(normalize(input), None, "{input:.80}");
            assert_eq!(parse_timestamp(input), None, "{input:.80}");
        }
    }

    #[test]
    fn summer_time_goes_on_after_the_tz_data_ends() {
        let cases = [
            ("2099-07-01T12:00:00", "2099-07-01T10:00:00.000Z"),
            ("2100-07-01T12:00:00", "2100-07-01T10:00:00.000Z"),
            ("2100-01-15T12:00:00", "2100-01-15T11:00:00.000Z"),
            // 2100: summer time from 28 March to 31 October.
            ("2100-03-28T01:59:59", "2100-03-28T00:59:59.000Z"),
            ("2100-03-28T02:30:00", "2100-03-28T01:30:00.000Z"),
            ("2100-03-28T03:00:00", "2100-03-28T01:00:00.000Z"),
            ("2100-10-31T02:30:00", "2100-10-31T00:30:00.000Z"),
            ("2100-10-31T03:00:00", "2100-10-31T02:00:00.000Z"),
            ("9999-07-01T12:00:00", "9999-07-01T10:00:00.000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn local_time_is_always_one_or_two_hours_ahead_of_utc() {
        // Every hour on a few days of each month over six centuries, and of every year around
        // the war (double summer time in the tz data): the offset taken is +01:00 or +02:00 and
        // nothing else.
        for year in (1700..=2300).step_by(3).chain(1939..=1950) {
            for month in 1..=12 {
                for day in [1, 15, 25, 28] {
                    for hour in 0..24 {
                        let local = NaiveDate::from_ymd_opt(year, month, day)
                            .and_then(|date| date.and_hms_opt(hour, 30, 0))
                            .expect("valid");
                        let text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
                        let instant = parse_timestamp(&text).expect("valid");
                        let ahead = local - instant.naive_utc();
                        assert!(
                            ahead == TimeDelta::hours(1) || ahead == TimeDelta::hours(2),
                            "{text}: {ahead}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn formats_only_storable_instants_in_the_stored_form() {
        let at = |year, month, day, milli: u32| {
            NaiveDate::from_ymd_opt(year, month, day)
                .and_then(|date| date.and_hms_milli_opt(23, 59, 59, milli))
                .expect("valid")
                .and_utc()
        };
        let cases = [
            (at(2026, 3, 1, 5), "2026-03-01T23:59:59.005Z", true),
            (at(9999, 12, 31, 999), "9999-12-31T23:59:59.999Z", true),
            (at(1, 1, 1, 0), "0001-01-01T23:59:59.000Z", true),
            (at(10000, 1, 1, 0), "+10000-01-01T23:59:59.000Z", false),
            (at(123456, 7, 8, 9), "+123456-07-08T23:59:59.009Z", false),
            (at(0, 12, 31, 0), "+0000-12-31T23:59:59.000Z", false),
            (at(-1, 6, 1, 0), "-0001-06-01T23:59:59.000Z", false),
            (at(-12345, 6, 1, 0), "-12345-06-01T23:59:59.000Z", false),
            // A leap second, as chrono represents it.
            (at(2016, 12, 31, 1500), "2016-12-31T23:59:60.500Z", true),
        ];
        for (instant, text, storable) in cases {
            assert_eq!(format_utc(instant), text);
            assert_eq!(try_format_utc(instant).is_some(), storable, "{text}");
            assert_eq!(is_storable(instant), storable, "{text}");
        }
        assert!(!is_storable(DateTime::<Utc>::MIN_UTC));
        assert!(!is_storable(DateTime::<Utc>::MAX_UTC));
        assert!(format_utc(DateTime::<Utc>::MIN_UTC).starts_with('-'));
        assert!(format_utc(DateTime::<Utc>::MAX_UTC).starts_with('+'));
        assert_eq!(now_utc().len(), 24);
    }

    #[test]
    fn stored_text_sorts_like_time() {
        let ordered = [
            "0001-01-01T00:00:00Z",
            "1850-06-01T12:00:00",
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.0005Z",
            "2026-03-01T10:00:00.500Z",
            "2026-03-01T24:00:00+01:00",
            "2026-03-01T24:00:00Z",
            "9999-12-31T23:59:59.999Z",
        ];
        let stored: Vec<String> = ordered
            .iter()
            .map(|value| normalize(value).expect("valid"))
            .collect();
        for pair in stored.windows(2) {
            assert!(pair[0] <= pair[1], "{pair:?}");
        }
    }
}
