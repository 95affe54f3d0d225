//! A small, safe XML document model: bytes in, a flat tree of namespace-resolved elements out.
//!
//! This is the only module that talks to the XML parser. It refuses what could make a parser do
//! more than read: a `DOCTYPE` (and with it every entity declaration) is an error, and so is any
//! entity reference other than the five predefined ones and character references, so no entity is
//! ever expanded or fetched. Input must be UTF-8 (one UTF-8 byte order mark is allowed).
//!
//! Everything accepted is well-formed XML 1.0 with namespaces. quick-xml splits the input into
//! markup and text; this module checks what it does not (names, attributes, references,
//! characters, comments, processing instructions, the XML declaration, namespace rules) and
//! refuses anything else with a short reason and a byte position.
//!
//! Every step is linear in the size of the input: namespace bindings and URIs are looked up
//! through hash maps once there are more than a few, duplicate attributes are found through a
//! hash map on elements with many attributes, and text is appended in place.
//!
//! Elements are kept in document order. Each node knows the index just past its last
//! descendant, so walking children needs no extra allocation.

use std::collections::HashMap;

use thiserror::Error;

mod builder;
mod scopes;
mod source;
#[cfg(test)]
mod tests;

use builder::Builder;
use source::*;

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
/// The namespace of `xmlns` attributes, which no prefix may be bound to.
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Indexes into [`Tree::namespaces`] fixed before parsing starts.
const NO_NAMESPACE: u32 = 0;
const XML_NAMESPACE: u32 = 1;
const XMLNS_NAMESPACE: u32 = 2;

/// Deepest element nesting accepted; real envelopes nest about ten levels.
const MAX_DEPTH: usize = 256;

/// Most elements in one document; real envelopes hold about a hundred. Each element costs a
/// few dozen bytes of tree, so this keeps a hostile document's tree small whatever its size.
const MAX_ELEMENTS: usize = 100_000;

/// Most attributes (namespace declarations included) on one element; real envelopes have a
/// handful.
const MAX_ATTRIBUTES: usize = 1_000;

/// Most distinct namespace URIs in one document; real envelopes use about ten.
const MAX_NAMESPACES: usize = 1_000;

/// At most this many bytes of the input are quoted in an error message.
const QUOTE_MAX: usize = 64;

/// Up to this many namespace bindings in scope (or known namespace URIs) are searched
/// linearly; past it a hash map is built, so a document with thousands costs no more per
/// element than one with five.
const SCAN_MAX: usize = 16;

/// Elements with up to this many attributes are checked for duplicates pairwise; with more,
/// through a hash map.
const PAIRWISE_MAX: usize = 8;

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
    /// `position` is a byte offset into the input as given (a byte order mark included).
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
}

/// Where an element's text is: nowhere, a range of the source, or an owned string (when it
/// had to be unescaped, normalised or joined from several pieces).
#[derive(Debug, Clone, Copy)]
enum Text {
    None,
    Source(usize, usize),
    Owned(usize),
}

/// One element, as offsets into its [`Tree`] (no allocation per element).
#[derive(Debug, Clone)]
struct Node {
    ns: u32,
    /// The local name, a range of the source.
    name: (usize, usize),
    text: Text,
    /// Index one past the last descendant of this node.
    end: usize,
}

/// Where an attribute value is: a range of the source, or of [`Tree::normalized`] (when
/// references had to be resolved or whitespace normalised).
#[derive(Debug, Clone, Copy)]
enum Value {
    Source(usize, usize),
    Normalized(usize, usize),
}

/// One attribute kept by [`parse_with_attributes`].
#[derive(Debug, Clone)]
struct Attribute {
    node: usize,
    /// The local name, a range of the source.
    name: (usize, usize),
    value: Value,
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

/// A parsed document; node 0 is the root element. It borrows the bytes it was parsed from
/// ([`parse`]), or owns them ([`parse_owned`]): the text is never copied.
#[derive(Debug, Clone)]
pub struct Tree<'a> {
    source: std::borrow::Cow<'a, str>,
    namespaces: Vec<Box<str>>,
    owned: Vec<String>,
    nodes: Vec<Node>,
    /// Kept only by [`parse_with_attributes`], in document order (so sorted by node).
    attributes: Vec<Attribute>,
    /// Attribute values that are not a plain range of the source, back to back.
    normalized: String,
}

impl Tree<'_> {
    /// The root element's index.
    pub const ROOT: usize = 0;

    /// The element at `index`.
    pub fn node(&self, index: usize) -> Element<'_> {
        let node = &self.nodes[index];
        Element {
            ns: &self.namespaces[node.ns as usize],
            name: &self.source[node.name.0..node.name.1],
        }
    }

    fn is(&self, index: usize, ns: &str, name: &str) -> bool {
        let node = &self.nodes[index];
        &self.source[node.name.0..node.name.1] == name && &*self.namespaces[node.ns as usize] == ns
    }

    /// Direct element children of `parent`, in document order.
    pub fn children(&self, parent: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[parent].end;
        let mut next = parent + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let current = next;
            next = self.nodes[current].end;
            Some(current)
        })
    }

    /// Every element below `parent`, in document order.
    pub fn descendants(&self, parent: usize) -> std::ops::Range<usize> {
        parent + 1..self.nodes[parent].end
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
            Text::Source(start, end) => &self.source[start..end],
            Text::Owned(at) => &self.owned[at],
        }
    }

    /// The value of an attribute (by local name; namespace declarations excluded). Only
    /// documents read with [`parse_with_attributes`] have them.
    pub fn attribute(&self, index: usize, name: &str) -> Option<&str> {
        let first = self
            .attributes
            .partition_point(|attribute| attribute.node < index);
        self.attributes[first..]
            .iter()
            .take_while(|attribute| attribute.node == index)
            .find(|attribute| &self.source[attribute.name.0..attribute.name.1] == name)
            .map(|attribute| match attribute.value {
                Value::Source(start, end) => &self.source[start..end],
                Value::Normalized(start, end) => &self.normalized[start..end],
            })
    }

    /// Drops the text of an element, freeing it if it was a copy: for a text already used up
    /// (the base64 of a payload once decoded). The element reads as empty afterwards.
    pub fn release_text(&mut self, index: usize) {
        if let Text::Owned(at) = self.nodes[index].text {
            self.owned[at] = String::new();
        }
        self.nodes[index].text = Text::None;
    }

    /// The trimmed text of an element, or `None` when it is empty.
    pub fn text(&self, index: usize) -> Option<&str> {
        let text = self.raw_text(index).trim();
        (!text.is_empty()).then_some(text)
    }
}

/// Parses a complete document. `bytes` may start with a UTF-8 byte order mark.
pub fn parse(bytes: &[u8]) -> Result<Tree<'_>, XmlError> {
    parse_document(bytes, false)
}

/// [`parse`], keeping `bytes` as the tree's text rather than borrowing it: for a document
/// made on the way (a decoded payload), without a second copy of it.
pub fn parse_owned(mut bytes: Vec<u8>) -> Result<Tree<'static>, XmlError> {
    let Tree {
        source: _,
        namespaces,
        owned,
        nodes,
        attributes,
        normalized,
    } = parse_document(&bytes, false)?;
    // Offsets count from after a byte order mark, as the text does.
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    let text = String::from_utf8(bytes).expect("parse_document accepted it as UTF-8");
    Ok(Tree {
        source: std::borrow::Cow::Owned(text),
        namespaces,
        owned,
        nodes,
        attributes,
        normalized,
    })
}

/// Parses a complete document and keeps its attributes too.
pub fn parse_with_attributes(bytes: &[u8]) -> Result<Tree<'_>, XmlError> {
    parse_document(bytes, true)
}

fn parse_document(bytes: &[u8], keep_attributes: bool) -> Result<Tree<'_>, XmlError> {
    let (text, bom) = decode_utf8(bytes)?;
    let source = Source { text, base: bom };
    if text.starts_with('\u{FEFF}') {
        return Err(source.error(0, "a second byte order mark (U+FEFF)"));
    }
    if let Some(at) = forbidden_character(text.as_bytes()) {
        let character = source.char_at(at);
        return Err(source.error(
            at,
            format!(
                "character U+{:04X} is not allowed in XML",
                u32::from(character)
            ),
        ));
    }
    let mut builder = Builder::new(source, keep_attributes);
    builder.run()?;
    Ok(builder.finish())
}
