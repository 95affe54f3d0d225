//! Masking of CPR numbers in text that may reach a log or a terminal.

/// Replaces every CPR-like number in `text` (a run of nine or more digits, so a CPR number with a
/// digit missing is caught too, or six digits, a dash and four digits) with its first six digits followed by asterisks: `0101701234` becomes
/// `010170****`, `010170-1234` becomes `010170-****`.
pub fn mask_cpr_in(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            let ch = text[i..].chars().next().expect("i is on a char boundary");
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let dashed = run == 6
            && bytes.get(i + 6) == Some(&b'-')
            && bytes.len() >= i + 11
            && bytes[i + 7..i + 11].iter().all(u8::is_ascii_digit)
            && !bytes.get(i + 11).is_some_and(u8::is_ascii_digit);
        if dashed {
            out.push_str(&text[i..i + 7]);
            out.push_str("****");
            i += 11;
        } else if run >= 9 {
            out.push_str(&text[i..i + 6]);
            out.extend(std::iter::repeat_n('*', run - 6));
            i += run;
        } else {
            out.push_str(&text[i..i + run]);
            i += run;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mask_cpr_in;

    #[test]
    fn masks_cpr_numbers_only() {
        let cases = [
            ("urn:oio:cpr-nr:0101701234", "urn:oio:cpr-nr:010170****"),
            (
                "cpr 010170-1234 and 010170-12345",
                "cpr 010170-**** and 010170-12345",
            ),
            ("01017012345", "010170*****"),
            ("urn:oio:cpr-nr:010170123", "urn:oio:cpr-nr:010170***"),
            (
                "cvr 12345678, 2026-03-01T10:00:00Z",
                "cvr 12345678, 2026-03-01T10:00:00Z",
            ),
            ("æø 0101701234!", "æø 010170****!"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_cpr_in(input), expected, "{input}");
        }
    }
}
