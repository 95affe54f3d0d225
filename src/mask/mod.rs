//! Text that may reach a log, a terminal or an error message: CPR numbers masked, control
//! characters escaped, length capped.
//!
//! - [`mask_cpr`] (and [`mask_cpr_in`], its `String` form) hides the serial part of CPR numbers;
//! - [`escape_controls`] makes any text fit on one log line without steering the terminal;
//! - [`cap`] shortens text, saying how much was cut;
//! - [`for_log`] = mask + escape; [`clean_reason`] = mask + escape + cap to [`REASON_MAX_BYTES`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes [`clean_reason`] keeps of a reason (before its cut marker).
pub const REASON_MAX_BYTES: usize = 1024;

/// The separators allowed between the date part and the serial of a CPR number: `-`, `/`, a
/// space, `.`, and what word processors put in their place (a no-break or narrow no-break
/// space, the Unicode hyphens and dashes, the minus sign), and U+FFFD, which such a separator
/// in another encoding becomes when read as UTF-8 (a Latin-1 no-break space in a file name).
/// `forget` looks for each of them.
pub const SERIAL_SEPARATORS: [&str; 13] = [
    "-", "/", " ", ".", "\u{a0}", "\u{202f}", "\u{2010}", "\u{2011}", "\u{2012}", "\u{2013}",
    "\u{2014}", "\u{2212}", "\u{fffd}",
];

/// The non-ASCII separators as escapes write them: Rust's debug form (`\u{a0}`, which error
/// messages quoting a value use) and the `\u00a0` of TOML and JSON (either case).
pub const ESCAPED_SEPARATORS: [&str; 16] = [
    "\\u{a0}",
    "\\u{202f}",
    "\\u{2010}",
    "\\u{2011}",
    "\\u{2012}",
    "\\u{2013}",
    "\\u{2014}",
    "\\u{2212}",
    "\\u00a0",
    "\\u202f",
    "\\u2010",
    "\\u2011",
    "\\u2012",
    "\\u2013",
    "\\u2014",
    "\\u2212",
];

/// The length in bytes of the serial separator at `at`, if there is one.
fn separator_at(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = bytes.get(at..)?;
    SERIAL_SEPARATORS
        .iter()
        .find(|separator| rest.starts_with(separator.as_bytes()))
        .or_else(|| {
            ESCAPED_SEPARATORS.iter().find(|escape| {
                rest.get(..escape.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(escape.as_bytes()))
            })
        })
        .map(|separator| separator.len())
}

/// [`mask_cpr_among_letters`], as a `String`: the serial part of every CPR number in `text`
/// masked, also one joined to letters: the rule of every output.
pub fn mask_cpr_in(text: &str) -> String {
    mask_cpr_among_letters(text).into_owned()
}

/// Masks the serial part of every CPR number in `text`; borrowed when there is nothing to mask.
///
/// A CPR number is a date part, then at most one separator, then a four-digit serial:
/// - the date part is six ASCII digits `DDMMYY`, or `DD.MM.YY`, or `DD-MM-YY` (the same
///   character both times);
/// - the separator is one of `-`, `/`, a space or `.`;
/// - the serial is four ASCII digits, which become `****`: `2512489996` → `251248****`,
///   `251248-9996` → `251248-****`, `25.12.48 9996` → `25.12.48 ****`.
///
/// It is only a CPR number when it stands alone: the character before it and the character
/// after it (if any) must not be an ASCII letter, an ASCII digit or `_`. So no digit of a UUID, a
/// hex token, an 11-digit number, `x2512489996` or `1251248-9996` is ever touched. Anything else
/// around it does count as a boundary, including punctuation, other separators, `*` and
/// non-ASCII characters: `cpr-nr:2512489996.`, `"2512489996"` and `æ2512489996` are masked, and
/// so, deliberately, are `1.2512489996` and `2512489996-1234` (a number joined to others by
/// punctuation is masked rather than risk showing a CPR number).
///
/// A number labelled as a CPR number is masked even when it has the wrong length, since a CPR
/// number with a digit too many or too few shows nearly as much: after `cpr` (any case, not
/// right after an ASCII letter) and at most 12 bytes of ASCII letters, spaces and `-_.:=#/"'`
/// (as in `urn:oio:cpr-nr:`, `CPR-nummer: `, `cpr=`), a run of seven or more digits keeps its
/// first six (`urn:oio:cpr-nr:01017012345` → `urn:oio:cpr-nr:010170*****`, `CPR 030390345` →
/// `CPR 030390***`), and six digits, one separator and more digits keep the six and the
/// separator (`cpr 010170-12345` → `cpr 010170-*****`). Such a number must be followed by
/// neither an ASCII letter, digit or `_`, nor a `-` and one of those (the rest of a UUID).
///
/// The date part must be a possible birth date, as in every CPR number: the day 01–31 (or 61–91,
/// as in replacement numbers, which add 60 to the day) and the month 01–12; the year can be any.
/// So byte counts and other numbers such as `2147483648` or `4294967295` stay readable, while
/// `0101701234` is masked. A number labelled as a CPR number is masked whatever its date. The
/// result always has the same length as `text`. Linear in the length of `text`.
pub fn mask_cpr(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // Every start is tried against the original text, so a match can never hide another one
    // that overlaps it; the digits of all of them are masked.
    let mut out: Option<Vec<u8>> = None;
    for (at, &byte) in bytes.iter().enumerate() {
        let found = match byte {
            b'0'..=b'9' => cpr_at(bytes, at),
            b'c' | b'C' => labelled_at(bytes, at),
            _ => None,
        };
        if let Some((from, end)) = found {
            let out = out.get_or_insert_with(|| bytes.to_vec());
            for byte in &mut out[from..end] {
                if byte.is_ascii_digit() {
                    *byte = b'*';
                }
            }
        }
    }
    match out {
        None => Cow::Borrowed(text),
        // Only ASCII digits were replaced, by an ASCII `*`: still UTF-8.
        Some(out) => Cow::Owned(String::from_utf8(out).expect("ASCII replaced by ASCII")),
    }
}

/// An ASCII letter or digit: what may not touch a CPR number. An underscore may (file names
/// such as `besked_2512489996.xml` join words with it).
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Whether a CPR number (or a number labelled as one) may end just before `end`: the next byte
/// is not a word byte.
fn ends_alone(bytes: &[u8], end: usize) -> bool {
    !bytes.get(end).copied().is_some_and(is_word_byte)
}

/// A CPR number starting at `start`, as `(serial start, end)`, or `None` when there is none.
fn cpr_at(bytes: &[u8], start: usize) -> Option<(usize, usize)> {
    cpr_between(bytes, start, is_word_byte)
}

/// Whether `text` holds a CPR number that no digit touches, whatever else does (a letter, as
/// in `x0101701234`): the rule of `forget`, which masks such a number wherever it finds it.
/// Stricter than the masking of logs, which leaves a number joined to letters alone so that
/// hex tokens stay readable.
pub fn holds_cpr_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|at| {
        bytes[at].is_ascii_digit() && cpr_between(bytes, at, |b| b.is_ascii_digit()).is_some()
    })
}

/// [`mask_cpr`], but a number joined to letters (`x0101701234`) is masked too: for text that
/// quotes what someone typed, where no hex token needs to stay readable.
pub fn mask_cpr_among_letters(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    for at in 0..bytes.len() {
        if let Some((from, end)) =
            cpr_between(bytes, at, |b| b.is_ascii_digit()).filter(|_| bytes[at].is_ascii_digit())
        {
            let out = out.get_or_insert_with(|| bytes.to_vec());
            for byte in &mut out[from..end] {
                *byte = b'*';
            }
        }
    }
    match out {
        None => mask_cpr(text),
        Some(out) => {
            let masked = String::from_utf8(out).expect("ASCII replaced by ASCII");
            Cow::Owned(mask_cpr(&masked).into_owned())
        }
    }
}

/// [`cpr_at`] with `touches` telling which bytes may not stand right before or after it.
fn cpr_between(bytes: &[u8], start: usize, touches: fn(u8) -> bool) -> Option<(usize, usize)> {
    if start > 0 && touches(bytes[start - 1]) {
        return None;
    }
    let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
    let digits = |from: usize, count: usize| (from..from + count).all(digit);
    let (date_end, month_at) = if digits(start, 6) {
        (start + 6, start + 2)
    } else if digits(start, 2)
        && matches!(bytes.get(start + 2), Some(b'.' | b'-'))
        && digits(start + 3, 2)
        && bytes.get(start + 5) == bytes.get(start + 2)
        && digits(start + 6, 2)
    {
        (start + 8, start + 3)
    } else {
        return None;
    };
    let two = |at: usize| (bytes[at] - b'0') * 10 + (bytes[at + 1] - b'0');
    let (day, month) = (two(start), two(month_at));
    if !(matches!(day, 1..=31 | 61..=91) && matches!(month, 1..=12)) {
        return None;
    }
    let serial = date_end + separator_at(bytes, date_end).unwrap_or(0);
    let alone = !bytes.get(serial + 4).copied().is_some_and(touches);
    (digits(serial, 4) && alone).then_some((serial, serial + 4))
}

/// The most bytes between `cpr` and the number it labels.
const MAX_LABEL_TAIL: usize = 12;

/// A number labelled as a CPR number (see [`mask_cpr`]) whose label starts at `start`, as
/// `(first byte to mask, end)`, or `None` when there is none or nothing to mask.
fn labelled_at(bytes: &[u8], start: usize) -> Option<(usize, usize)> {
    let label = bytes.get(start..start + 3)?;
    if !label.eq_ignore_ascii_case(b"cpr") || (start > 0 && bytes[start - 1].is_ascii_alphabetic())
    {
        return None;
    }
    let number = start
        + 3
        + bytes[start + 3..]
            .iter()
            .take(MAX_LABEL_TAIL + 1)
            .take_while(|&&b| b.is_ascii_alphabetic() || b" -_.:=#/\"'".contains(&b))
            .count();
    let run = |from: usize| {
        bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let first = run(number);
    if number - (start + 3) > MAX_LABEL_TAIL || first < 6 {
        return None;
    }
    let end = if first > 6 {
        number + first
    } else {
        let separator = separator_at(bytes, number + 6).unwrap_or(0);
        let second = if separator > 0 {
            run(number + 6 + separator)
        } else {
            0
        };
        if second == 0 {
            return None;
        }
        number + 6 + separator + second
    };
    let uuid_goes_on =
        bytes.get(end) == Some(&b'-') && bytes.get(end + 1).is_some_and(u8::is_ascii_alphanumeric);
    (ends_alone(bytes, end) && !uuid_goes_on).then_some((number + 6, end))
}

/// Whether `c` is written as an escape by [`escape_controls`].
pub(crate) fn is_control(c: char) -> bool {
    matches!(c,
        // C0, DEL and C1.
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Line and paragraph separators.
        | '\u{2028}' | '\u{2029}'
        // Bidirectional controls: embeddings and overrides, isolates, and the marks.
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}')
}

/// How many bytes [`escape_controls`] writes for `c`.
fn escaped_len(c: char) -> usize {
    match c {
        '\n' | '\r' | '\t' => 2,
        // `\u{` + hex digits + `}`.
        c if is_control(c) => 4 + (32 - (c as u32 | 1).leading_zeros() as usize).div_ceil(4),
        c => c.len_utf8(),
    }
}

/// Appends `c` as [`escape_controls`] writes it.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_control(c) => {
            write!(out, "\\u{{{:x}}}", c as u32).expect("writing to a String cannot fail");
        }
        c => out.push(c),
    }
}

/// Makes `text` safe to put inside one log line; borrowed when nothing needs escaping.
///
/// Every control character is written as an escape: `\n`, `\r` and `\t` as those two
/// characters, anything else as `\u{…}` with the code point in lower-case hex (`\u{1b}`,
/// `\u{0}`, `\u{85}`, `\u{2028}`). Control characters are C0 (U+0000–U+001F), DEL (U+007F), C1
/// (U+0080–U+009F), the line and paragraph separators U+2028 and U+2029, and the bidirectional
/// controls U+202A–U+202E, U+2066–U+2069, U+061C, U+200E and U+200F. Everything else, a backslash
/// included, is kept as it is, so the escaping cannot always be undone; it is for reading.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(is_control) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Appends the marker [`cap`] and [`clean_reason`] put after a cut (at most 36 bytes).
fn push_cut_marker(out: &mut String, cut: usize) {
    write!(out, "… [cut {cut} bytes]").expect("writing to a String cannot fail");
}

/// Cuts `text` to at most `max_bytes` bytes, at a char boundary, followed by a marker saying how
/// many bytes were cut: `… [cut 9437184 bytes]`. The result, marker included, is at most
/// `max_bytes + 40` bytes long. Borrowed when `text` already fits.
///
/// This does not mask anything: a cut through a long number can leave a CPR-shaped number at
/// the end. [`clean_reason`] takes care of that.
pub fn cap(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 40);
    out.push_str(&text[..end]);
    push_cut_marker(&mut out, text.len() - end);
    Cow::Owned(out)
}

/// A reason (why a message was refused, why a feed stopped) made fit for a log line, a terminal
/// and the database: CPR numbers masked ([`mask_cpr`]), then control characters escaped
/// ([`escape_controls`]), then cut to [`REASON_MAX_BYTES`] bytes with a marker as [`cap`] writes
/// it (the count is of escaped bytes).
///
/// The cut never splits an escape, and the kept part is masked again after the cut, so a cut
/// through a long number cannot leave a CPR-shaped number behind. The result is at most
/// `REASON_MAX_BYTES + 40` bytes.
pub fn clean_reason(text: &str) -> String {
    let masked = mask_cpr_among_letters(text);
    let escaped_total: usize = masked.chars().map(escaped_len).sum();
    if escaped_total <= REASON_MAX_BYTES {
        return escape_controls(&masked).into_owned();
    }
    let mut kept = String::with_capacity(REASON_MAX_BYTES);
    for c in masked.chars() {
        if kept.len() + escaped_len(c) > REASON_MAX_BYTES {
            break;
        }
        push_escaped(&mut kept, c);
    }
    let cut = escaped_total - kept.len();
    let mut out = mask_cpr_among_letters(&kept).into_owned();
    push_cut_marker(&mut out, cut);
    out
}

/// Text made fit for one log line: CPR numbers masked, then control characters escaped. Not
/// capped (the log layer caps whole lines). Borrowed when nothing changes.
pub fn for_log(text: &str) -> Cow<'_, str> {
    match mask_cpr_among_letters(text) {
        Cow::Borrowed(text) => escape_controls(text),
        Cow::Owned(masked) => match escape_controls(&masked) {
            Cow::Borrowed(_) => Cow::Owned(masked),
            Cow::Owned(escaped) => Cow::Owned(escaped),
        },
    }
}

/// `text` with the escapes that quote a character replaced by it: `\u0030` and `\U00000030`
/// (TOML, JSON) and `\u{30}` (Rust's debug form). For text that quotes what someone wrote
/// (a configuration file's line, an environment variable), before [`mask_cpr`]: a number
/// written with escaped digits or separators is then masked like any other. What an escape
/// stands for is shown as itself (control characters are escaped again by [`escape_controls`]).
pub fn unescaped(text: &str) -> Cow<'_, str> {
    if !text.contains("\\u") && !text.contains("\\U") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['\\']) {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let hex = |digits: &str| {
            u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32)
        };
        let decoded = if let Some(braced) = escape.strip_prefix("\\u{") {
            braced
                .find('}')
                .filter(|&end| (1..=6).contains(&end))
                .and_then(|end| hex(&braced[..end]).map(|c| (c, 4 + end)))
        } else if let Some(four) = escape.strip_prefix("\\u") {
            four.get(..4)
                .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(hex)
                .map(|c| (c, 6))
        } else if let Some(eight) = escape.strip_prefix("\\U") {
            eight
                .get(..8)
                .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(hex)
                .map(|c| (c, 10))
        } else {
            None
        };
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &escape[len..];
            }
            None => {
                out.push('\\');
                rest = &escape[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
