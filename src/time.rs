//! Timestamps: the forms the Beskedfordeler sends, and the one form the replica stores.
//!
//! Every time in the replica is UTC text `YYYY-MM-DDTHH:MM:SS.fffZ`, always with three fraction
//! digits, so that string order is time order in SQL.

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Europe::Copenhagen;

/// Formats a UTC instant the way the replica stores it.
pub fn format_utc(instant: DateTime<Utc>) -> String {
    // By hand: this runs for every timestamp of every message, and is much cheaper than
    // chrono's general formatter.
    let (date, time) = (instant.date_naive(), instant.time());
    let millis = time.nanosecond() / 1_000_000 % 1000;
    let mut out = String::with_capacity(24);
    let mut push = |value: u32, width: usize, after: char| {
        let mut digits = [b'0'; 4];
        let mut rest = value;
        for slot in digits[..width].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.push_str(std::str::from_utf8(&digits[..width]).expect("ASCII digits"));
        out.push(after);
    };
    push(date.year().clamp(0, 9999) as u32, 4, '-');
    push(date.month(), 2, '-');
    push(date.day(), 2, 'T');
    push(time.hour(), 2, ':');
    push(time.minute(), 2, ':');
    push(time.second(), 2, '.');
    push(millis, 3, 'Z');
    out
}

/// Now, in the replica's format.
pub fn now_utc() -> String {
    format_utc(Utc::now())
}

/// Parses a `TidsstempelDatoTid` value into UTC.
///
/// Accepts `Z`, a numeric offset (`+01:00`), or no offset at all. A time without an offset is
/// Danish local time (Europe/Copenhagen): `+01:00` in winter, `+02:00` in summer. In the hour
/// that repeats when summer time ends, the first (summer time) reading is taken; a time inside
/// the hour skipped when summer time starts is read as winter time.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let (local, offset) = split_timestamp(value.trim())?;
    match offset {
        Some(seconds) => {
            let offset = FixedOffset::east_opt(seconds)?;
            offset
                .from_local_datetime(&local)
                .single()
                .map(|instant| instant.with_timezone(&Utc))
        }
        None => match Copenhagen.from_local_datetime(&local) {
            LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                let winter = FixedOffset::east_opt(3600).expect("one hour is a valid offset");
                winter
                    .from_local_datetime(&local)
                    .single()
                    .map(|instant| instant.with_timezone(&Utc))
            }
        },
    }
}

/// Splits `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]` into the local date-time and the
/// offset in seconds (`None` when there is no offset).
fn split_timestamp(value: &str) -> Option<(NaiveDateTime, Option<i32>)> {
    let bytes = value.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0u32, |acc, &byte| {
            byte.is_ascii_digit()
                .then(|| acc * 10 + u32::from(byte - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if bytes.len() < 19
        || separators
            .iter()
            .any(|&(at, expected)| !bytes[at].eq_ignore_ascii_case(&expected))
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (place, &digit) in fraction[..digits.min(9)].iter().enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - place as u32);
        }
        rest = &fraction[digits..];
    }
    let time =
        NaiveTime::from_hms_nano_opt(number(11..13)?, number(14..16)?, number(17..19)?, nanos)?;
    let offset = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |b: &u8| b.is_ascii_digit().then(|| i32::from(b - b'0'));
            let minutes = (digit(h1)? * 10 + digit(h2)?) * 60 + digit(m1)? * 10 + digit(m2)?;
            Some(if *sign == b'-' {
                -minutes * 60
            } else {
                minutes * 60
            })
        }
        _ => return None,
    };
    Some((NaiveDateTime::new(date, time), offset))
}

/// Parses a timestamp and formats it for the replica.
pub fn normalize(value: &str) -> Option<String> {
    parse_timestamp(value).map(format_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_form_to_utc_text() {
        let cases = [
            ("2023-02-13T11:22:05.154Z", "2023-02-13T11:22:05.154Z"),
            ("2023-02-13T12:22:31.990+01:00", "2023-02-13T11:22:31.990Z"),
            ("2023-02-13T12:22:31+01:00", "2023-02-13T11:22:31.000Z"),
            ("2023-02-13T11:22:05Z", "2023-02-13T11:22:05.000Z"),
            ("2023-02-13T11:22:05.1234567Z", "2023-02-13T11:22:05.123Z"),
            // No offset: Danish winter time is UTC+1 ...
            ("2026-03-01T12:40:53.519", "2026-03-01T11:40:53.519Z"),
            // ... and summer time is UTC+2.
            ("2026-07-01T12:40:53", "2026-07-01T10:40:53.000Z"),
            // The repeated hour when summer time ends (2026-10-25 03:00 -> 02:00): first reading.
            ("2026-10-25T02:30:00", "2026-10-25T00:30:00.000Z"),
            // The skipped hour when summer time starts (2026-03-29 02:00 -> 03:00): winter time.
            ("2026-03-29T02:30:00", "2026-03-29T01:30:00.000Z"),
            ("  2023-02-13T11:22:05Z\n", "2023-02-13T11:22:05.000Z"),
            ("2023-02-13T11:22:05.1-03:30", "2023-02-13T14:52:05.100Z"),
            ("2023-12-31T23:59:59.999+00:00", "2023-12-31T23:59:59.999Z"),
            ("2024-02-29t00:00:00z", "2024-02-29T00:00:00.000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for input in [
            "",
            "yesterday",
            "2023-02-30T10:00:00Z",
            "2023-02-13",
            "2023-02-13T25:00:00",
        ] {
            assert_eq!(normalize(input), None, "{input}");
        }
    }

    #[test]
    fn stored_text_sorts_like_time() {
        let earlier = normalize("2026-03-01T10:00:00Z").expect("valid");
        let later = normalize("2026-03-01T10:00:00.500Z").expect("valid");
        assert!(earlier < later);
    }
}
