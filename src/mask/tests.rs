//! Masking of CPR numbers and the reading of escapes, case by case.

use super::*;

#[test]
fn escapes_are_read_before_masking() {
    for (text, expected) in [
        (r"010170\U000000A01234", "010170\u{a0}****"),
        (r"010170\u002d1234", "010170-****"),
        (r"010170\u00201234", "010170 ****"),
        (r"01017\u00301234", "010170****"),
        (r"010170\u{2013}1234", "010170\u{2013}****"),
        (
            r"a \ b \u12 \uzzzz \u{110000}",
            r"a \ b \u12 \uzzzz \u{110000}",
        ),
    ] {
        let masked = mask_cpr_in(&unescaped(text));
        assert_eq!(masked, expected, "{text}");
    }
}

#[test]
fn a_cpr_number_for_forget_is_touched_by_no_digit_only() {
    for text in [
        "x0101701234",
        "a010170-1234b",
        "id_0101701234",
        "0101701234",
    ] {
        assert!(holds_cpr_number(text), "{text}");
    }
    for text in ["01017012345", "10101701234", "x9999999999", "0113701234"] {
        assert!(!holds_cpr_number(text), "{text}");
    }
}

/// Every shape a CPR number is written in, and how it is masked.
const CPR_SHAPES: &[(&str, &str)] = &[
    ("2512489996", "251248****"),
    ("251248-9996", "251248-****"),
    ("251248 9996", "251248 ****"),
    ("251248/9996", "251248/****"),
    ("251248.9996", "251248.****"),
    // What word processors write in place of a hyphen or a space.
    ("251248\u{a0}9996", "251248\u{a0}****"),
    ("251248\u{2013}9996", "251248\u{2013}****"),
    ("251248\u{2010}9996", "251248\u{2010}****"),
    ("251248\u{2212}9996", "251248\u{2212}****"),
    ("251248\u{fffd}9996", "251248\u{fffd}****"),
    ("cpr 251248\u{2013}99961", "cpr 251248\u{2013}*****"),
    // The same as an error message quoting the value escapes it.
    (r"251248\u{a0}9996", r"251248\u{a0}****"),
    (
        r#"string "251248\u{202f}9996""#,
        r#"string "251248\u{202f}****""#,
    ),
    (r"251248\u00A09996", r"251248\u00A0****"),
    ("25.12.48-9996", "25.12.48-****"),
    ("25-12-48-9996", "25-12-48-****"),
    ("25.12.48 9996", "25.12.48 ****"),
    ("25.12.48/9996", "25.12.48/****"),
    ("25.12.48.9996", "25.12.48.****"),
    ("25-12-48 9996", "25-12-48 ****"),
    ("25.12.489996", "25.12.48****"),
    ("25-12-489996", "25-12-48****"),
    ("urn:oio:cpr-nr:2512489996", "urn:oio:cpr-nr:251248****"),
    ("urn:oio:cpr-nr:251248 9996", "urn:oio:cpr-nr:251248 ****"),
    ("URN:OIO:CPR-NR:2512489996", "URN:OIO:CPR-NR:251248****"),
    ("besked_id=251248-9996", "besked_id=251248-****"),
    ("cpr:2512489996.", "cpr:251248****."),
    ("cpr-2512489996", "cpr-251248****"),
    ("\"2512489996\"", "\"251248****\""),
    ("'2512489996'", "'251248****'"),
    ("(2512489996)", "(251248****)"),
    ("[251248-9996]", "[251248-****]"),
    ("<cpr>2512489996</cpr>", "<cpr>251248****</cpr>"),
    ("2512489996 at the start", "251248**** at the start"),
    ("at the end 2512489996", "at the end 251248****"),
    (
        "two: 2512489996, 010170-1234;",
        "two: 251248****, 010170-****;",
    ),
    ("2512489996-0101701234", "251248****-010170****"),
    ("2512489996 0101701234", "251248**** 010170****"),
    ("2512489996/25.12.48-9996", "251248****/25.12.48-****"),
    ("25.12.48-2512489996", "25.12.48-251248****"),
    ("251248 2512489996", "251248 251248****"),
    ("a\n2512489996\r\n", "a\n251248****\r\n"),
    ("\t251248-9996\t", "\t251248-****\t"),
    ("*2512489996*", "*251248*****"),
    // Multi-byte neighbours.
    ("æ2512489996ø", "æ251248****ø"),
    ("€251248-9996€", "€251248-****€"),
    ("😀2512489996😀", "😀251248****😀"),
    (
        "\u{2028}25.12.48 9996\u{2028}",
        "\u{2028}25.12.48 ****\u{2028}",
    ),
    ("cpr\u{a0}2512489996", "cpr\u{a0}251248****"),
    // Any day 01-31 or 61-91 (replacement numbers) of any month, any year.
    ("3112999999", "311299****"),
    ("0101001234", "010100****"),
    ("6112701234", "611270****"),
    ("91.01.70-1234", "91.01.70-****"),
    // Labelled as a CPR number: masked whatever its length.
    ("urn:oio:cpr-nr:030390345", "urn:oio:cpr-nr:030390***"),
    ("urn:oio:cpr-nr:01017012345", "urn:oio:cpr-nr:010170*****"),
    ("urn:oio:cpr-nr:0101701", "urn:oio:cpr-nr:010170*"),
    ("urn:oio:cpr-nr:0101701234", "urn:oio:cpr-nr:010170****"),
    ("URN:OIO:CPR:01017012345678", "URN:OIO:CPR:010170********"),
    ("invalid CPR 030390345!", "invalid CPR 030390***!"),
    ("CPR-nummer: 010170-12345.", "CPR-nummer: 010170-*****."),
    ("cpr 010170 123", "cpr 010170 ***"),
    ("cpr=\"01017012345\"", "cpr=\"010170*****\""),
    ("besked_cpr=01017012345&", "besked_cpr=010170*****&"),
    ("cpr nr. 25.12.48-9996", "cpr nr. 25.12.48-****"),
    // Overlapping matches are all masked.
    ("cpr: 010170/25.12.48-9996 x", "cpr: 010170/**.12.48-**** x"),
    // Joined to other numbers by punctuation: masked on purpose.
    ("1.2512489996", "1.251248****"),
    ("2512489996.5", "251248****.5"),
    ("251248-9996-1", "251248-****-1"),
    ("+3112485678", "+311248****"),
];

#[test]
fn masks_every_cpr_shape() {
    // Not a possible birth date: a number, not a CPR number.
    for kept in [
        "0000000000",
        "9999999999",
        "2147483648",
        "4294967295",
        "3201701234",
        "0013701234",
        "6001701234",
        "9201701234",
        "99.99.99-9999",
        "message of 2147483648 bytes",
        "+4512345678",
    ] {
        assert!(matches!(mask_cpr(kept), Cow::Borrowed(_)), "{kept:?}");
    }
    for &(input, expected) in CPR_SHAPES {
        let masked = mask_cpr(input);
        assert_eq!(masked, expected, "{input:?}");
        assert!(matches!(masked, Cow::Owned(_)), "{input:?}");
        assert_eq!(mask_cpr_in(input), expected, "{input:?}");
        assert_eq!(mask_cpr(expected), expected, "masking twice: {input:?}");
        assert_eq!(masked.len(), input.len(), "{input:?}");
    }
}

/// Texts with digits that are no CPR number.
const NO_CPR: &[&str] = &[
    "",
    "no numbers",
    "251248",
    "9996",
    "25.12.48",
    "25/12/48",
    "25.12.2048",
    "25-12-2048",
    "2048-12-25",
    // UUIDs, whatever their digits.
    "b0000000-0000-4000-8000-111111111111",
    "12345678-1234-1234-1234-123456789012",
    "25124899-9612-4123-8123-251248999612",
    "00000000-0000-0000-0000-000000000000",
    "{12345678-1234-1234-1234-123456789012}",
    "urn:uuid:25124899-9612-4123-8123-251248999612",
    "0f0e7a1c-9999-4a2b-9c3d-4e5f6a7b8c9d",
    "12345678123412341234123456789012",
    // Letters or digits next to it.
    "x2512489996",
    "2512489996x",
    "0x2512489996",
    "a1b2c3d4e5f62512489996",
    "deadbeef2512489996cafe",
    "ÆØx2512489996xÆØ",
    // Longer runs of digits, and CPR shapes at an offset inside them.
    "25124899961",
    "12512489996",
    "02512489996",
    "10251248999",
    "1025124899961",
    "2512489996251248",
    "1251248-9996",
    "251248-99961",
    "1251248 9996",
    "125.12.48-9996",
    "25.12.48-99961",
    "x25.12.48-9996",
    "25.12.48-9996x",
    // Too few digits, or separators that are not allowed.
    "251248-999",
    "25124-89996",
    "2512489-996",
    "251248--9996",
    "251248 - 9996",
    "251248  9996",
    "251248\t9996",
    "251248\n9996",
    "251248_9996",
    "251248:9996",
    "251248,9996",
    "25.12-48-9996",
    "25-12.48-9996",
    "25.1248-9996",
    "2.12.48-9996",
    "25.12.4-9996",
    "25/12/48-9996",
    "12345678",
    "030390345",
    "123456789012",
    // Not labelled as a CPR number, or labelled but not a CPR-like number.
    "xcpr 01017012345",
    "cpr: 01017012345x",
    "cpr 010170",
    "cpr 010170-",
    "cpr 010170 and 42 others",
    "cpr 42 times",
    "cpr: 12345678-1234-1234-1234-123456789012",
    "urn:oio:cpr-nr:12345678-1234-1234-1234-123456789012",
    "cpr, according to the long label 01017012345",
    "cpr-nr:01017012345-1a",
    "cpr: 12345678-1234",
    "１２３４５６７８９０",
    // CVR numbers, timestamps, durations, phone numbers, ports, sizes, versions.
    "cvr 12345678",
    "urn:oio:cvr-nr:55133018",
    "2026-03-01T10:00:00.000Z",
    "2026-03-01T10:00:00+01:00",
    "2026-03-01 10:00:00",
    "took 1234567890ms",
    "took 12.345s",
    "+45 12 34 56 78",
    "+45 12345678",
    "tlf. 12345678",
    "amqps://broker.example:5671/vhost",
    "192.168.100.200:8080",
    "10.0.0.1",
    "12345678 bytes",
    "1.2.3",
    "v2.51.248",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
];

#[test]
fn leaves_everything_else_alone() {
    for &input in NO_CPR {
        let masked = mask_cpr(input);
        assert!(
            matches!(masked, Cow::Borrowed(_)),
            "{input:?} -> {masked:?}"
        );
    }
    // What every output writes: the word rule, and also a number joined to letters.
    for joined in ["x2512489996", "0x2512489996", "deadbeef2512489996cafe"] {
        assert!(mask_cpr_in(joined).contains("251248****"), "{joined}");
    }
    for digits in ["25124899961", "12512489996", "a1b2c3d4e5f62512489996"] {
        assert_eq!(mask_cpr_in(digits), digits);
    }
    // A number joined to letters is left alone by the word rule, but every output masks
    // it: a sender may name an element `a2512489996`.
    assert_eq!(mask_cpr("PT2512489996S"), "PT2512489996S");
    assert_eq!(mask_cpr_in("PT2512489996S"), "PT251248****S");
    assert_eq!(for_log("element `a2512489996`"), "element `a251248****`");
    assert_eq!(clean_reason("entity &c2512489996;"), "entity &c251248****;");
}

#[test]
fn escapes_control_characters_only() {
    let cases = [
        ("a\nb", "a\\nb"),
        ("\r\n", "\\r\\n"),
        ("\tx", "\\tx"),
        ("\u{1b}[31mred", "\\u{1b}[31mred"),
        ("\u{0}", "\\u{0}"),
        ("\u{7}\u{8}\u{b}\u{c}", "\\u{7}\\u{8}\\u{b}\\u{c}"),
        ("\u{1f}", "\\u{1f}"),
        ("\u{7f}", "\\u{7f}"),
        ("\u{80}\u{85}\u{9b}\u{9f}", "\\u{80}\\u{85}\\u{9b}\\u{9f}"),
        ("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}"),
        ("\u{202a}\u{202b}\u{202c}", "\\u{202a}\\u{202b}\\u{202c}"),
        ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
        (
            "\u{2066}\u{2067}\u{2068}\u{2069}",
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
        ),
        ("\u{61c}\u{200e}\u{200f}", "\\u{61c}\\u{200e}\\u{200f}"),
        ("æ\nø\u{1b}å", "æ\\nø\\u{1b}å"),
        ("back\\slash\n", "back\\slash\\n"),
    ];
    for (input, expected) in cases {
        let escaped = escape_controls(input);
        assert_eq!(escaped, expected, "{input:?}");
        assert!(matches!(escaped, Cow::Owned(_)), "{input:?}");
        let by_length: usize = input.chars().map(escaped_len).sum();
        assert_eq!(by_length, expected.len(), "{input:?}");
    }
    for input in [
        "",
        "plain text",
        "back\\slash \\n \\u{1b}",
        "æøå € 😀 👩‍👩‍👧",
        "\u{a0}\u{ad}\u{200b}\u{200d}\u{202f}\u{2065}\u{206a}\u{2070}\u{feff}",
    ] {
        assert!(
            matches!(escape_controls(input), Cow::Borrowed(_)),
            "{input:?}"
        );
    }
    // The predicted length matches what is written, for every character that is escaped.
    for c in (0..0x3000).filter_map(char::from_u32) {
        let mut out = String::new();
        push_escaped(&mut out, c);
        assert_eq!(out.len(), escaped_len(c), "{c:?}");
        assert!(!out.contains(is_control), "{c:?}");
    }
}

#[test]
fn caps_at_a_char_boundary_with_a_marker() {
    let nine_mib = "x".repeat(9_437_184 + 1024);
    let cases: [(&str, usize, &str); 7] = [
        ("abcdef", 3, "abc… [cut 3 bytes]"),
        ("abcdef", 0, "… [cut 6 bytes]"),
        ("æææ", 3, "æ… [cut 4 bytes]"),
        ("æææ", 4, "ææ… [cut 2 bytes]"),
        ("😀😀", 3, "… [cut 8 bytes]"),
        ("😀😀", 7, "😀… [cut 4 bytes]"),
        ("a\u{1b}b", 2, "a\u{1b}… [cut 1 bytes]"),
    ];
    for (input, max, expected) in cases {
        let capped = cap(input, max);
        assert_eq!(capped, expected, "{input:?} {max}");
        assert!(capped.len() <= max + 40);
    }
    let capped = cap(&nine_mib, 1024);
    assert!(capped.ends_with("x… [cut 9437184 bytes]"), "{capped:.40}");
    assert!(capped.len() <= 1024 + 40);
    let capped = cap("x", 0);
    assert_eq!(capped, "… [cut 1 bytes]");
    for (input, max) in [("", 0), ("abc", 3), ("abc", 100), ("æ", 2)] {
        assert!(matches!(cap(input, max), Cow::Borrowed(_)), "{input:?}");
    }
    // The marker's worst case still fits in 40 bytes.
    let mut marker = String::new();
    push_cut_marker(&mut marker, usize::MAX);
    assert!(marker.len() <= 40, "{marker}");
}

#[test]
fn cleans_reasons_and_log_text() {
    let cases = [
        ("plain", "plain"),
        (
            "party URN `urn:oio:cpr-nr:2512489996`\nis bad",
            "party URN `urn:oio:cpr-nr:251248****`\\nis bad",
        ),
        (
            "\u{1b}[2J 251248-9996\u{202e}",
            "\\u{1b}[2J 251248-****\\u{202e}",
        ),
        ("\n2512489996\n", "\\n251248****\\n"),
    ];
    for (input, expected) in cases {
        assert_eq!(clean_reason(input), expected, "{input:?}");
        assert_eq!(for_log(input), expected, "{input:?}");
    }
    assert!(matches!(for_log("nothing to do"), Cow::Borrowed(_)));
    assert!(matches!(for_log("2512489996"), Cow::Owned(_)));
    assert!(matches!(for_log("a\nb"), Cow::Owned(_)));

    // Long: cut to REASON_MAX_BYTES plus the marker.
    let long = format!("{}\n{}", "a".repeat(2000), "b".repeat(2000));
    let cleaned = clean_reason(&long);
    assert_eq!(cleaned, format!("{}… [cut 2978 bytes]", "a".repeat(1024)));
    assert_eq!(for_log(&long).len(), 4002);

    // The cut never splits an escape ...
    for before in 1000..=REASON_MAX_BYTES {
        let text = format!("{}{}", "a".repeat(before), "\u{1b}".repeat(10));
        let cleaned = clean_reason(&text);
        let kept = cleaned.split('…').next().expect("a part");
        let escapes = kept.strip_prefix(&"a".repeat(before)).expect("the a's");
        assert_eq!(escapes.len() % 6, 0, "{escapes}");
        assert!(
            escapes.split_inclusive('}').all(|e| e == "\\u{1b}"),
            "{escapes}"
        );
        assert!(kept.len() <= REASON_MAX_BYTES);
    }
    // ... or a multi-byte character ...
    let text = format!("{}{}", "a".repeat(1023), "æ".repeat(10));
    assert!(clean_reason(&text).starts_with(&format!("{}…", "a".repeat(1023))));
    // ... and never shows a CPR number's serial, nor leaves a CPR-shaped number behind.
    for before in 1000..=REASON_MAX_BYTES {
        for (number, is_cpr) in [
            ("2512489996", true),
            ("251248-9996", true),
            ("25.12.48 9996", true),
            ("25124899961234", false),
            ("251248-99961", false),
            ("25.12.48 99961", false),
        ] {
            let text = format!("{} {number} and more", "a".repeat(before));
            let cleaned = clean_reason(&text);
            assert!(!is_cpr || !cleaned.contains("9996"), "{cleaned}");
            assert!(cpr_shapes(&cleaned).is_empty(), "{cleaned}");
            assert!(cleaned.len() <= REASON_MAX_BYTES + 40);
        }
    }
}

/// The CPR shapes (with their boundaries) in `text`, found by brute force: every offset
/// against every written-out pattern, `#` standing for an ASCII digit.
fn cpr_shapes(text: &str) -> Vec<(usize, String)> {
    let mut patterns = vec!["##########".to_owned()];
    for separator in ["-", "/", " ", "."] {
        patterns.push(format!("######{separator}####"));
        for date in [".", "-"] {
            patterns.push(format!("##{date}##{date}##{separator}####"));
        }
    }
    for date in [".", "-"] {
        patterns.push(format!("##{date}##{date}######"));
    }
    let bytes = text.as_bytes();
    let word = |at: Option<&u8>| at.is_some_and(|&b| b.is_ascii_alphanumeric());
    let mut found = Vec::new();
    for start in 0..bytes.len() {
        if start > 0 && word(bytes.get(start - 1)) {
            continue;
        }
        for pattern in &patterns {
            let Some(candidate) = bytes.get(start..start + pattern.len()) else {
                continue;
            };
            let fits = candidate.iter().zip(pattern.bytes()).all(|(&b, p)| {
                if p == b'#' {
                    b.is_ascii_digit()
                } else {
                    b == p
                }
            });
            let month_at = if pattern.as_bytes()[2] == b'#' { 2 } else { 3 };
            if fits
                && !word(bytes.get(start + pattern.len()))
                && possible_date(&candidate[..2], &candidate[month_at..month_at + 2])
            {
                found.push((start, pattern.clone()));
            }
        }
    }
    found
}

/// Whether two-digit day and month could start a CPR number.
fn possible_date(day: &[u8], month: &[u8]) -> bool {
    let number = |two: &[u8]| (two[0] - b'0') * 10 + (two[1] - b'0');
    matches!(number(day), 1..=31 | 61..=91) && matches!(number(month), 1..=12)
}

/// Whether `text` holds a run of exactly ten ASCII digits with no ASCII letter, digit or `_`
/// on either side.
fn has_lone_ten_digits(text: &str) -> bool {
    let bytes = text.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric();
    let mut start = 0;
    while start < bytes.len() {
        let run = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if run == 10
            && !(start > 0 && word(&bytes[start - 1]))
            && !bytes.get(start + run).is_some_and(word)
            && possible_date(&bytes[start..start + 2], &bytes[start + 2..start + 4])
        {
            return true;
        }
        start += run.max(1);
    }
    false
}

/// A small fixed-seed generator (xorshift64*), so that failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn hex(&mut self, count: usize, only_digits: bool) -> String {
        let alphabet = if only_digits {
            &b"0123456789"[..]
        } else {
            &b"0123456789abcdefABCDEF"[..]
        };
        (0..count)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

/// Where a UUID or a CPR number was put into a generated text.
enum Planted {
    Uuid(std::ops::Range<usize>),
    Cpr {
        span: std::ops::Range<usize>,
        serial: std::ops::Range<usize>,
    },
}

#[test]
fn never_leaves_a_cpr_shape_nor_touches_a_uuid() {
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    let mut masked_cprs = 0;
    let mut kept_uuids = 0;
    for _ in 0..10_000 {
        let (text, planted) = noisy_text(&mut rng);
        let masked = mask_cpr(&text);
        check_masked(&text, &masked);
        let (cprs, uuids) = check_planted(&text, &masked, &planted);
        masked_cprs += cprs;
        kept_uuids += uuids;
        check_helpers(&text);
    }
    // The generator did plant what it is meant to test.
    assert!(masked_cprs > 1_500, "{masked_cprs} {kept_uuids}");
    assert!(kept_uuids > 1_500, "{masked_cprs} {kept_uuids}");
}

const NOISE: &[&str] = &[
    "0",
    "1",
    "2",
    "5",
    "9",
    "a",
    "f",
    "x",
    "T",
    "Z",
    "_",
    "-",
    "/",
    " ",
    ".",
    ":",
    "+",
    "*",
    "\n",
    "\t",
    "æ",
    "€",
    "😀",
    "\u{2028}",
    "\u{202e}",
    "\u{1b}",
    "\u{85}",
    "é",
    "cpr:",
    "CPR ",
    "urn:oio:cpr-nr:",
];
const SEPARATORS: &[&str] = &["", "-", "/", " ", "."];

/// A text of up to 24 pieces: noise, digit runs, CPR numbers in every shape, UUIDs; and where
/// it planted the last two.
fn noisy_text(rng: &mut Rng) -> (String, Vec<Planted>) {
    let mut text = String::new();
    let mut planted = Vec::new();
    for _ in 0..rng.below(24) {
        match rng.below(10) {
            0..=3 => text.push_str(rng.pick(NOISE)),
            4..=5 => {
                let count = 1 + rng.below(14);
                text.push_str(&rng.digits(count));
            }
            6..=7 => {
                let start = text.len();
                let day = match rng.below(2) {
                    0 => 1 + rng.below(31),
                    _ => 61 + rng.below(31),
                };
                let (d, m, y) = (
                    format!("{day:02}"),
                    format!("{:02}", 1 + rng.below(12)),
                    rng.digits(2),
                );
                let date = match rng.below(3) {
                    0 => "",
                    1 => ".",
                    _ => "-",
                };
                text.push_str(&format!("{d}{date}{m}{date}{y}"));
                text.push_str(rng.pick(SEPARATORS));
                let serial = text.len()..text.len() + 4;
                text.push_str(&rng.digits(4));
                planted.push(Planted::Cpr {
                    span: start..text.len(),
                    serial,
                });
            }
            _ => {
                let digits_only = rng.below(2) == 0;
                let start = text.len();
                let groups: Vec<String> = [8, 4, 4, 4, 12]
                    .iter()
                    .map(|&n| rng.hex(n, digits_only))
                    .collect();
                text.push_str(&groups.join("-"));
                planted.push(Planted::Uuid(start..text.len()));
            }
        }
    }
    (text, planted)
}

/// Masking keeps the length, stars only digits, masks every CPR shape's serial and leaves no
/// ten digits standing alone.
fn check_masked(text: &str, masked: &str) {
    assert_eq!(masked.len(), text.len(), "{text:?}");
    for (original, now) in text.bytes().zip(masked.bytes()) {
        assert!(original == now || (original.is_ascii_digit() && now == b'*'));
    }
    // Every CPR shape in the input has its serial masked ...
    for (start, pattern) in cpr_shapes(text) {
        let end = start + pattern.len();
        assert_eq!(&masked[end - 4..end], "****", "{text:?}");
    }
    // ... so no 10-digit run is left standing alone, and a CPR shape is only left
    // where masking a number put a `*` right after digits that were not one before (as
    // `25.12.25` + `1248****` from `25.12.2512489996`): never a serial.
    assert!(!has_lone_ten_digits(masked), "{text:?} -> {masked:?}");
    for (start, pattern) in cpr_shapes(masked) {
        let end = start + pattern.len();
        assert_eq!(
            masked.as_bytes().get(end),
            Some(&b'*'),
            "{text:?} -> {masked:?}"
        );
        assert!(
            text.as_bytes()[end].is_ascii_digit(),
            "{text:?} -> {masked:?}"
        );
    }
}

/// Every planted UUID that stands alone is kept and every planted CPR number's serial masked;
/// how many of each were checked.
fn check_planted(text: &str, masked: &str, planted: &[Planted]) -> (usize, usize) {
    let (mut masked_cprs, mut kept_uuids) = (0, 0);
    let bytes = text.as_bytes();
    let stands_alone = |span: &std::ops::Range<usize>| {
        let word = |b: &u8| b.is_ascii_alphanumeric();
        (span.start == 0 || !word(&bytes[span.start - 1])) && !bytes.get(span.end).is_some_and(word)
    };
    for plant in planted {
        match plant {
            Planted::Uuid(span) if stands_alone(span) => {
                assert_eq!(&masked[span.clone()], &text[span.clone()], "{text:?}");
                kept_uuids += 1;
            }
            Planted::Cpr { span, serial } if stands_alone(span) => {
                assert_eq!(&masked[serial.clone()], "****", "{text:?}");
                masked_cprs += 1;
            }
            _ => {}
        }
    }
    (masked_cprs, kept_uuids)
}

/// The other helpers never panic and keep their promises on the same input.
fn check_helpers(text: &str) {
    let logged = for_log(text);
    assert!(!logged.contains(is_control), "{text:?}");
    assert!(!has_lone_ten_digits(&logged), "{text:?} -> {logged:?}");
    let reason = clean_reason(text);
    assert!(reason.len() <= REASON_MAX_BYTES + 40);
    assert!(!reason.contains(is_control));
    for max in [0, 1, 2, 3, 5, 8, 13, 40] {
        let capped = cap(text, max);
        assert!(capped.len() <= max + 40);
        if capped.len() < text.len() {
            let kept = capped.rsplit_once('…').expect("a marker").0;
            assert!(text.starts_with(kept));
        }
    }
}

#[test]
fn long_texts_take_linear_time() {
    // Worst cases for a scanner that backtracks: long runs that almost make a CPR number.
    for unit in [
        "25124",
        "25.12.",
        "251248-",
        "1",
        "2512489996",
        "251248 999 ",
    ] {
        let text = unit.repeat(50_000);
        let started = std::time::Instant::now();
        let masked = mask_cpr(&text);
        assert!(matches!(masked, Cow::Borrowed(_)), "{unit}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{unit}"
        );
    }
    let text = "2512489996 ".repeat(50_000);
    let started = std::time::Instant::now();
    let masked = mask_cpr(&text);
    assert_eq!(masked, "251248**** ".repeat(50_000));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn an_underscore_does_not_hide_a_cpr_number() {
    for (input, expected) in [
        ("besked_2512489996.xml", "besked_251248****.xml"),
        ("_2512489996", "_251248****"),
        ("2512489996_", "251248****_"),
        ("id_251248-9996", "id_251248-****"),
    ] {
        assert_eq!(mask_cpr_in(input), expected, "{input}");
    }
}
