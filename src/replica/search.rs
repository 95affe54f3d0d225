//! Where a number can hide in bytes that `forget` searches: XML that writes it with character
//! references, splits it with a comment, a processing instruction or an element, or wraps it in
//! CDATA; UTF-16 text; and base64 (whole, broken, cut anywhere, in blocks, nested).
//!
//! Everything here is lenient and linear in its input: it never fails, it reads documents that
//! are not well-formed, and it may find more than a parser would (erasure errs towards erasing).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The shortest run of base64 characters that is decoded (a CPR number takes 14).
const MIN_BASE64_RUN: usize = 14;

/// How deep base64 inside base64 is followed.
const MAX_DEPTH: usize = 5;

/// The text of `bytes` as a reader of the XML would see it: comments and processing
/// instructions removed (so the text on either side joins), CDATA content as it stands, and
/// character and predefined entity references replaced by their characters. With
/// `without_tags`, the tags go too, so that text split by an element (`0101<b/>701234`) joins as
/// an element's text does. Borrowed when there is nothing to change.
pub(super) fn readable(bytes: &[u8], without_tags: bool) -> Cow<'_, [u8]> {
    if !bytes.iter().any(|b| matches!(b, b'<' | b'&')) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        // Plain text up to the next `<` or `&` is copied as it is.
        let plain = bytes[at..]
            .iter()
            .position(|b| matches!(b, b'<' | b'&'))
            .unwrap_or(bytes.len() - at);
        out.extend_from_slice(&bytes[at..at + plain]);
        at += plain;
        let rest = &bytes[at..];
        if rest.is_empty() {
            break;
        }
        if rest.starts_with(b"<!--") {
            at += 4 + find(&rest[4..], b"-->").map_or(rest.len() - 4, |end| end + 3);
        } else if rest.starts_with(b"<?") {
            at += 2 + find(&rest[2..], b"?>").map_or(rest.len() - 2, |end| end + 2);
        } else if rest.starts_with(b"<![CDATA[") {
            // Its content is text as it stands: nothing in it is markup (not even `<!--`).
            let content = &rest[9..];
            let len = find(content, b"]]>").unwrap_or(content.len());
            out.extend_from_slice(&content[..len]);
            at += 9 + (len + 3).min(content.len());
        } else if without_tags && rest[0] == b'<' {
            // A tag, to its end (a `>` inside a quoted attribute value ends it early, which
            // only keeps more text).
            at += find(rest, b">").map_or(rest.len(), |end| end + 1);
        } else if rest[0] == b'&' {
            match reference(rest) {
                Some((c, len)) => {
                    let mut buffer = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    at += len;
                }
                None => {
                    out.push(b'&');
                    at += 1;
                }
            }
        } else {
            out.push(rest[0]);
            at += 1;
        }
    }
    Cow::Owned(out)
}

/// `bytes` read as UTF-16 (big-endian when more of its zero bytes are at even positions, as
/// ASCII is in it), as UTF-8; what is not UTF-16 becomes U+FFFD.
fn utf16_as_utf8(bytes: &[u8]) -> Vec<u8> {
    let even = bytes.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd = bytes.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    let units = bytes.chunks_exact(2).map(|pair| {
        if even > odd {
            u16::from_be_bytes([pair[0], pair[1]])
        } else {
            u16::from_le_bytes([pair[0], pair[1]])
        }
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A reference at the start of `text` (`&#48;`, `&#x30;`, `&#x0000030;`, `&amp;` ...): its
/// character and length. Leading zeros are skipped however many there are, as XML allows.
fn reference(text: &[u8]) -> Option<(char, usize)> {
    let (radix, mut at) = if text.starts_with(b"&#x") || text.starts_with(b"&#X") {
        (16, 3)
    } else if text.starts_with(b"&#") {
        (10, 2)
    } else {
        let end = text.iter().take(6).position(|&b| b == b';')?;
        let c = match &text[1..end] {
            b"lt" => '<',
            b"gt" => '>',
            b"amp" => '&',
            b"quot" => '"',
            b"apos" => '\'',
            _ => return None,
        };
        return Some((c, end + 1));
    };
    let zeros = text[at..].iter().take_while(|&&b| b == b'0').count();
    at += zeros;
    let digits = text[at..]
        .iter()
        .take(9)
        .take_while(|&&b| (b as char).is_digit(radix))
        .count();
    if text.get(at + digits) != Some(&b';') || zeros + digits == 0 {
        return None;
    }
    let value = match digits {
        0 => 0,
        _ => u32::from_str_radix(std::str::from_utf8(&text[at..at + digits]).ok()?, radix).ok()?,
    };
    Some((char::from_u32(value)?, at + digits + 1))
}

/// Base64 is decoded in windows of this many characters of text (overlapping by
/// [`OVERLAP`]), so that memory stays bounded whatever the size of what is searched.
const WINDOW: usize = 1024 * 1024;
const OVERLAP: usize = 64 * 1024;

/// Calls `found` with `bytes`, its text as UTF-16 if it is that, its [`readable`] texts (with
/// the tags and without), and every decoding of the base64 in the bytes and in the text
/// without tags (to [`MAX_DEPTH`]), until it returns true; returns whether it did.
///
/// A run of base64 is a stretch of its alphabet, white space inside it skipped; anything else
/// ends it. Runs are decoded window by window (see [`WINDOW`]); with `every_alignment`, and in
/// every window after the first, each run is decoded from each of its first four characters,
/// so base64 that was cut, or broken by a character too many or too few, still shows what
/// follows the break.
pub(super) fn any_view(
    bytes: &[u8],
    every_alignment: bool,
    found: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    view(bytes, every_alignment, 0, found)
}

fn view(
    bytes: &[u8],
    every_alignment: bool,
    depth: usize,
    found: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    if found(bytes) {
        return true;
    }
    // UTF-16 (with a byte order mark or without) has zero bytes; XML in UTF-8 never does. Its
    // text, as UTF-8, is searched in every way UTF-8 is.
    if depth < MAX_DEPTH
        && bytes.contains(&0)
        && view(&utf16_as_utf8(bytes), every_alignment, depth + 1, found)
    {
        return true;
    }
    // Each reading is let go before the next is made, so that at most one copy of a large
    // envelope is held besides it.
    {
        let text = readable(bytes, false);
        if matches!(text, Cow::Owned(_)) && found(&text) {
            return true;
        }
    }
    let joined = readable(bytes, true);
    if matches!(joined, Cow::Owned(_)) && found(&joined) {
        return true;
    }
    if depth >= MAX_DEPTH {
        return false;
    }
    // The base64 in the text as read (an element's text, joined), and in the bytes as
    // received too: whatever the reading got wrong cannot hide a payload.
    let texts: &[&[u8]] = match &joined {
        Cow::Owned(joined) => &[bytes, joined],
        Cow::Borrowed(_) => &[bytes],
    };
    for text in texts {
        let mut start = 0;
        loop {
            let end = text.len().min(start + WINDOW);
            if base64_views(
                &text[start..end],
                every_alignment || start > 0,
                depth,
                found,
            ) {
                return true;
            }
            if end == text.len() {
                break;
            }
            start = end - OVERLAP;
        }
    }
    false
}

/// What a byte is to a run of base64.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Alphabet,
    Space,
    /// `=`: the end of one block of base64, which another may follow.
    Pad,
    Other,
}

const CLASSES: [Class; 256] = {
    let mut classes = [Class::Other; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        classes[byte] = if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            Class::Alphabet
        } else if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            Class::Space
        } else if b == b'=' {
            Class::Pad
        } else {
            Class::Other
        };
        byte += 1;
    }
    classes
};

/// [`view`] of every decoding of the base64 runs in `text`.
fn base64_views(
    text: &[u8],
    every_alignment: bool,
    depth: usize,
    found: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    let shifts = if every_alignment { 4 } else { 1 };
    let mut cleaned = Vec::new();
    let mut decoded = Vec::new();
    let mut at = 0;
    while at < text.len() {
        // A run: from the next byte of the alphabet to the next byte that is neither it nor
        // white space.
        let Some(start) = text[at..]
            .iter()
            .position(|&b| CLASSES[usize::from(b)] == Class::Alphabet)
            .map(|skip| at + skip)
        else {
            break;
        };
        let end = text[start..]
            .iter()
            .position(|&b| CLASSES[usize::from(b)] == Class::Other)
            .map_or(text.len(), |len| start + len);
        at = end;
        let segment = &text[start..end];
        let run: &[u8] = if segment
            .iter()
            .any(|&b| CLASSES[usize::from(b)] == Class::Space)
        {
            cleaned.clear();
            cleaned.extend(
                segment
                    .iter()
                    .filter(|&&b| CLASSES[usize::from(b)] != Class::Space),
            );
            &cleaned
        } else {
            segment
        };
        if run.len() < MIN_BASE64_RUN {
            continue;
        }
        // Blocks that each end in padding, encoded one by one and joined, are decoded one by
        // one and joined again.
        for shift in 0..shifts {
            decoded.clear();
            let mut blocks = run.split(|&b| b == b'=').filter(|block| !block.is_empty());
            let mut first = true;
            let mut usable = true;
            for block in &mut blocks {
                let block = if first {
                    &block[shift.min(block.len())..]
                } else {
                    block
                };
                first = false;
                let whole = block.len() / 4 * 4;
                let tail = block.len() - whole;
                // A last group of one character holds no byte.
                let take = if tail == 1 { whole } else { block.len() };
                if LENIENT.decode_vec(&block[..take], &mut decoded).is_err() {
                    usable = false;
                    break;
                }
            }
            if usable && !decoded.is_empty() && view(&decoded, every_alignment, depth + 1, found) {
                return true;
            }
        }
    }
    false
}

/// Standard alphabet, padding optional, stray bits at the end allowed.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn finds(bytes: &[u8], every_alignment: bool) -> bool {
        any_view(bytes, every_alignment, &mut |view| {
            view.windows(10).any(|w| w == b"0101701234")
        })
    }

    #[test]
    fn sees_through_references_comments_cdata_and_utf16() {
        for text in [
            "<a>01017&#48;1234</a>",
            "<a>&#x30;101701234</a>",
            "<a b='0101&#55;01234'/>",
            "<a>0101<!-- x -->701234</a>",
            "<a>0101<?pi x?>701234</a>",
            "<a><![CDATA[0101]]><![CDATA[701234]]></a>",
        ] {
            assert!(finds(text.as_bytes(), false), "{text}");
        }
        let utf16: Vec<u8> = "<a>0101701234</a>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(finds(&utf16, false));
        // Text split by an element joins, as an element's text does.
        assert!(finds(b"<a>0101<b/>701234</a>", false));
        assert!(finds(b"<a>0101<b x='1'>7</b>01234</a>", false));
        // In UTF-16, inside a comment, and next to characters whose bytes hold `0x30`.
        for text in ["<a><!-- 0101701234 --></a>", "\u{3000}0101701234\u{130}"] {
            for big_endian in [false, true] {
                let bytes: Vec<u8> = text
                    .encode_utf16()
                    .flat_map(|unit| {
                        if big_endian {
                            unit.to_be_bytes()
                        } else {
                            unit.to_le_bytes()
                        }
                    })
                    .collect();
                assert!(finds(&bytes, false), "{text} {big_endian}");
            }
        }
        assert!(!finds(b"<a>&#xZZ;0101 701234 &unknown;</a>", false));
    }

    #[test]
    fn decodes_base64_whole_nested_broken_and_cut() {
        let inner = STANDARD.encode("<p>cpr 0101701234</p>");
        let whole = format!("<e><Base64>{inner}</Base64></e>");
        assert!(finds(whole.as_bytes(), false));
        let wrapped: String = inner
            .as_bytes()
            .chunks(7)
            .map(|c| format!("{}\n ", std::str::from_utf8(c).unwrap()))
            .collect();
        assert!(finds(format!("<B>{wrapped}</B>").as_bytes(), false));
        let nested = STANDARD.encode(format!("<x>{inner}</x>"));
        assert!(finds(format!("<B>{nested}</B>").as_bytes(), false));
        // A character dropped near the start misaligns the rest: found only when every
        // alignment is tried.
        let broken = format!("<B>{}{}</B>", &inner[..3], &inner[4..]);
        assert!(!finds(broken.as_bytes(), false));
        assert!(finds(broken.as_bytes(), true));
        // A stray character splits the run; the part after it is still decoded.
        let split = format!("<B>{}!{}</B>", &inner[..4], &inner[4..]);
        assert!(finds(split.as_bytes(), true));
        assert!(!finds(STANDARD.encode("0101801234").as_bytes(), true));
    }

    #[test]
    fn markup_inside_cdata_or_padded_references_hide_nothing() {
        let inner = STANDARD.encode("<p>cpr 0101701234</p>");
        // `<!--` inside CDATA is text, not the start of a comment that would swallow the rest.
        let cdata = format!("<a><![CDATA[<!--]]></a><B>{inner}</B>");
        assert!(finds(cdata.as_bytes(), false));
        for text in [
            "<a>0101&#x0000000037;01234</a>",
            "<a>0101&#0000000000000000055;01234</a>",
        ] {
            assert!(finds(text.as_bytes(), false), "{text}");
        }
        // A reference inside base64 splits its run; the bytes as received are searched too.
        let split = format!(
            "<B>{}&#x{:08x};{}</B>",
            &inner[..5],
            inner.as_bytes()[5],
            &inner[6..]
        );
        assert!(finds(split.as_bytes(), false));
        // UTF-16 without a byte order mark, starting with characters that are not ASCII.
        let utf16: Vec<u8> = "中文<a>0101701234</a>"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert!(finds(&utf16, false));
    }

    #[test]
    fn blocks_of_base64_joined_after_their_padding_are_decoded_joined() {
        let joined = format!(
            "<B>{}{}</B>",
            STANDARD.encode("<p>cpr 0101"),
            STANDARD.encode("701234</p>")
        );
        assert!(joined.contains('='));
        assert!(finds(joined.as_bytes(), false));
    }

    #[test]
    fn finds_the_number_at_the_end_of_base64_larger_than_a_window() {
        for size in [3 * WINDOW, 3 * WINDOW + 1, 3 * WINDOW + 2] {
            let payload = format!("{}<p>0101701234</p>", "x".repeat(size));
            let envelope = format!("<B>{}</B>", STANDARD.encode(payload));
            assert!(finds(envelope.as_bytes(), false), "{size}");
        }
    }
}
