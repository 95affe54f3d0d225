//! Timestamps: the forms the Beskedfordeler sends, and the one form the replica stores.
//!
//! Every time in the replica is UTC text `YYYY-MM-DDTHH:MM:SS.fffZ`, always with three fraction
//! digits, so that string order is time order in SQL.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Copenhagen;

/// Formats a UTC instant the way the replica stores it.
pub fn format_utc(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
    let value = value.trim();
    if let Ok(with_offset) = DateTime::<FixedOffset>::parse_from_rfc3339(value) {
        return Some(with_offset.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    match Copenhagen.from_local_datetime(&local) {
        LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            let winter = FixedOffset::east_opt(3600).expect("one hour is a valid offset");
            winter
                .from_local_datetime(&local)
                .single()
                .map(|instant| instant.with_timezone(&Utc))
        }
    }
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
