//! `Haendelsesbesked`: bytes in, an [`Envelope`] out. No I/O.
//!
//! Elements are found by namespace and local name, never by prefix or position. The envelope
//! may be the document root or sit inside `ModtagBeskedInput` (the form push receivers store).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use thiserror::Error;

use crate::decode::xml::{self, NS_BASE64, NS_KUVERT, NS_SAGDOK, NS_STS, Tree, XmlError};
use crate::time;

/// Why an envelope was refused. Shown to people in the `rejected` table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("root element is `{0}`, expected Haendelsesbesked in namespace {NS_KUVERT}")]
    NotAnEnvelope(String),
    #[error("missing BeskedId (Haendelsesbesked/BeskedId/UUIDIdentifikator or URNIdentifikator)")]
    MissingBeskedId,
    #[error("{element} holds `{value}`, which is not a timestamp")]
    BadTimestamp {
        element: &'static str,
        value: String,
    },
    #[error("Beskeddata/Base64 is not valid base64: {0}")]
    BadBase64(String),
    #[error("the payload in Beskeddata/Base64: {0}")]
    BadPayload(XmlError),
}

/// A `RelateretObjekt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelatedObject {
    pub objekt_id: Option<String>,
    pub objekt_type: Option<String>,
    pub objekt_rolle: Option<String>,
}

/// An `ObjektRegistrering`; times are already UTC text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRegistration {
    pub registrering_id: Option<String>,
    pub aktoer: Option<String>,
    pub tidspunkt: Option<String>,
    pub myndighed: Option<String>,
    pub objekt_id: Option<String>,
    pub objekt_type: Option<String>,
    pub handling: Option<String>,
    pub opgave_emne: Option<String>,
}

/// Where the payload of `Beskeddata` is.
#[derive(Debug, Clone)]
pub enum Payload {
    /// No `Beskeddata`, or an empty one.
    None,
    /// An element written inline: its index in [`Envelope::tree`].
    Inline(usize),
    /// The document decoded from `Base64`.
    Decoded(Tree<'static>),
}

/// The parts of a `Haendelsesbesked` beskedhent uses. Identifiers are the trimmed text received.
/// It borrows the bytes it was read from.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub besked_id: String,
    pub beskedtype: Option<String>,
    pub ansvarlig_aktoer: Option<String>,
    pub tilladte_modtagere: Vec<String>,
    pub relaterede_objekter: Vec<RelatedObject>,
    pub registreringer: Vec<ObjectRegistration>,
    pub dannelsestidspunkt: Option<String>,
    pub transaktions_id: Option<String>,
    pub kildesystem: Option<String>,
    pub tree: Tree<'a>,
    pub payload: Payload,
}

impl Envelope<'_> {
    /// The payload document and the index of its root element, if there is one.
    pub fn payload(&self) -> Option<(&Tree<'_>, usize)> {
        match &self.payload {
            Payload::None => None,
            Payload::Inline(index) => Some((&self.tree, *index)),
            Payload::Decoded(tree) => Some((tree, Tree::ROOT)),
        }
    }
}

/// Finds the besked id of a refused document, for the `rejected` table and logs. It looks at the
/// bytes only (no XML parsing, so it also works on malformed or hostile input): the text of the
/// first `...Identifikator>` element after the first `BeskedId`.
pub fn sniff_besked_id(bytes: &[u8]) -> Option<String> {
    let find = |haystack: &[u8], needle: &[u8]| {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    };
    let after_tag = &bytes[find(bytes, b"BeskedId")? + 8..];
    let after_identifier = &after_tag[find(after_tag, b"Identifikator>")? + 14..];
    let end = after_identifier.iter().position(|&byte| byte == b'<')?;
    let id = std::str::from_utf8(&after_identifier[..end]).ok()?.trim();
    let plausible =
        !id.is_empty() && id.len() <= 200 && id.chars().all(|ch| !ch.is_control() && ch != '&');
    plausible.then(|| id.to_owned())
}

/// Parses one envelope.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let mut tree = xml::parse(bytes)?;
    let root = find_envelope(&tree)?;
    let besked_id = tree
        .child(root, NS_KUVERT, "BeskedId")
        .and_then(|node| identifier(&tree, node))
        .ok_or(EnvelopeError::MissingBeskedId)?;

    let kuvert = tree.child(root, NS_KUVERT, "Beskedkuvert");
    let filter = kuvert.and_then(|node| tree.child(node, NS_KUVERT, "Filtreringsdata"));
    let levering = kuvert.and_then(|node| tree.child(node, NS_KUVERT, "Leveranceinformation"));
    let id_of = |parent: Option<usize>, name: &str| {
        parent
            .and_then(|node| tree.child(node, NS_KUVERT, name))
            .and_then(|node| identifier(&tree, node))
    };

    let mut tilladte_modtagere = Vec::new();
    let mut relaterede_objekter = Vec::new();
    let mut registreringer = Vec::new();
    if let Some(filter) = filter {
        tilladte_modtagere = tree
            .children_named(filter, NS_KUVERT, "TilladtModtager")
            .filter_map(|node| identifier(&tree, node))
            .collect();
        relaterede_objekter = tree
            .children_named(filter, NS_KUVERT, "RelateretObjekt")
            .map(|node| RelatedObject {
                objekt_id: id_of(Some(node), "ObjektId"),
                objekt_type: id_of(Some(node), "ObjektType"),
                objekt_rolle: id_of(Some(node), "ObjektRolle"),
            })
            .collect();
        for node in tree.children_named(filter, NS_KUVERT, "ObjektRegistrering") {
            registreringer.push(ObjectRegistration {
                registrering_id: id_of(Some(node), "ObjektRegistreringId"),
                aktoer: id_of(Some(node), "RegistreringsAktoer"),
                tidspunkt: timestamp(&tree, Some(node), "Registreringstidspunkt")?,
                myndighed: id_of(Some(node), "ObjektAnsvarligMyndighed"),
                objekt_id: id_of(Some(node), "ObjektId"),
                objekt_type: id_of(Some(node), "ObjektType"),
                handling: id_of(Some(node), "ObjektHandling"),
                opgave_emne: id_of(Some(node), "OpgaveEmne"),
            });
        }
    }

    Ok(Envelope {
        beskedtype: id_of(filter, "Beskedtype"),
        ansvarlig_aktoer: id_of(filter, "BeskedAnsvarligAktoer"),
        dannelsestidspunkt: timestamp(&tree, levering, "Dannelsestidspunkt")?,
        transaktions_id: id_of(levering, "TransaktionsId"),
        kildesystem: id_of(levering, "Kildesystem"),
        payload: payload(&mut tree, root)?,
        besked_id,
        tilladte_modtagere,
        relaterede_objekter,
        registreringer,
        tree,
    })
}

/// Finds `Haendelsesbesked`: the root, or the child of a `ModtagBeskedInput` root.
fn find_envelope(tree: &Tree) -> Result<usize, EnvelopeError> {
    let root = tree.node(Tree::ROOT);
    if root.is(NS_KUVERT, "Haendelsesbesked") {
        return Ok(Tree::ROOT);
    }
    if root.is(NS_STS, "ModtagBeskedInput")
        && let Some(inner) = tree.child(Tree::ROOT, NS_KUVERT, "Haendelsesbesked")
    {
        return Ok(inner);
    }
    let shown = if root.ns.is_empty() {
        root.name.to_string()
    } else {
        format!("{{{}}}{}", root.ns, root.name)
    };
    Err(EnvelopeError::NotAnEnvelope(shown))
}

/// The text of the `UUIDIdentifikator` or `URNIdentifikator` inside an id element.
fn identifier(tree: &Tree, node: usize) -> Option<String> {
    tree.children(node)
        .find(|&child| {
            let child = tree.node(child);
            child.is(NS_SAGDOK, "UUIDIdentifikator") || child.is(NS_SAGDOK, "URNIdentifikator")
        })
        .and_then(|child| tree.text(child))
        .map(crate::decode::field::field)
}

/// The `TidsstempelDatoTid` inside `parent/name`, as UTC text.
fn timestamp(
    tree: &Tree,
    parent: Option<usize>,
    name: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    let Some(value) = parent
        .and_then(|node| tree.child(node, NS_KUVERT, name))
        .and_then(|node| tree.child(node, NS_SAGDOK, "TidsstempelDatoTid"))
        .and_then(|node| tree.text(node))
    else {
        return Ok(None);
    };
    time::normalize(value)
        .map(Some)
        .ok_or_else(|| EnvelopeError::BadTimestamp {
            element: name,
            value: value.chars().take(64).collect(),
        })
}

/// Locates the payload: inline XML, or base64 of another XML document.
fn payload(tree: &mut Tree<'_>, root: usize) -> Result<Payload, EnvelopeError> {
    let Some(data) = tree.child(root, NS_KUVERT, "Beskeddata") else {
        return Ok(Payload::None);
    };
    let Some(first) = tree.children(data).next() else {
        return Ok(Payload::None);
    };
    if !tree.node(first).is(NS_BASE64, "Base64") {
        return Ok(Payload::Inline(first));
    }
    let Some(decoded) = decode_base64(tree.raw_text(first))? else {
        return Ok(Payload::None);
    };
    // Decoded, the text is not needed again: if it had to be copied out of the envelope's
    // bytes (entities in it), that copy goes before the payload is parsed.
    tree.release_text(first);
    let document = xml::parse_owned(decoded).map_err(EnvelopeError::BadPayload)?;
    Ok(Payload::Decoded(document))
}

/// Base64 text with whitespace anywhere (lines are often wrapped), decoded; `None` when there
/// is nothing but whitespace. Decoded a piece at a time, so that it needs no copy of the text.
fn decode_base64(text: &str) -> Result<Option<Vec<u8>>, EnvelopeError> {
    /// Characters per piece: a multiple of 4, so each piece but the last is whole groups.
    const PIECE: usize = 64 * 1024;
    // Offsets in an error count from the start of the text (white space left out), not of
    // the piece.
    let bad = |done: usize| {
        move |error: base64::DecodeError| {
            use base64::DecodeError::*;
            EnvelopeError::BadBase64(match error {
                InvalidByte(at, byte) => format!("invalid byte {byte} at character {}", done + at),
                InvalidLastSymbol(at, byte) => {
                    format!("invalid last symbol {byte} at character {}", done + at)
                }
                InvalidLength(length) => format!("invalid length {}", done + length),
                InvalidPadding => "invalid padding".into(),
            })
        }
    };
    let mut done = 0;
    let mut decoded = Vec::with_capacity(text.len() / 4 * 3);
    let mut piece = Vec::with_capacity(PIECE.min(text.len()));
    let mut any = false;
    for byte in text.bytes().filter(|byte| !byte.is_ascii_whitespace()) {
        if piece.len() == PIECE {
            // Padding ends the data: only the last piece may have it.
            if piece.contains(&b'=') {
                return Err(EnvelopeError::BadBase64(
                    "padding (`=`) before the end of the data".into(),
                ));
            }
            BASE64.decode_vec(&piece, &mut decoded).map_err(bad(done))?;
            done += piece.len();
            piece.clear();
        }
        piece.push(byte);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    BASE64.decode_vec(&piece, &mut decoded).map_err(bad(done))?;
    Ok(Some(decoded))
}

/// The bytes of an envelope's payload sent as `Base64`, decoded, without parsing them (for
/// showing them, or searching them): `None` when the envelope is not well-formed or has no
/// such payload.
pub fn base64_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let tree = xml::parse(bytes).ok()?;
    let root = find_envelope(&tree).ok()?;
    let data = tree.child(root, NS_KUVERT, "Beskeddata")?;
    let first = tree.children(data).next()?;
    if !tree.node(first).is(NS_BASE64, "Base64") {
        return None;
    }
    decode_base64(tree.raw_text(first)).ok().flatten()
}

/// Standard alphabet; padding may be present or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE_DEFAULT_NS: &str = r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:oio="urn:oio:sagdok:3.0.0">
  <BeskedId><oio:URNIdentifikator> urn:uuid:1 </oio:URNIdentifikator></BeskedId>
  <Beskedkuvert>
    <Leveranceinformation>
      <Dannelsestidspunkt><oio:TidsstempelDatoTid>2026-03-01T12:00:00</oio:TidsstempelDatoTid></Dannelsestidspunkt>
    </Leveranceinformation>
    <Filtreringsdata>
      <ObjektRegistrering>
        <ObjektHandling><oio:UUIDIdentifikator>h</oio:UUIDIdentifikator></ObjektHandling>
        <Registreringstidspunkt><oio:TidsstempelDatoTid>2026-07-01T12:00:00+02:00</oio:TidsstempelDatoTid></Registreringstidspunkt>
        <ObjektId><oio:URNIdentifikator>urn:oio:cpr-nr:0101701234</oio:URNIdentifikator></ObjektId>
      </ObjektRegistrering>
      <Beskedtype><oio:UUIDIdentifikator>t</oio:UUIDIdentifikator></Beskedtype>
    </Filtreringsdata>
  </Beskedkuvert>
  <Beskeddata><x:Doc xmlns:x="urn:example"><x:Flag>true</x:Flag></x:Doc></Beskeddata>
</Haendelsesbesked>"#;

    #[test]
    fn reads_fields_in_any_order_and_prefix_style() {
        let envelope = parse_envelope(ENVELOPE_DEFAULT_NS.as_bytes()).expect("valid");
        assert_eq!(envelope.besked_id, "urn:uuid:1");
        assert_eq!(envelope.beskedtype.as_deref(), Some("t"));
        assert_eq!(
            envelope.dannelsestidspunkt.as_deref(),
            Some("2026-03-01T11:00:00.000Z")
        );
        let registrering = &envelope.registreringer[0];
        assert_eq!(registrering.handling.as_deref(), Some("h"));
        assert_eq!(
            registrering.tidspunkt.as_deref(),
            Some("2026-07-01T10:00:00.000Z")
        );
        assert_eq!(
            registrering.objekt_id.as_deref(),
            Some("urn:oio:cpr-nr:0101701234")
        );
        let (tree, root) = envelope.payload().expect("inline payload");
        assert!(tree.node(root).is("urn:example", "Doc"));
    }

    #[test]
    fn elements_in_a_foreign_namespace_are_not_taken() {
        // Same local names, wrong namespace: a prefix-based parser would accept this.
        let input = r#"<k:Haendelsesbesked xmlns:k="urn:oio:besked:kuvert:1.0" xmlns:w="urn:wrong"><w:BeskedId><w:UUIDIdentifikator>x</w:UUIDIdentifikator></w:BeskedId></k:Haendelsesbesked>"#;
        assert_eq!(
            parse_envelope(input.as_bytes())
                .expect_err("no id")
                .to_string(),
            EnvelopeError::MissingBeskedId.to_string()
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let cases = [
            ("<Other/>", "root element is `Other`"),
            (
                r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0"/>"#,
                "missing BeskedId",
            ),
            (
                r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:s="urn:oio:sagdok:3.0.0"><BeskedId><s:UUIDIdentifikator>a</s:UUIDIdentifikator></BeskedId><Beskeddata><Base64 xmlns="urn:besked:kuvert:1.0">!!!!</Base64></Beskeddata></Haendelsesbesked>"#,
                "Beskeddata/Base64 is not valid base64",
            ),
            (
                // base64 of "<!DOCTYPE x><x/>"
                r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:s="urn:oio:sagdok:3.0.0"><BeskedId><s:UUIDIdentifikator>a</s:UUIDIdentifikator></BeskedId><Beskeddata><Base64 xmlns="urn:besked:kuvert:1.0">PCFET0NUWVBFIHg+PHgvPg==</Base64></Beskeddata></Haendelsesbesked>"#,
                "the payload in Beskeddata/Base64: refused: the document contains a DOCTYPE",
            ),
            (
                r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:s="urn:oio:sagdok:3.0.0"><BeskedId><s:UUIDIdentifikator>a</s:UUIDIdentifikator></BeskedId><Beskedkuvert><Leveranceinformation><Dannelsestidspunkt><s:TidsstempelDatoTid>soon</s:TidsstempelDatoTid></Dannelsestidspunkt></Leveranceinformation></Beskedkuvert></Haendelsesbesked>"#,
                "Dannelsestidspunkt holds `soon`, which is not a timestamp",
            ),
        ];
        for (input, expected) in cases {
            let error = parse_envelope(input.as_bytes()).expect_err(input);
            assert!(error.to_string().contains(expected), "got `{error}`");
        }
    }

    #[test]
    fn base64_may_be_wrapped_and_unpadded() {
        // base64 of "<p xmlns=\"urn:p\">1</p>", wrapped and without padding.
        let input = "<Haendelsesbesked xmlns=\"urn:oio:besked:kuvert:1.0\" xmlns:s=\"urn:oio:sagdok:3.0.0\"><BeskedId><s:UUIDIdentifikator>a</s:UUIDIdentifikator></BeskedId><Beskeddata><Base64 xmlns=\"urn:besked:kuvert:1.0\">\r\n  PHAgeG1sbnM9InVy\r\n  bjpwIj4xPC9wPg\r\n</Base64></Beskeddata></Haendelsesbesked>";
        let envelope = parse_envelope(input.as_bytes()).expect("valid");
        let (tree, root) = envelope.payload().expect("decoded");
        assert!(tree.node(root).is("urn:p", "p"));
        assert_eq!(tree.text(root), Some("1"));
    }

    #[test]
    fn long_base64_is_decoded_piece_by_piece_as_a_whole() {
        let document = format!("<p xmlns=\"urn:p\">{}</p>", "x".repeat(300_000));
        let encoded = BASE64.encode(&document);
        // Wrapped at 76 characters, as mail-style encoders do.
        let text = crate::sample::wrapped(&encoded, 76);
        assert_eq!(
            decode_base64(&text).expect("valid").expect("some"),
            document.as_bytes()
        );
        assert!(decode_base64(" \n\t").expect("valid").is_none());
        // Padding belongs at the end only, however long the text.
        let early = format!("{}=={}", &encoded[..100_002], &encoded[100_004..]);
        let error = decode_base64(&early).expect_err("padding in the middle");
        assert!(error.to_string().contains("not valid base64"), "{error}");
        // A bad character far in is placed where it is.
        let late = format!("{}!{}", &encoded[..200_000], &encoded[200_001..]);
        let error = decode_base64(&late).expect_err("bad character");
        assert!(error.to_string().contains("at character 200000"), "{error}");
    }

    #[test]
    fn sniffs_the_id_of_a_refused_message() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"<!DOCTYPE x><k:Haendelsesbesked><k:BeskedId><s:UUIDIdentifikator> abc </s:UUIDIdentifikator></k:BeskedId><truncat", Some("abc")),
            (b"<BeskedId><URNIdentifikator>urn:x</URNIdentifikator>", Some("urn:x")),
            (b"<BeskedId><UUIDIdentifikator>&xxe;</UUIDIdentifikator>", None),
            (b"<BeskedId><UUIDIdentifikator></UUIDIdentifikator>", None),
            (b"<x", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                sniff_besked_id(input).as_deref(),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
