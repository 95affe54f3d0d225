//! Realistic envelopes generated on demand, for benchmarks and tests (included by path into
//! each test and benchmark target that uses it; not part of the library).
//!
//! The shape follows real Beskedfordeler traffic: `ns2:` envelope prefix, sagdok as the default
//! namespace, a base64 PKO_PostStatus payload; about 3.3 KB each.

#![allow(dead_code)]

use base64::Engine;

/// ASCII text (base64, say) in lines of `width` characters ending in CRLF, as mail-style
/// encoders wrap it: the shape that makes a parser copy the text.
pub fn wrapped(text: &str, width: usize) -> String {
    assert!(text.is_ascii(), "only ASCII text is wrapped");
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(width.max(1))
        .map(|line| std::str::from_utf8(line).expect("ASCII"))
        .collect();
    lines.join("\r\n")
}

/// `envelope` grown to `size` bytes (when smaller) by a comment after its BeskedVersion: a
/// well-formed message of a chosen size, for memory tests and benchmarks.
pub fn padded(envelope: String, size: usize) -> Vec<u8> {
    let marker = "<ns2:BeskedVersion>1.0</ns2:BeskedVersion>";
    let room = size.saturating_sub(envelope.len() + "<!---->".len());
    if room == 0 || !envelope.contains(marker) {
        return envelope.into_bytes();
    }
    envelope
        .replacen(marker, &format!("{marker}<!--{}-->", "x".repeat(room)), 1)
        .into_bytes()
}

/// A failed status whose error text makes the envelope about `size` bytes (a little under):
/// the largest message of that size for decoding to keep, since the text is derived into its
/// row besides the bytes. Its envelope when `size` is too small for any text.
pub fn failed_with_error_text(besked_id: &str, letter: &str, size: usize) -> Vec<u8> {
    let with = |text: &str| {
        status_envelope_with(
            besked_id,
            letter,
            &Status {
                fejl: Some(("20", text)),
                ..Status::FAILED
            },
        )
    };
    let base = with("").len();
    // The payload is base64: 4 bytes of envelope per 3 of text.
    let room = size.saturating_sub(base + 16) / 4 * 3;
    let text: String = "Fejl i forsendelsen. ".chars().cycle().take(room).collect();
    with(&text).into_bytes()
}

/// A realistic PKO_PostStatus envelope (about 3.3 KB) with the given ids.
pub fn status_envelope(besked_id: &str, letter: &str, minute: u32) -> String {
    status_envelope_with(
        besked_id,
        letter,
        &Status {
            at: &format!("2026-03-01T10:{minute:02}:00.000Z"),
            ..Status::DELIVERED
        },
    )
}

/// What a generated status says.
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    /// `TransaktionsDatoTid` (also the registration and creation time).
    pub at: &'a str,
    /// `TransaktionsStatusKode`, and the name of the `ObjektHandling`.
    pub code: &'a str,
    /// The `ObjektHandling` UUID of the event.
    pub handling: &'a str,
    pub kanal: &'a str,
    /// `FejlKode` and `FejlTekst`, for a failure.
    pub fejl: Option<(&'a str, &'a str)>,
}

impl Status<'static> {
    pub const DELIVERED: Status<'static> = Status {
        at: "2026-03-01T10:00:00.000Z",
        code: "Afleveret Digital Post",
        handling: "f7161a89-5068-4023-bc80-d7f4daad2a2e",
        kanal: "Digital Post",
        fejl: None,
    };
    pub const SENT: Status<'static> = Status {
        code: "Afsendt",
        handling: "db5a6025-caa3-45c3-8e02-4e6fa8142ade",
        ..Status::DELIVERED
    };
    pub const RECEIVED: Status<'static> = Status {
        code: "Modtaget Digital Post",
        handling: "eb866ca2-b871-4387-b501-12cde577bd58",
        ..Status::DELIVERED
    };
    pub const FAILED: Status<'static> = Status {
        code: "Fejlet",
        handling: "e225a75c-4b63-46c4-9423-77f5c8762445",
        fejl: Some(("20", "Modtager kan ikke modtage Digital Post")),
        ..Status::DELIVERED
    };
    pub const POSTED: Status<'static> = Status {
        code: "Modtaget Post Danmark",
        handling: "e94a0a8b-60a0-42ad-8b83-52c9e15d0fb3",
        kanal: "Fysisk Post",
        ..Status::DELIVERED
    };
}

/// A realistic PKO_PostStatus envelope (about 3.3 KB) saying `status` about `letter`.
pub fn status_envelope_with(besked_id: &str, letter: &str, status: &Status<'_>) -> String {
    let Status {
        at,
        code,
        handling,
        kanal,
        fejl,
    } = *status;
    let fejl = match fejl {
        Some((kode, tekst)) => {
            format!(
                "<FejlDetaljer><FejlKode>{kode}</FejlKode><FejlTekst>{tekst}</FejlTekst></FejlDetaljer>"
            )
        }
        None => "<FejlDetaljer/>".into(),
    };
    let payload = format!(
        r#"<PKO_PostStatus xmlns="http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"><TransmissionId>{letter}</TransmissionId><MessageUUID>{letter}</MessageUUID><MessageId>{besked_id}</MessageId><KanalKode>{kanal}</KanalKode><TransaktionsDatoTid>{at}</TransaktionsDatoTid><TransaktionsStatusKode>{code}</TransaktionsStatusKode><CorrelationId>{letter}</CorrelationId>{fejl}</PKO_PostStatus>"#
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns2:Haendelsesbesked xmlns="urn:oio:sagdok:3.0.0" xmlns:ns2="urn:oio:besked:kuvert:1.0" xmlns:ns3="http://www.w3.org/2000/09/xmldsig#" xmlns:ns4="urn:oio:sts:1.0.0"><ns2:BeskedId><UUIDIdentifikator>{besked_id}</UUIDIdentifikator></ns2:BeskedId><ns2:BeskedVersion>1.0</ns2:BeskedVersion><ns2:Beskedkuvert><ns2:Filtreringsdata><ns2:Beskedtype><UUIDIdentifikator>d2bed63c-4853-4008-b6e0-a74c15b15fbf</UUIDIdentifikator></ns2:Beskedtype><ns2:BeskedAnsvarligAktoer><UUIDIdentifikator>96514e13-afdd-44d6-95a8-adc2ca19b127</UUIDIdentifikator></ns2:BeskedAnsvarligAktoer><ns2:TilladtModtager><URNIdentifikator>urn:oio:cvr:55133018</URNIdentifikator></ns2:TilladtModtager><ns2:RelateretObjekt><ns2:ObjektId><UUIDIdentifikator>53213778-de6b-42ee-8fbd-8aa73b0d4d85</UUIDIdentifikator></ns2:ObjektId><ns2:ObjektType><UUIDIdentifikator>91aa31b3-c4b3-499e-8689-93b1ef89f319</UUIDIdentifikator></ns2:ObjektType></ns2:RelateretObjekt><ns2:ObjektRegistrering><ns2:ObjektRegistreringId><UUIDIdentifikator>{letter}</UUIDIdentifikator></ns2:ObjektRegistreringId><ns2:RegistreringsAktoer><UUIDIdentifikator>19dc3a1d-c629-4853-b566-7fe49cf674ce</UUIDIdentifikator></ns2:RegistreringsAktoer><ns2:Registreringstidspunkt><TidsstempelDatoTid>{at}</TidsstempelDatoTid></ns2:Registreringstidspunkt><ns2:ObjektAnsvarligMyndighed><URNIdentifikator>urn:oio:cvr:55133018</URNIdentifikator></ns2:ObjektAnsvarligMyndighed><ns2:ObjektId><UUIDIdentifikator>{letter}</UUIDIdentifikator></ns2:ObjektId><ns2:ObjektType><UUIDIdentifikator>9a7be69f-b736-4e0e-9d5b-78d4f43e7ad7</UUIDIdentifikator></ns2:ObjektType><ns2:ObjektHandling><UUIDIdentifikator>{handling}</UUIDIdentifikator></ns2:ObjektHandling></ns2:ObjektRegistrering></ns2:Filtreringsdata><ns2:Leveranceinformation><ns2:Dannelsestidspunkt><TidsstempelDatoTid>{at}</TidsstempelDatoTid></ns2:Dannelsestidspunkt><ns2:TransaktionsId><UUIDIdentifikator>{besked_id}</UUIDIdentifikator></ns2:TransaktionsId><ns2:Kildesystem><UUIDIdentifikator>19dc3a1d-c629-4853-b566-7fe49cf674ce</UUIDIdentifikator></ns2:Kildesystem><ns2:Sikkerhedsklassificering><UUIDIdentifikator>1d81c472-0808-44cc-963d-f5ef0170ae1d</UUIDIdentifikator></ns2:Sikkerhedsklassificering></ns2:Leveranceinformation></ns2:Beskedkuvert><ns2:Beskeddata><Base64 xmlns="urn:besked:kuvert:1.0" xmlns:ns4="urn:oio:sagdok:3.0.0" content-type="application/xml" encoding="UTF-8" file-type=".xml">{encoded}</Base64></ns2:Beskeddata></ns2:Haendelsesbesked>"#
    )
}

/// A small, fast, deterministic generator of UUID-shaped identifiers (xorshift64*), so that
/// benchmarks insert keys in random order like real traffic does.
pub struct UuidGenerator(u64);

impl UuidGenerator {
    pub fn new(seed: u64) -> UuidGenerator {
        UuidGenerator(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next random version-4 UUID.
    pub fn next_uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The size of each of [`hostile_documents`].
const HOSTILE_SIZE: usize = 10 << 20;

/// Repeats `item(n)` for n = 0, 1, … between `head` and `tail` until the document is about
/// [`HOSTILE_SIZE`] bytes.
fn fill(head: &str, item: impl Fn(usize) -> String, tail: &str) -> Vec<u8> {
    let mut document = String::with_capacity(HOSTILE_SIZE + 64);
    document.push_str(head);
    let mut n = 0;
    while document.len() + tail.len() < HOSTILE_SIZE {
        document.push_str(&item(n));
        n += 1;
    }
    document.push_str(tail);
    document.into_bytes()
}

/// 10 MiB documents built to make an XML parser do more than linear work: thousands of
/// namespace declarations or attributes, deep nesting, huge names, endless references. The
/// parser's guard test and `benches/xml.rs` both use them.
pub fn hostile_documents() -> Vec<(&'static str, Vec<u8>)> {
    let declarations: String = (0..20_000)
        .map(|n| format!(" xmlns:p{n}=\"urn:p{n}\""))
        .collect();
    let half_declared = format!("<r{declarations}>");
    // Inside the root: the deepest nesting allowed (256).
    let deep = format!("{}{}", "<a>".repeat(255), "</a>".repeat(255));
    vec![
        (
            "20k xmlns on the root, then elements",
            fill(&half_declared, |n| format!("<p{}:e/>", n % 20_000), "</r>"),
        ),
        (
            "distinct namespace URIs",
            fill("<r>", |n| format!("<e xmlns=\"urn:n{n}\"/>"), "</r>"),
        ),
        (
            "distinct prefixes, one per element",
            fill("<r>", |n| format!("<p{n}:e xmlns:p{n}=\"urn:x\"/>"), "</r>"),
        ),
        (
            "one element, many attributes",
            fill("<r", |n| format!(" a{n}=\"\""), "/>"),
        ),
        (
            "one element, many prefixed attributes",
            fill("<r xmlns:p=\"urn:p\"", |n| format!(" p:a{n}=\"\""), "/>"),
        ),
        (
            "many prefixes for one URI, one attribute",
            fill(
                "<r",
                |n| format!(" xmlns:p{n}=\"urn:same\" p{n}:a{}=\"\"", n),
                "/>",
            ),
        ),
        (
            "elements with 9 attributes each",
            fill(
                "<r>",
                |_| "<e a=\"\" b=\"\" c=\"\" d=\"\" e=\"\" f=\"\" g=\"\" h=\"\" i=\"\"/>".into(),
                "</r>",
            ),
        ),
        (
            "text split by character references",
            fill("<r>", |_| "ab&#x41;".into(), "</r>"),
        ),
        (
            "attribute value full of references",
            fill("<r a=\"", |_| "&amp;&#65;".into(), "\"/>"),
        ),
        ("9 MiB element name", {
            let name = "n".repeat(9 << 20);
            format!("<{name}/>").into_bytes()
        }),
        ("5 MiB name, start and end tag", {
            let name = "n".repeat(5 << 20);
            format!("<{name}></{name}>").into_bytes()
        }),
        (
            "attribute value full of whitespace",
            fill("<r a=\"", |_| "\t\r\n ".into(), "\"/>"),
        ),
        (
            "deepest allowed nesting, repeated",
            fill("<r>", |_| deep.clone(), "</r>"),
        ),
        ("comments", fill("<r>", |_| "<!-- c -->".into(), "</r>")),
        (
            "processing instructions",
            fill("<r>", |_| "<?p d?>".into(), "</r>"),
        ),
        (
            "text with many `]]` and `>`",
            fill("<r>", |_| "]] ]>".into(), "</r>"),
        ),
        (
            "one long comment full of `-`",
            fill("<r><!--", |_| "- ".into(), "--></r>"),
        ),
        (
            "many `&` without `;`",
            fill("<r a=\"", |_| "&a".into(), "\"/>"),
        ),
        ("unclosed start tag", fill("<r", |_| " a=\"\"".into(), "")),
    ]
}
