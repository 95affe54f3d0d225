//! A small, safe XML document model: bytes in, a flat tree of namespace-resolved elements out.
//!
//! This is the only module that talks to the XML parser. It refuses what could make a parser do
//! more than read: a `DOCTYPE` (and with it every entity declaration) is an error, and so is any
//! entity reference other than the five predefined ones and character references, so no entity is
//! ever expanded or fetched. Input must be UTF-8 (a UTF-8 byte order mark is allowed).
//!
//! Elements are kept in document order. Each node knows the index just past its last
//! descendant, so walking children needs no extra allocation.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::PrefixDeclaration;
use quick_xml::reader::Reader;
use thiserror::Error;

/// The kuvert namespace of `Haendelsesbesked` and its structure.
pub const NS_KUVERT: &str = "urn:oio:besked:kuvert:1.0";
/// The sagdok namespace of identifiers and timestamps.
pub const NS_SAGDOK: &str = "urn:oio:sagdok:3.0.0";
/// The namespace of the `Base64` payload wrapper (no `oio`).
pub const NS_BASE64: &str = "urn:besked:kuvert:1.0";
/// The namespace of `ModtagBeskedInput`, the wrapper push receivers store.
pub const NS_STS: &str = "urn:oio:sts:1.0.0";
/// The namespace of the PKO_PostStatus payload.
pub const NS_POST_STATUS: &str = "http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types";

/// The namespace bound to the `xml` prefix by definition.
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Deepest element nesting accepted; real envelopes nest about ten levels.
const MAX_DEPTH: usize = 256;

/// Why a document was refused. The message is meant for a person reading the `rejected` table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("not UTF-8: {0}")]
    Encoding(String),
    #[error(
        "refused: the document contains a DOCTYPE declaration (DTDs and entities are never processed)"
    )]
    Doctype,
    #[error(
        "refused: undefined entity reference `&{0};` (only the predefined XML entities are allowed)"
    )]
    Entity(String),
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
}

/// Where an element's text is: nowhere, a slice of the source, or an owned string (when it
/// had to be unescaped, normalised or joined from several pieces).
#[derive(Debug, Clone, Copy)]
enum Text {
    None,
    Source(u32, u32),
    Owned(u32),
}

/// One element, as offsets into its [`Tree`] (no allocation per element).
#[derive(Debug, Clone)]
struct Node {
    ns: u16,
    name: (u32, u32),
    text: Text,
    /// Index one past the last descendant of this node.
    end: u32,
}

/// One element as seen by callers: namespace URI (empty when unbound) and local name.
#[derive(Debug, Clone, Copy)]
pub struct Element<'t> {
    pub ns: &'t str,
    pub name: &'t str,
}

impl Element<'_> {
    /// True when this element has the given namespace and local name.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns == ns
    }
}

/// A parsed document; node 0 is the root element.
#[derive(Debug, Clone)]
pub struct Tree {
    source: Box<str>,
    namespaces: Vec<Box<str>>,
    owned: Vec<String>,
    nodes: Vec<Node>,
    /// (element index, attribute local name, value), kept only by [`parse_with_attributes`].
    attributes: Vec<(usize, String, String)>,
}

impl Tree {
    /// The root element's index.
    pub const ROOT: usize = 0;

    /// The element at `index`.
    pub fn node(&self, index: usize) -> Element<'_> {
        let node = &self.nodes[index];
        Element {
            ns: &self.namespaces[node.ns as usize],
            name: &self.source[node.name.0 as usize..node.name.1 as usize],
        }
    }

    fn is(&self, index: usize, ns: &str, name: &str) -> bool {
        let node = &self.nodes[index];
        &self.source[node.name.0 as usize..node.name.1 as usize] == name
            && &*self.namespaces[node.ns as usize] == ns
    }

    /// Direct element children of `parent`, in document order.
    pub fn children(&self, parent: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[parent].end as usize;
        let mut next = parent + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let current = next;
            next = self.nodes[current].end as usize;
            Some(current)
        })
    }

    /// Every element below `parent`, in document order.
    pub fn descendants(&self, parent: usize) -> std::ops::Range<usize> {
        parent + 1..self.nodes[parent].end as usize
    }

    /// Direct children of `parent` with the given namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        parent: usize,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        self.children(parent)
            .filter(move |&child| self.is(child, ns, name))
    }

    /// The first direct child of `parent` with the given namespace and local name.
    pub fn child(&self, parent: usize, ns: &str, name: &str) -> Option<usize> {
        self.children_named(parent, ns, name).next()
    }

    /// The text directly inside an element, entities resolved, untrimmed.
    pub fn raw_text(&self, index: usize) -> &str {
        match self.nodes[index].text {
            Text::None => "",
            Text::Source(start, end) => &self.source[start as usize..end as usize],
            Text::Owned(at) => &self.owned[at as usize],
        }
    }

    /// The value of an attribute (by local name; namespace declarations excluded). Only
    /// documents read with [`parse_with_attributes`] have them.
    pub fn attribute(&self, index: usize, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(node, key, _)| *node == index && key == name)
            .map(|(_, _, value)| value.as_str())
    }

    /// The trimmed text of an element, or `None` when it is empty.
    pub fn text(&self, index: usize) -> Option<&str> {
        let text = self.raw_text(index).trim();
        (!text.is_empty()).then_some(text)
    }
}

/// Parses a complete document. `bytes` may start with a UTF-8 byte order mark.
pub fn parse(bytes: &[u8]) -> Result<Tree, XmlError> {
    parse_document(bytes, false)
}

/// Parses a complete document and keeps its attributes too (slower; for small documents).
pub fn parse_with_attributes(bytes: &[u8]) -> Result<Tree, XmlError> {
    parse_document(bytes, true)
}

fn parse_document(bytes: &[u8], keep_attributes: bool) -> Result<Tree, XmlError> {
    let text = decode_utf8(bytes)?;
    let mut tree = Tree {
        source: text.into(),
        namespaces: vec!["".into()],
        owned: Vec::new(),
        nodes: Vec::with_capacity(128),
        attributes: Vec::new(),
    };
    build(&mut tree, keep_attributes)?;
    Ok(tree)
}

fn build(tree: &mut Tree, keep_attributes: bool) -> Result<(), XmlError> {
    // Names and plain text are kept as offsets into the source the reader reads from.
    let text: &str = &tree.source;
    let base = text.as_ptr() as usize;
    // The reader reads from `text` and hands out slices of it; this turns one back into a
    // slice with `text`'s lifetime, or into its start offset.
    let end = base + text.len();
    let within = |piece: &str| -> Option<&str> {
        let start = piece.as_ptr() as usize;
        (start >= base && start + piece.len() <= end)
            .then(|| &text[start - base..start - base + piece.len()])
    };
    let offset = |piece: &str| (piece.as_ptr() as usize - base) as u32;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut open: Vec<usize> = Vec::with_capacity(16);
    let mut seen_root = false;
    let malformed = |reader: &Reader<&[u8]>, message: String| XmlError::Malformed {
        position: reader.buffer_position(),
        message,
    };
    let nodes = &mut tree.nodes;
    let namespaces = &mut tree.namespaces;
    let owned = &mut tree.owned;
    let attributes = &mut tree.attributes;
    // Namespace declarations in scope, innermost last: (prefix, index into `namespaces`, the
    // depth of the element that declared it). The empty prefix is the default namespace.
    let mut bindings: Vec<(&str, u16, usize)> = Vec::with_capacity(8);

    // Appends a piece of text to the innermost open element.
    let mut append = |nodes: &mut Vec<Node>, index: usize, piece: &str, borrowed: bool| {
        let node = &mut nodes[index];
        node.text = match node.text {
            Text::None if borrowed => {
                let start = offset(piece);
                Text::Source(start, start + piece.len() as u32)
            }
            Text::None => {
                owned.push(piece.to_owned());
                Text::Owned(owned.len() as u32 - 1)
            }
            Text::Source(start, end) => {
                owned.push(format!("{}{piece}", &text[start as usize..end as usize]));
                Text::Owned(owned.len() as u32 - 1)
            }
            Text::Owned(at) => {
                owned[at as usize].push_str(piece);
                Text::Owned(at)
            }
        };
    };

    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => return Err(malformed(&reader, error.to_string())),
        };
        match event {
            Event::Start(ref element) | Event::Empty(ref element) => {
                let is_empty = matches!(event, Event::Empty(_));
                if open.is_empty() && seen_root {
                    return Err(malformed(&reader, "more than one root element".into()));
                }
                if open.len() >= MAX_DEPTH {
                    return Err(malformed(
                        &reader,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let depth = open.len();
                // Most elements have no attributes; only those that do are looked at.
                if !element.attributes_raw().trim().is_empty() {
                    for attribute in element.attributes() {
                        let attribute =
                            attribute.map_err(|error| malformed(&reader, error.to_string()))?;
                        let Some(declaration) = attribute.key.as_namespace_binding() else {
                            if keep_attributes {
                                let value = attribute
                                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .map_err(|error| malformed(&reader, error.to_string()))?;
                                attributes.push((
                                    nodes.len(),
                                    attribute.key.local_name().into_inner().to_owned(),
                                    value.into_owned(),
                                ));
                            }
                            continue;
                        };
                        let uri = attribute
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|error| malformed(&reader, error.to_string()))?;
                        let prefix = match declaration {
                            PrefixDeclaration::Default => "",
                            PrefixDeclaration::Named(prefix) if within(prefix).is_none() => {
                                return Err(malformed(&reader, "unexpected parser state".into()));
                            }
                            PrefixDeclaration::Named("") | PrefixDeclaration::Named("xmlns") => {
                                return Err(malformed(
                                    &reader,
                                    "invalid namespace declaration".into(),
                                ));
                            }
                            PrefixDeclaration::Named(prefix) => {
                                if uri.is_empty() {
                                    return Err(malformed(
                                        &reader,
                                        format!(
                                            "namespace prefix `{prefix}` is bound to an empty URI"
                                        ),
                                    ));
                                }
                                within(prefix).expect("checked above")
                            }
                        };
                        let ns = intern(namespaces, &uri)
                            .ok_or_else(|| malformed(&reader, "too many namespaces".into()))?;
                        bindings.push((prefix, ns, depth));
                    }
                }
                let qname = element.name().into_inner();
                let (prefix, name) = match qname.split_once(':') {
                    Some((prefix, local)) => (prefix, local),
                    None => ("", qname),
                };
                let ns = match bindings.iter().rev().find(|(bound, _, _)| *bound == prefix) {
                    Some(&(_, ns, _)) => ns,
                    None if prefix.is_empty() => 0,
                    None if prefix == "xml" => intern(namespaces, NS_XML)
                        .ok_or_else(|| malformed(&reader, "too many namespaces".into()))?,
                    None => {
                        return Err(malformed(
                            &reader,
                            format!("namespace prefix `{prefix}` is not declared"),
                        ));
                    }
                };
                if is_empty {
                    while bindings.last().is_some_and(|&(_, _, at)| at == depth) {
                        bindings.pop();
                    }
                }
                let start = offset(name);
                seen_root = true;
                let index = nodes.len();
                nodes.push(Node {
                    ns,
                    name: (start, start + name.len() as u32),
                    text: Text::None,
                    end: index as u32 + 1,
                });
                if !is_empty {
                    open.push(index);
                }
            }
            Event::End(_) => {
                let index = open
                    .pop()
                    .ok_or_else(|| malformed(&reader, "closing tag without opening tag".into()))?;
                while bindings.last().is_some_and(|&(_, _, at)| at == open.len()) {
                    bindings.pop();
                }
                nodes[index].end = nodes.len() as u32;
            }
            Event::Text(piece) => {
                let content = piece.into_inner();
                match open.last() {
                    Some(&index) => match content {
                        Cow::Borrowed(raw) if !raw.contains('\r') => {
                            append(nodes, index, raw, true)
                        }
                        other => append(nodes, index, &normalize_newlines(&other), false),
                    },
                    None if content.trim().is_empty() => {}
                    None => return Err(malformed(&reader, "text outside the root element".into())),
                }
            }
            Event::CData(cdata) => {
                let content = cdata.into_inner();
                match open.last() {
                    Some(&index) => append(nodes, index, &normalize_newlines(&content), false),
                    None => {
                        return Err(malformed(&reader, "CDATA outside the root element".into()));
                    }
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch,
                    Ok(None) => match &*reference.into_inner() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(XmlError::Entity(other.to_string())),
                    },
                    Err(error) => return Err(malformed(&reader, error.to_string())),
                };
                match open.last() {
                    Some(&index) => append(nodes, index, resolved.encode_utf8(&mut [0; 4]), false),
                    None => {
                        return Err(malformed(
                            &reader,
                            "reference outside the root element".into(),
                        ));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(decl) => {
                if let Some(Ok(encoding)) = decl.encoding() {
                    let encoding = encoding.trim().to_ascii_lowercase();
                    if !matches!(encoding.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
                        return Err(XmlError::Encoding(format!(
                            "the XML declaration says encoding=\"{encoding}\"; Beskedfordeler messages are UTF-8"
                        )));
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(&innermost) = open.last() {
        let node = &nodes[innermost];
        return Err(malformed(
            &reader,
            format!(
                "document ends inside element `{}`",
                &text[node.name.0 as usize..node.name.1 as usize]
            ),
        ));
    }
    if nodes.is_empty() {
        return Err(malformed(&reader, "no root element".into()));
    }
    Ok(())
}

/// The index of a namespace URI in `namespaces`, adding it if new; `None` past `u16::MAX`.
fn intern(namespaces: &mut Vec<Box<str>>, uri: &str) -> Option<u16> {
    let index = match namespaces.iter().position(|known| &**known == uri) {
        Some(index) => index,
        None => {
            namespaces.push(uri.into());
            namespaces.len() - 1
        }
    };
    u16::try_from(index).ok()
}

/// XML end-of-line handling: `\r\n` and a lone `\r` become `\n`.
fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Checks the encoding and strips a UTF-8 byte order mark.
fn decode_utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(XmlError::Encoding(
            "the document starts with a UTF-16 byte order mark".into(),
        ));
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    // The SIMD check is the fast path; the standard one only runs to say where it went wrong.
    if let Ok(text) = simdutf8::basic::from_utf8(bytes) {
        return Ok(text);
    }
    std::str::from_utf8(bytes).map_err(|error| {
        XmlError::Encoding(format!(
            "invalid UTF-8 byte sequence at byte {}",
            error.valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tree: &Tree, parent: usize) -> Vec<String> {
        tree.children(parent)
            .map(|child| tree.node(child).name.to_string())
            .collect()
    }

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let tree = parse(
            br#"<a:root xmlns:a="urn:x" xmlns:b="urn:y"><b:one>1</b:one><a:two xmlns:a="urn:y">2</a:two><three/></a:root>"#,
        )
        .expect("valid");
        assert!(tree.node(Tree::ROOT).is("urn:x", "root"));
        let children: Vec<usize> = tree.children(Tree::ROOT).collect();
        assert_eq!(names(&tree, Tree::ROOT), ["one", "two", "three"]);
        assert!(tree.node(children[0]).is("urn:y", "one"));
        // The prefix `a` is rebound on `two`.
        assert!(tree.node(children[1]).is("urn:y", "two"));
        assert_eq!(tree.node(children[2]).ns, "");
        assert_eq!(tree.text(children[1]), Some("2"));
    }

    #[test]
    fn namespace_scopes_end_with_their_element() {
        let tree = parse(
            br#"<r xmlns="urn:d" xmlns:p="urn:p1"><p:a xmlns:p="urn:p2"><p:b/></p:a><p:c/><d xmlns=""><e/></d><f xml:lang="da"/><xml:g/></r>"#,
        )
        .expect("valid");
        let seen: Vec<(String, String)> = std::iter::once(Tree::ROOT)
            .chain(tree.descendants(Tree::ROOT))
            .map(|i| (tree.node(i).ns.to_string(), tree.node(i).name.to_string()))
            .collect();
        let expected = [
            ("urn:d", "r"),
            ("urn:p2", "a"),
            ("urn:p2", "b"),
            ("urn:p1", "c"),
            ("", "d"),
            ("", "e"),
            ("urn:d", "f"),
            ("http://www.w3.org/XML/1998/namespace", "g"),
        ];
        assert_eq!(
            seen,
            expected.map(|(ns, name)| (ns.to_string(), name.to_string()))
        );
    }

    #[test]
    fn attributes_are_kept_on_request() {
        let input =
            br#"<s:A xmlns:s="urn:s"><s:C NotOnOrAfter="2026-01-01T00:00:00Z" x="a&amp;b"/></s:A>"#;
        let tree = parse_with_attributes(input).expect("valid");
        let c = tree.child(Tree::ROOT, "urn:s", "C").expect("C");
        assert_eq!(
            tree.attribute(c, "NotOnOrAfter"),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(tree.attribute(c, "x"), Some("a&b"));
        assert_eq!(tree.attribute(Tree::ROOT, "s"), None);
        assert_eq!(parse(input).expect("valid").attribute(c, "x"), None);
    }

    #[test]
    fn children_skip_grandchildren() {
        let tree = parse(b"<r><a><x/><y><z/></y></a><b/></r>").expect("valid");
        assert_eq!(names(&tree, Tree::ROOT), ["a", "b"]);
        let a = tree.child(Tree::ROOT, "", "a").expect("a");
        assert_eq!(names(&tree, a), ["x", "y"]);
        let y = tree.child(a, "", "y").expect("y");
        assert_eq!(tree.child(y, "", "z"), Some(4));
    }

    #[test]
    fn predefined_and_character_references_are_resolved() {
        let tree = parse(b"<r>a &amp; b &lt;c&gt; &#x41;&#66; &quot;&apos;</r>").expect("valid");
        assert_eq!(tree.text(Tree::ROOT), Some("a & b <c> AB \"'"));
    }

    #[test]
    fn cdata_and_crlf_are_text() {
        let tree = parse(b"<r>x\r\ny<![CDATA[<z>]]></r>").expect("valid");
        assert_eq!(tree.text(Tree::ROOT), Some("x\ny<z>"));
    }

    #[test]
    fn refuses_hostile_and_broken_input() {
        let cases: &[(&[u8], &str)] = &[
            (b"<!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>", "DOCTYPE"),
            (
                b"<!DOCTYPE r SYSTEM \"http://example.invalid/r.dtd\"><r/>",
                "DOCTYPE",
            ),
            (b"<r>&x;</r>", "undefined entity reference `&x;`"),
            (b"<r><a></r>", "malformed XML"),
            (b"<r>", "document ends inside element `r`"),
            (b"", "no root element"),
            (b"<r/><r/>", "more than one root element"),
            (b"<p:r/>", "prefix `p` is not declared"),
            (
                b"<r><p:a xmlns:p=\"urn:p\"/><p:b/></r>",
                "prefix `p` is not declared",
            ),
            (b"<r xmlns:p=\"\"/>", "bound to an empty URI"),
            (b"<r a=\"1\" a=\"2\"/>", "malformed XML"),
            (b"<r>\xff</r>", "invalid UTF-8 byte sequence at byte 3"),
            (b"\xff\xfe<\x00r\x00/\x00>\x00", "UTF-16 byte order mark"),
            (
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r/>",
                "encoding=\"iso-8859-1\"",
            ),
            (b"text<r/>", "text outside the root element"),
        ];
        for (input, expected) in cases {
            let error = parse(input).expect_err(&String::from_utf8_lossy(input));
            assert!(
                error.to_string().contains(expected),
                "{:?}: got `{error}`, want `{expected}`",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn accepts_bom_and_declaration() {
        let tree =
            parse(b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<r>ok</r>\r\n")
                .expect("valid");
        assert_eq!(tree.text(Tree::ROOT), Some("ok"));
    }

    #[test]
    fn refuses_absurd_nesting() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        let error = parse(deep.as_bytes()).expect_err("too deep");
        assert!(error.to_string().contains("nested deeper"), "{error}");
    }
}
