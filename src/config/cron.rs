//! Cron expressions for `[schedule] cron`: six fields, seconds first, checked field by field so
//! that a mistake is named (which field, which value, the allowed range) before the scheduler
//! library sees the expression.

/// The six fields: name, smallest and largest value.
const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Checks a cron expression; the error names the field and says what is allowed.
pub fn validate(expression: &str) -> Result<(), String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "`{expression}` has {} fields; six are needed, seconds first: second minute hour day-of-month month day-of-week, e.g. \"0 */5 * * * *\"",
            fields.len()
        ));
    }
    for (index, (field, &(name, min, max))) in fields.iter().zip(&FIELDS).enumerate() {
        check_field(field, index, min, max).map_err(|why| {
            format!("`{expression}`: the {name} field `{field}` {why} (allowed: {min}-{max})")
        })?;
    }
    // A day of the month that no month allowed has (the 31st of February) never comes.
    if let (Some(days), Some(months)) = (expand(fields[3], 3), expand(fields[4], 4))
        && matches!(fields[5], "*" | "?")
        && !months
            .iter()
            .any(|&month| days.iter().any(|&day| day <= days_in(month)))
    {
        return Err(format!(
            "`{expression}` never runs: no month in `{}` has a day `{}`",
            fields[4], fields[3]
        ));
    }
    // The scheduler's own parser has the last word (it knows extensions such as `L` and `#`).
    tokio_cron_scheduler::Job::new_async_tz(expression, chrono_tz::Europe::Copenhagen, |_, _| {
        Box::pin(async {})
    })
    .map(|_| ())
    .map_err(|error| format!("`{expression}` is not a valid cron expression: {error}"))
}

fn check_field(field: &str, index: usize, min: u32, max: u32) -> Result<(), String> {
    for item in field.split(',') {
        if item.is_empty() {
            return Err("has an empty list item".into());
        }
        if item.contains(['L', 'W', '#', 'l', 'w']) && index >= 3 {
            // Extensions (last day, nearest weekday, nth weekday): left to the parser.
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("has step `{step}`, which is not a number"))?;
            if step == 0 || step > max {
                return Err(format!("has step {step}; a step must be 1-{max}"));
            }
        }
        if range == "*" || (range == "?" && index >= 3) {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (value(low, index)?, Some(value(high, index)?)),
            None => (value(range, index)?, None),
        };
        for value in std::iter::once(low).chain(high) {
            if value < min || value > max {
                return Err(format!("has {value}, which is out of range"));
            }
        }
        if let Some(high) = high
            && high < low
        {
            return Err(format!("has the range {low}-{high}, which runs backwards"));
        }
    }
    Ok(())
}

/// The values a checked field of numbers, names, ranges and steps allows; `None` for one with
/// extensions (`L`, `W`, `#`), left to the scheduler.
fn expand(field: &str, index: usize) -> Option<Vec<u32>> {
    let (_, min, max) = FIELDS[index];
    let mut values = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse().ok()?),
            None => (item, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (min, max)
        } else {
            match range.split_once('-') {
                Some((low, high)) => (value(low, index).ok()?, value(high, index).ok()?),
                None if item.contains('/') => (value(range, index).ok()?, max),
                None => {
                    let only = value(range, index).ok()?;
                    (only, only)
                }
            }
        };
        values.extend((low..=high).step_by(step));
    }
    Some(values)
}

/// The most days month `month` (1-12) can have: February has 29 in a leap year.
fn days_in(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn value(text: &str, index: usize) -> Result<u32, String> {
    if let Ok(number) = text.parse::<u32>() {
        return Ok(number);
    }
    let upper = text.to_ascii_uppercase();
    let named = match index {
        4 => MONTHS
            .iter()
            .position(|m| *m == upper)
            .map(|i| i as u32 + 1),
        5 => WEEKDAYS.iter().position(|d| *d == upper).map(|i| i as u32),
        _ => None,
    };
    named.ok_or_else(|| format!("has `{text}`, which is not a number"))
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn errors_name_the_field_and_the_range() {
        let cases = [
            (
                "0 0 25 * * *",
                "the hour field `25` has 25, which is out of range (allowed: 0-23)",
            ),
            (
                "0 */61 * * * *",
                "the minute field `*/61` has step 61; a step must be 1-59",
            ),
            ("*/5 * * * *", "has 5 fields; six are needed"),
            ("0 0 0 32 * *", "day of month field `32`"),
            ("0 0 0 * 13 *", "month field `13`"),
            ("0 0 0 * * 8", "day of week field `8`"),
            ("0 0 10-5 * * *", "runs backwards"),
            ("0 0 x * * *", "`x`, which is not a number"),
            ("0 0 1,,2 * * *", "empty list item"),
            ("0 0 */0 * * *", "step 0"),
            ("0 0 0 31 2 *", "never runs: no month in `2` has a day `31`"),
            ("0 0 0 30,31 FEB *", "never runs"),
            ("0 0 0 31 4,6,9,11 *", "never runs"),
        ];
        for (expression, expected) in cases {
            let error = validate(expression).expect_err(expression);
            assert!(
                error.contains(expected),
                "{expression}: got `{error}`, want `{expected}`"
            );
        }
    }

    #[test]
    fn common_expressions_are_accepted() {
        for expression in [
            "0 */5 * * * *",
            "0 0 3 * * *",
            "30 15 8-17 * * MON-FRI",
            "0 0 0 1 JAN,jul *",
            "0 0,30 * * * *",
            "0 0 12 * * 0",
            "0 0 12 * * 7",
            // Days only some months have: they come.
            "0 0 0 29 2 *",
            "0 0 0 31 */2 *",
            "0 0 0 30-31 1-2 *",
            "0 0 0 31 2 MON",
        ] {
            validate(expression).unwrap_or_else(|error| panic!("{expression}: {error}"));
        }
    }
}
