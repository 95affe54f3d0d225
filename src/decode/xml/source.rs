//! The document's text: where an error is, and the character classes and checks of XML 1.0.

use std::borrow::Cow;

use super::*;

/// The document text, and how to turn a position in it into an error.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    /// Added to positions in errors: the length of the byte order mark stripped before `text`.
    pub(super) base: usize,
}

impl<'a> Source<'a> {
    pub(super) fn error(self, at: usize, message: impl Into<String>) -> XmlError {
        XmlError::Malformed {
            position: (self.base + at) as u64,
            message: message.into(),
        }
    }

    pub(super) fn bytes(self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The character starting at `at` (a character boundary before the end).
    pub(super) fn char_at(self, at: usize) -> char {
        self.text[at..].chars().next().unwrap_or('\0')
    }

    /// Reads a qualified name (`NCName` or `NCName:NCName`) starting at `from`, stopping at the
    /// first character that cannot be part of a name or at `limit`. Returns where it ends and
    /// where its colon is. `what` names it in errors ("element name", …).
    #[inline]
    pub(super) fn qname(
        self,
        from: usize,
        limit: usize,
        what: &str,
    ) -> Result<(usize, Option<usize>), XmlError> {
        // The common case first: an ASCII name with at most one colon, which one pass over
        // its bytes reads and checks. Anything else takes the careful path.
        let bytes = self.bytes();
        let mut at = from;
        let mut colon = None;
        while at < limit {
            match NAME_CLASS[bytes[at] as usize] {
                0 => break,
                COLON if colon.is_some() => return self.qname_in_full(from, limit, what),
                COLON => colon = Some(at),
                _ => {}
            }
            at += 1;
        }
        let starts_well = |at: usize| at < limit && NAME_CLASS[bytes[at] as usize] == NAME_START;
        if starts_well(from)
            && (at == limit || bytes[at].is_ascii())
            && colon.is_none_or(|colon| colon + 1 < at && starts_well(colon + 1))
        {
            return Ok((at, colon));
        }
        self.qname_in_full(from, limit, what)
    }

    /// [`Self::qname`] for names outside ASCII, and to say what is wrong with a bad one.
    #[cold]
    pub(super) fn qname_in_full(
        self,
        from: usize,
        limit: usize,
        what: &str,
    ) -> Result<(usize, Option<usize>), XmlError> {
        let bytes = self.bytes();
        let end = self.ncname(from, limit, what, false)?;
        if end == limit || bytes[end] != b':' {
            return Ok((end, None));
        }
        let local_end = self.ncname(end + 1, limit, what, true)?;
        if local_end < limit && bytes[local_end] == b':' {
            return Err(self.error(local_end, format!("{what} has more than one `:`")));
        }
        Ok((local_end, Some(end)))
    }

    /// Reads an `NCName` (a name without `:`) starting at `from`, the prefix or (`local`) the
    /// local part of a qualified name, and returns where it ends.
    pub(super) fn ncname(
        self,
        from: usize,
        limit: usize,
        what: &str,
        local: bool,
    ) -> Result<usize, XmlError> {
        let bytes = self.bytes();
        let first = if from < limit {
            self.char_at(from)
        } else {
            '\0'
        };
        let class = if first.is_ascii() {
            NAME_CLASS[first as usize] & (NAME_START | NAME_CHAR)
        } else if is_name_start(first) {
            NAME_START
        } else if is_name_char(first) {
            NAME_CHAR
        } else {
            0
        };
        match class {
            NAME_START => {}
            NAME_CHAR => {
                let part = if local { " after `:`" } else { "" };
                return Err(self.error(from, format!("{what} starts{part} with {first:?}")));
            }
            _ => {
                return Err(self.error(
                    from,
                    match (first, local) {
                        (':', false) => format!("{what} starts with `:`"),
                        (':', true) => format!("{what} has more than one `:`"),
                        (_, false) => format!("expected {what}"),
                        (_, true) => format!("{what} ends with `:`"),
                    },
                ));
            }
        }
        let mut at = from + first.len_utf8();
        loop {
            // ASCII name characters are the common case; anything else (`:`, a character
            // that ends the name, or one outside ASCII) stops this loop.
            at += bytes[at..limit]
                .iter()
                .position(|&byte| NAME_CLASS[byte as usize] & (NAME_START | NAME_CHAR) == 0)
                .unwrap_or(limit - at);
            if at == limit || bytes[at].is_ascii() {
                return Ok(at);
            }
            let next = self.char_at(at);
            if !is_name_start(next) && !is_name_char(next) {
                return Ok(at);
            }
            at += next.len_utf8();
        }
    }

    /// Reads the reference starting with the `&` at `amp` and ending before `limit`: returns
    /// the character it stands for and the position after its `;`.
    pub(super) fn reference(self, amp: usize, limit: usize) -> Result<(char, usize), XmlError> {
        let bytes = self.bytes();
        let at = amp + 1;
        if at < limit && bytes[at] == b'#' {
            let (radix, digits) = if at + 1 < limit && bytes[at + 1] == b'x' {
                (16, at + 2)
            } else {
                (10, at + 1)
            };
            let mut value: u32 = 0;
            let mut end = digits;
            while end < limit {
                let Some(digit) = (bytes[end] as char).to_digit(radix) else {
                    break;
                };
                value = value.saturating_mul(radix).saturating_add(digit);
                end += 1;
            }
            if end == digits {
                return Err(self.error(amp, "character reference without digits"));
            }
            if end == limit || bytes[end] != b';' {
                return Err(self.error(amp, "character reference not closed by `;`"));
            }
            return match char::from_u32(value).filter(|&c| is_xml_char(c)) {
                Some(character) => Ok((character, end + 1)),
                None => Err(self.error(
                    amp,
                    format!(
                        "character reference `{}` is not an allowed XML character",
                        quote(&self.text[amp..=end])
                    ),
                )),
            };
        }
        let not_a_reference = || self.error(amp, "`&` that starts no reference (write `&amp;`)");
        let (end, _) = self
            .qname(at, limit, "entity name")
            .map_err(|_| not_a_reference())?;
        if end == limit || bytes[end] != b';' {
            return Err(not_a_reference());
        }
        let character = match &self.text[at..end] {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            other => return Err(XmlError::Entity(quote(other).into_owned())),
        };
        Ok((character, end + 1))
    }

    /// Checks the attribute value `start..end` (between its quotes). When it is not the same
    /// as its source text (it has references or whitespace to normalise) returns true and
    /// appends the normalised value to `out`; otherwise returns false and leaves `out` alone.
    pub(super) fn value(
        self,
        start: usize,
        end: usize,
        mut out: Option<&mut String>,
    ) -> Result<bool, XmlError> {
        let bytes = self.bytes();
        let mut copied = start;
        let mut at = start;
        while let Some(offset) = bytes[at..end]
            .iter()
            .position(|&byte| matches!(byte, b'<' | b'&' | b'\t' | b'\n' | b'\r'))
        {
            let special = at + offset;
            let (replacement, next) = match bytes[special] {
                b'<' => {
                    return Err(self.error(special, "`<` in an attribute value (write `&lt;`)"));
                }
                b'&' => self.reference(special, end)?,
                b'\r' if special + 1 < end && bytes[special + 1] == b'\n' => (' ', special + 2),
                _ => (' ', special + 1),
            };
            if let Some(out) = out.as_deref_mut() {
                out.push_str(&self.text[copied..special]);
                out.push(replacement);
            }
            copied = next;
            at = next;
        }
        if copied == start {
            return Ok(false);
        }
        if let Some(out) = out {
            out.push_str(&self.text[copied..end]);
        }
        Ok(true)
    }
}

/// Name character classes of bytes: `NameStartChar`, other `NameChar`, and `:` (which
/// qualified names allow once) in ASCII. Every other byte is 0, including those of characters
/// outside ASCII, which are looked at one by one.
pub(super) const NAME_START: u8 = 1;

pub(super) const NAME_CHAR: u8 = 2;

pub(super) const COLON: u8 = 4;

pub(super) static NAME_CLASS: [u8; 256] = {
    let mut classes = [0; 256];
    let mut byte = 0;
    while byte < 128 {
        let c = byte as u8;
        classes[byte] = if c.is_ascii_alphabetic() || c == b'_' {
            NAME_START
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            NAME_CHAR
        } else if c == b':' {
            COLON
        } else {
            0
        };
        byte += 1;
    }
    classes
};

/// `NameStartChar` outside ASCII.
pub(super) fn is_name_start(c: char) -> bool {
    matches!(c,
        '\u{C0}'..='\u{D6}'
        | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}'
        | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}'
        | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` outside ASCII that is not a `NameStartChar`.
pub(super) fn is_name_char(c: char) -> bool {
    matches!(c, '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// `Char`: what XML 1.0 allows anywhere.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// XML whitespace: space, tab, CR and LF, and nothing else.
pub(super) fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// The first position at or after `from` (and before `limit`) that is not XML whitespace.
pub(super) fn skip_space(bytes: &[u8], from: usize, limit: usize) -> usize {
    bytes[from..limit]
        .iter()
        .position(|&byte| !is_space(byte))
        .map_or(limit, |length| from + length)
}

/// The position of the first character of valid UTF-8 `bytes` that is not an XML `Char`: a
/// C0 control other than tab, LF and CR (one byte below 0x20), or U+FFFE or U+FFFF
/// (EF BF BE, EF BF BF). Surrogates cannot occur in valid UTF-8.
pub(super) fn forbidden_character(bytes: &[u8]) -> Option<usize> {
    const CHUNK: usize = 64;
    let forbidden_at = |from: usize, to: usize| {
        (from..to).find(|&at| {
            let byte = bytes[at];
            (byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r'))
                || (byte == 0xEF
                    && bytes.get(at + 1) == Some(&0xBF)
                    && matches!(bytes.get(at + 2), Some(0xBE | 0xBF)))
        })
    };
    let chunks = bytes.chunks_exact(CHUNK);
    let tail = chunks.remainder().len();
    for (index, chunk) in chunks.enumerate() {
        // A branch-free pass over a fixed-size chunk, which vectorises, flags the chunks
        // worth a closer look.
        let suspicious = chunk.iter().fold(0u8, |flags, &byte| {
            let control = (byte < 0x20) & (byte != b'\t') & (byte != b'\n') & (byte != b'\r');
            flags | u8::from(control) | u8::from(byte == 0xEF)
        });
        if suspicious != 0 {
            let from = index * CHUNK;
            if let Some(at) = forbidden_at(from, from + CHUNK) {
                return Some(at);
            }
        }
    }
    forbidden_at(bytes.len() - tail, bytes.len())
}

/// At most [`QUOTE_MAX`] bytes of `text` for an error message, cut with `…`.
pub(super) fn quote(text: &str) -> Cow<'_, str> {
    clip(text, QUOTE_MAX)
}

/// At most `max` bytes of `text` (cut at a character boundary, marked with `…`).
pub(super) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…", &text[..cut]))
}

/// XML end-of-line handling: `\r\n` and a lone `\r` become `\n`.
pub(super) fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Checks the encoding and strips a UTF-8 byte order mark; returns the text and the length of
/// the mark stripped.
pub(super) fn decode_utf8(bytes: &[u8]) -> Result<(&str, usize), XmlError> {
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(XmlError::Encoding(
            "the document starts with a UTF-16 byte order mark".into(),
        ));
    }
    let (bytes, bom) = match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        Some(rest) => (rest, 3),
        None => (bytes, 0),
    };
    // The SIMD check is the fast path; the standard one only runs to say where it went wrong.
    if let Ok(text) = simdutf8::basic::from_utf8(bytes) {
        return Ok((text, bom));
    }
    std::str::from_utf8(bytes)
        .map(|text| (text, bom))
        .map_err(|error| {
            XmlError::Encoding(format!(
                "invalid UTF-8 byte sequence at byte {}",
                bom + error.valid_up_to()
            ))
        })
}
