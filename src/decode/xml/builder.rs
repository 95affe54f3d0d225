//! Building the tree: start and end tags, attributes, text and references, the XML
//! declaration, each checked as it is read.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::scopes::*;
use super::source::*;
use super::*;

/// An element whose end tag has not been read yet.
pub(super) struct Open {
    pub(super) node: usize,
    /// The qualified name as written, a range of the source.
    pub(super) name: (usize, usize),
    /// How many namespace bindings were in scope before this element.
    pub(super) scope: usize,
}

/// An attribute of the start tag being read.
#[derive(Clone, Copy)]
pub(super) struct Pending {
    /// The qualified name as written.
    pub(super) name: (usize, usize),
    pub(super) colon: Option<usize>,
    /// Between the quotes.
    pub(super) value: (usize, usize),
    /// The expanded name, once resolved: namespace declarations are in [`XMLNS_NAMESPACE`]
    /// with the declared prefix (empty for the default namespace) as their local name.
    pub(super) ns: u32,
    pub(super) local: (usize, usize),
}

pub(super) struct Builder<'a> {
    pub(super) source: Source<'a>,
    pub(super) keep_attributes: bool,
    pub(super) nodes: Vec<Node>,
    pub(super) owned: Vec<String>,
    pub(super) attributes: Vec<Attribute>,
    pub(super) normalized: String,
    pub(super) namespaces: Vec<Box<str>>,
    /// Namespace URI to its index in `namespaces`, once there are more than [`SCAN_MAX`].
    pub(super) namespace_index: Option<HashMap<Box<str>, u32>>,
    pub(super) scopes: Scopes<'a>,
    pub(super) open: Vec<Open>,
    pub(super) seen_root: bool,
    /// The attributes of the current start tag (reused).
    pub(super) pending: Vec<Pending>,
    /// A namespace URI that had to be normalised (reused).
    pub(super) scratch: String,
}

impl<'a> Builder<'a> {
    pub(super) fn new(source: Source<'a>, keep_attributes: bool) -> Builder<'a> {
        Builder {
            source,
            keep_attributes,
            nodes: Vec::with_capacity(128),
            owned: Vec::new(),
            attributes: Vec::new(),
            normalized: String::new(),
            namespaces: vec!["".into(), NS_XML.into(), NS_XMLNS.into()],
            namespace_index: None,
            scopes: Scopes::new(),
            open: Vec::with_capacity(16),
            seen_root: false,
            pending: Vec::new(),
            scratch: String::new(),
        }
    }

    pub(super) fn finish(self) -> Tree<'a> {
        Tree {
            source: std::borrow::Cow::Borrowed(self.source.text),
            namespaces: self.namespaces,
            owned: self.owned,
            nodes: self.nodes,
            attributes: self.attributes,
            normalized: self.normalized,
        }
    }

    pub(super) fn run(&mut self) -> Result<(), XmlError> {
        let source = self.source;
        let mut reader = Reader::from_str(source.text);
        let config = reader.config_mut();
        // Tags, references and comments are checked here, with positions and short messages.
        config.check_end_names = false;
        config.check_comments = false;
        config.allow_unmatched_ends = true;
        config.allow_dangling_amp = true;
        config.trim_markup_names_in_closing_tags = false;
        config.expand_empty_elements = false;
        config.trim_text(false);
        loop {
            // Each event covers the input from the reader's position before it to the one
            // after it; its shape says where its parts are.
            let start = reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|error| {
                source.error(
                    reader.error_position() as usize,
                    clip(&error.to_string(), 160).into_owned(),
                )
            })?;
            let end = reader.buffer_position() as usize;
            match event {
                Event::Start(ref tag) | Event::Empty(ref tag) => {
                    let empty = matches!(event, Event::Empty(_));
                    debug_assert_eq!(
                        &**tag,
                        &source.text[start + 1..end - if empty { 2 } else { 1 }]
                    );
                    self.start_tag(start, end, empty)?;
                }
                Event::End(_) => self.end_tag(start, end)?,
                Event::Text(_) => self.text(start, end)?,
                Event::GeneralRef(_) => self.reference(start, end)?,
                Event::CData(_) => self.cdata(start, end)?,
                Event::Comment(_) => self.comment(start, end)?,
                Event::Decl(_) => self.declaration(start, end)?,
                Event::PI(_) => self.instruction(start, end)?,
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Eof => break,
            }
        }
        if let Some(innermost) = self.open.last() {
            return Err(source.error(
                source.text.len(),
                format!(
                    "document ends inside element `{}`",
                    quote(&source.text[innermost.name.0..innermost.name.1])
                ),
            ));
        }
        if self.nodes.is_empty() {
            return Err(source.error(source.text.len(), "no root element"));
        }
        Ok(())
    }

    /// `<name attributes>` or `<name attributes/>` at `start..end`.
    pub(super) fn start_tag(
        &mut self,
        start: usize,
        end: usize,
        empty: bool,
    ) -> Result<(), XmlError> {
        let source = self.source;
        let text = source.text;
        let limit = end - if empty { 2 } else { 1 };
        if self.open.is_empty() && self.seen_root {
            return Err(source.error(start, "more than one root element"));
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(source.error(
                start,
                format!("elements nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        if self.nodes.len() >= MAX_ELEMENTS {
            return Err(source.error(start, format!("more than {MAX_ELEMENTS} elements")));
        }
        let name_start = start + 1;
        let (name_end, colon) = source.qname(name_start, limit, "element name")?;

        self.pending.clear();
        if name_end < limit {
            self.read_attributes(name_end, limit)?;
        }

        // Namespace declarations first: they apply to the element's own name and attributes.
        let scope = self.scopes.stack.len();
        if !self.pending.is_empty() {
            self.declare_all()?;
        }

        let (prefix, local_start) = match colon {
            Some(colon) => (&text[name_start..colon], colon + 1),
            None => ("", name_start),
        };
        let ns = match self.scopes.lookup(prefix) {
            Some(ns) => ns,
            None if prefix.is_empty() => NO_NAMESPACE,
            None if prefix == "xmlns" => {
                return Err(source.error(name_start, "element name with the prefix `xmlns`"));
            }
            None => {
                return Err(source.error(
                    name_start,
                    format!("namespace prefix `{}` is not declared", quote(prefix)),
                ));
            }
        };

        let node = self.nodes.len();
        if !self.pending.is_empty() {
            self.resolve_attributes(node)?;
        }

        self.seen_root = true;
        self.nodes.push(Node {
            ns,
            name: (local_start, name_end),
            text: Text::None,
            end: node + 1,
        });
        if empty {
            self.scopes.truncate(scope);
        } else {
            self.open.push(Open {
                node,
                name: (name_start, name_end),
                scope,
            });
        }
        Ok(())
    }

    /// Reads the attributes of a start tag, from just after its name to `limit`, into
    /// `pending`. This and the two functions after it are kept out of line: most start tags
    /// have no attributes, and their path stays short.
    #[inline(never)]
    pub(super) fn read_attributes(&mut self, from: usize, limit: usize) -> Result<(), XmlError> {
        let source = self.source;
        let text = source.text;
        let bytes = source.bytes();
        let mut at = from;
        loop {
            let next = skip_space(bytes, at, limit);
            if next == limit {
                break;
            }
            if next == at {
                let character = source.char_at(at);
                return Err(source.error(
                    at,
                    if self.pending.is_empty() {
                        format!("unexpected {character:?} after the element name")
                    } else {
                        format!(
                            "unexpected {character:?} after an attribute value (attributes are separated by whitespace)"
                        )
                    },
                ));
            }
            let (attribute_end, attribute_colon) = source.qname(next, limit, "attribute name")?;
            let name = &text[next..attribute_end];
            let equals = skip_space(bytes, attribute_end, limit);
            if equals == limit || bytes[equals] != b'=' {
                return Err(if equals == attribute_end && equals < limit {
                    source.error(
                        equals,
                        format!(
                            "unexpected {:?} in attribute name `{}`",
                            source.char_at(equals),
                            quote(name)
                        ),
                    )
                } else {
                    source.error(next, format!("attribute `{}` has no value", quote(name)))
                });
            }
            let open_quote = skip_space(bytes, equals + 1, limit);
            if open_quote == limit || !matches!(bytes[open_quote], b'"' | b'\'') {
                return Err(source.error(
                    open_quote,
                    format!("the value of attribute `{}` is not in quotes", quote(name)),
                ));
            }
            let value_start = open_quote + 1;
            let Some(length) = bytes[value_start..limit]
                .iter()
                .position(|&byte| byte == bytes[open_quote])
            else {
                return Err(source.error(
                    open_quote,
                    format!("the value of attribute `{}` is not closed", quote(name)),
                ));
            };
            if self.pending.len() >= MAX_ATTRIBUTES {
                return Err(source.error(
                    next,
                    format!("more than {MAX_ATTRIBUTES} attributes on one element"),
                ));
            }
            self.pending.push(Pending {
                name: (next, attribute_end),
                colon: attribute_colon,
                value: (value_start, value_start + length),
                ns: NO_NAMESPACE,
                local: (next, attribute_end),
            });
            at = value_start + length + 1;
        }
        Ok(())
    }

    /// Binds the namespaces that the attributes in `pending` declare, and marks those
    /// attributes as declarations.
    #[inline(never)]
    pub(super) fn declare_all(&mut self) -> Result<(), XmlError> {
        let text = self.source.text;
        for at in 0..self.pending.len() {
            let attribute = self.pending[at];
            let name = &text[attribute.name.0..attribute.name.1];
            let prefix = match name.strip_prefix("xmlns") {
                Some("") => "",
                Some(rest) if rest.starts_with(':') => &rest[1..],
                _ => continue,
            };
            self.pending[at].ns = XMLNS_NAMESPACE;
            self.pending[at].local = (attribute.name.1 - prefix.len(), attribute.name.1);
            self.declare(prefix, attribute)?;
        }
        Ok(())
    }

    /// Resolves the names of the other attributes in `pending`, checks their values and that
    /// no two are the same, and keeps them (for [`parse_with_attributes`]) as those of `node`.
    #[inline(never)]
    pub(super) fn resolve_attributes(&mut self, node: usize) -> Result<(), XmlError> {
        let source = self.source;
        let text = source.text;
        for at in 0..self.pending.len() {
            let attribute = self.pending[at];
            if attribute.ns == XMLNS_NAMESPACE {
                continue;
            }
            if let Some(colon) = attribute.colon {
                let prefix = &text[attribute.name.0..colon];
                let Some(ns) = self.scopes.lookup(prefix) else {
                    return Err(source.error(
                        attribute.name.0,
                        format!("namespace prefix `{}` is not declared", quote(prefix)),
                    ));
                };
                self.pending[at].ns = ns;
                self.pending[at].local = (colon + 1, attribute.name.1);
            }
            let (value_start, value_end) = attribute.value;
            if self.keep_attributes {
                let mark = self.normalized.len();
                let value = if source.value(value_start, value_end, Some(&mut self.normalized))? {
                    Value::Normalized(mark, self.normalized.len())
                } else {
                    Value::Source(value_start, value_end)
                };
                self.attributes.push(Attribute {
                    node,
                    name: self.pending[at].local,
                    value,
                });
            } else {
                source.value(value_start, value_end, None)?;
            }
        }
        if self.pending.len() > 1 {
            self.check_unique()?;
        }
        Ok(())
    }

    /// Binds `prefix` (empty: the default namespace) to the value of `attribute`.
    pub(super) fn declare(&mut self, prefix: &'a str, attribute: Pending) -> Result<(), XmlError> {
        let source = self.source;
        let at = attribute.name.0;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let uri = if source.value(attribute.value.0, attribute.value.1, Some(&mut scratch))? {
            scratch.as_str()
        } else {
            &source.text[attribute.value.0..attribute.value.1]
        };
        if prefix == "xmlns" {
            return Err(source.error(at, "the prefix `xmlns` cannot be declared"));
        }
        if uri == NS_XMLNS {
            return Err(source.error(at, format!("the namespace {NS_XMLNS} cannot be declared")));
        }
        if prefix == "xml" && uri != NS_XML {
            return Err(source.error(
                at,
                format!("the prefix `xml` cannot be bound to another namespace than {NS_XML}"),
            ));
        }
        if prefix != "xml" && uri == NS_XML {
            return Err(source.error(
                at,
                "the XML namespace cannot be bound to another prefix than `xml`",
            ));
        }
        if !prefix.is_empty() && uri.is_empty() {
            return Err(source.error(
                at,
                format!(
                    "namespace prefix `{}` is bound to an empty URI",
                    quote(prefix)
                ),
            ));
        }
        let ns = self.intern(uri, at)?;
        self.scratch = scratch;
        self.scopes.push(prefix, ns);
        Ok(())
    }

    /// The index of a namespace URI in `namespaces`, adding it if new.
    pub(super) fn intern(&mut self, uri: &str, at: usize) -> Result<u32, XmlError> {
        let known = match &self.namespace_index {
            Some(index) => index.get(uri).copied(),
            None => self
                .namespaces
                .iter()
                .position(|known| &**known == uri)
                .map(|position| position as u32),
        };
        if let Some(ns) = known {
            return Ok(ns);
        }
        if self.namespaces.len() >= MAX_NAMESPACES {
            return Err(self.source.error(
                at,
                format!("more than {MAX_NAMESPACES} distinct namespaces"),
            ));
        }
        let ns = u32::try_from(self.namespaces.len())
            .map_err(|_| self.source.error(at, "too many namespaces"))?;
        self.namespaces.push(uri.into());
        match &mut self.namespace_index {
            Some(index) => {
                index.insert(uri.into(), ns);
            }
            None if self.namespaces.len() > SCAN_MAX => {
                let index = (0..)
                    .zip(&self.namespaces)
                    .map(|(ns, uri)| (uri.clone(), ns))
                    .collect();
                self.namespace_index = Some(index);
            }
            None => {}
        }
        Ok(ns)
    }

    /// Refuses two attributes of the current start tag with the same expanded name (which
    /// includes the same qualified name twice).
    pub(super) fn check_unique(&self) -> Result<(), XmlError> {
        let source = self.source;
        let pending = &self.pending;
        let key = |attribute: &Pending| {
            (
                attribute.ns,
                &source.text[attribute.local.0..attribute.local.1],
            )
        };
        let duplicate = if pending.len() <= PAIRWISE_MAX {
            (1..pending.len()).find_map(|second| {
                (0..second)
                    .find(|&first| key(&pending[first]) == key(&pending[second]))
                    .map(|first| (first, second))
            })
        } else {
            let mut seen = HashMap::with_capacity(pending.len());
            pending.iter().enumerate().find_map(|(second, attribute)| {
                seen.insert(key(attribute), second)
                    .map(|first| (first, second))
            })
        };
        let Some((first, second)) = duplicate else {
            return Ok(());
        };
        let name = |at: usize| &source.text[pending[at].name.0..pending[at].name.1];
        let (first, second_name) = (name(first), name(second));
        Err(source.error(
            pending[second].name.0,
            if first == second_name {
                format!("attribute `{}` appears twice", quote(first))
            } else {
                format!(
                    "attributes `{}` and `{}` have the same namespace and local name",
                    quote(first),
                    quote(second_name)
                )
            },
        ))
    }

    /// `</name>` at `start..end`.
    pub(super) fn end_tag(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let source = self.source;
        let Some(open) = self.open.pop() else {
            return Err(source.error(start, "closing tag without opening tag"));
        };
        let expected = &source.text[open.name.0..open.name.1];
        let found = &source.text[start + 2..end - 1];
        let matches = found == expected
            || found
                .strip_prefix(expected)
                .is_some_and(|rest| rest.bytes().all(is_space));
        if !matches {
            return Err(source.error(
                start,
                format!(
                    "end tag `</{}>` does not match start tag `<{}>`",
                    quote(found.trim_end_matches([' ', '\t', '\r', '\n'])),
                    quote(expected)
                ),
            ));
        }
        self.scopes.truncate(open.scope);
        self.nodes[open.node].end = self.nodes.len();
        Ok(())
    }

    /// Character data at `start..end`, up to the next markup or reference.
    pub(super) fn text(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let source = self.source;
        let piece = &source.text[start..end];
        if piece.starts_with('&') {
            // quick-xml hands over a `&` that no `;` closes as text.
            return Err(source.error(start, "`&` that starts no reference (write `&amp;`)"));
        }
        let Some(open) = self.open.last() else {
            return match piece.bytes().position(|byte| !is_space(byte)) {
                None => Ok(()),
                Some(offset) => Err(source.error(start + offset, "text outside the root element")),
            };
        };
        let node = open.node;
        if piece.contains('>')
            && let Some(offset) = piece.find("]]>")
        {
            return Err(source.error(start + offset, "`]]>` in text (write `]]&gt;`)"));
        }
        if piece.contains('\r') {
            self.append_str(node, &normalize_newlines(piece));
        } else {
            self.append_source(node, start, end);
        }
        Ok(())
    }

    /// `&name;` at `start..end`.
    pub(super) fn reference(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let Some(open) = self.open.last() else {
            return Err(self
                .source
                .error(start, "reference outside the root element"));
        };
        let node = open.node;
        let (character, next) = self.source.reference(start, end)?;
        debug_assert_eq!(next, end);
        self.append_str(node, character.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    /// `<![CDATA[…]]>` at `start..end`.
    pub(super) fn cdata(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let Some(open) = self.open.last() else {
            return Err(self.source.error(start, "CDATA outside the root element"));
        };
        let node = open.node;
        let (content_start, content_end) = (start + 9, end - 3);
        let content = &self.source.text[content_start..content_end];
        if content.contains('\r') {
            self.append_str(node, &normalize_newlines(content));
        } else {
            self.append_source(node, content_start, content_end);
        }
        Ok(())
    }

    /// `<!--…-->` at `start..end`.
    pub(super) fn comment(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let content = &self.source.text[start + 4..end - 3];
        if let Some(offset) = content.find("--") {
            return Err(self
                .source
                .error(start + 4 + offset, "`--` inside a comment"));
        }
        if content.ends_with('-') {
            return Err(self.source.error(end - 4, "a comment ends with `--->`"));
        }
        Ok(())
    }

    /// `<?target …?>` at `start..end`.
    pub(super) fn instruction(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let source = self.source;
        let (target_start, limit) = (start + 2, end - 2);
        let what = "processing instruction target";
        let (target_end, colon) = source.qname(target_start, limit, what)?;
        if let Some(colon) = colon {
            return Err(source.error(colon, format!("{what} with `:`")));
        }
        if source.text[target_start..target_end].eq_ignore_ascii_case("xml") {
            return Err(source.error(
                start,
                "`<?xml` is reserved for the XML declaration at the start of the document",
            ));
        }
        if target_end < limit && !is_space(source.bytes()[target_end]) {
            return Err(source.error(
                target_end,
                format!("unexpected {:?} in {what}", source.char_at(target_end)),
            ));
        }
        Ok(())
    }

    /// `<?xml …?>` at `start..end`: `version`, then optionally `encoding`, then optionally
    /// `standalone`, each after whitespace.
    pub(super) fn declaration(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let source = self.source;
        let bytes = source.bytes();
        if start != 0 {
            return Err(source.error(
                start,
                "an XML declaration is only allowed at the very start of the document",
            ));
        }
        let limit = end - 2;
        let mut at = start + 5;
        // The first of DECLARATION_NAMES that may still come.
        let mut next = 0;
        loop {
            let name_start = skip_space(bytes, at, limit);
            if name_start == limit {
                break;
            }
            if name_start == at {
                return Err(source.error(at, "expected whitespace in the XML declaration"));
            }
            let (which, name_end) = declaration_name(&source, name_start, limit, next)?;
            next = which + 1;
            let name = DECLARATION_NAMES[which];
            let (value_start, value_end) = declaration_value(&source, name, name_end, limit)?;
            check_declaration_value(&source, which, value_start, value_end)?;
            at = value_end + 1;
        }
        if next == 0 {
            return Err(source.error(start, "the XML declaration has no version"));
        }
        Ok(())
    }

    /// Appends `start..end` of the source to the text of `node`.
    pub(super) fn append_source(&mut self, node: usize, start: usize, end: usize) {
        let node = &mut self.nodes[node];
        node.text = match node.text {
            Text::None => Text::Source(start, end),
            // The reader may hand over one run of text in pieces: no copy for that.
            Text::Source(before_start, before_end) if before_end == start => {
                Text::Source(before_start, end)
            }
            Text::Source(before_start, before_end) => {
                let text = self.source.text;
                let mut joined = String::with_capacity(before_end - before_start + end - start);
                joined.push_str(&text[before_start..before_end]);
                joined.push_str(&text[start..end]);
                self.owned.push(joined);
                Text::Owned(self.owned.len() - 1)
            }
            Text::Owned(at) => {
                self.owned[at].push_str(&self.source.text[start..end]);
                Text::Owned(at)
            }
        };
    }

    /// Appends `piece` to the text of `node`.
    pub(super) fn append_str(&mut self, node: usize, piece: &str) {
        let node = &mut self.nodes[node];
        node.text = match node.text {
            Text::None => {
                self.owned.push(piece.to_owned());
                Text::Owned(self.owned.len() - 1)
            }
            Text::Source(start, end) => {
                let mut joined = String::with_capacity(end - start + piece.len());
                joined.push_str(&self.source.text[start..end]);
                joined.push_str(piece);
                self.owned.push(joined);
                Text::Owned(self.owned.len() - 1)
            }
            Text::Owned(at) => {
                self.owned[at].push_str(piece);
                Text::Owned(at)
            }
        };
    }
}

/// `VersionNum`, of which only `1.0` is accepted.
pub(super) fn check_version(value: &str) -> Result<(), String> {
    if value == "1.0" {
        return Ok(());
    }
    let well_formed = value
        .strip_prefix("1.")
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|byte| byte.is_ascii_digit()));
    Err(if well_formed {
        format!("XML version {value} is not supported (only 1.0)")
    } else {
        format!("invalid XML version `{}`", quote(value))
    })
}

/// `EncName`, of which only UTF-8 (and its subset ASCII) is accepted. `Err(None)` when the
/// name is not an encoding name at all.
pub(super) fn check_encoding(value: &str) -> Result<(), Option<XmlError>> {
    let mut bytes = value.bytes();
    let well_formed = bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if !well_formed {
        return Err(None);
    }
    let encoding = value.to_ascii_lowercase();
    if matches!(encoding.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
        return Ok(());
    }
    Err(Some(XmlError::Encoding(format!(
        "the XML declaration says encoding=\"{}\"; Beskedfordeler messages are UTF-8",
        quote(&encoding)
    ))))
}

/// The pseudo-attributes of an XML declaration, in the order they must come.
pub(super) const DECLARATION_NAMES: [&str; 3] = ["version", "encoding", "standalone"];

/// The pseudo-attribute name at `name_start` of an XML declaration: which of
/// [`DECLARATION_NAMES`] it is, and where it ends. `next` is the first that may still come.
pub(super) fn declaration_name(
    source: &Source<'_>,
    name_start: usize,
    limit: usize,
    next: usize,
) -> Result<(usize, usize), XmlError> {
    let (text, bytes) = (source.text, source.bytes());
    let name_end = bytes[name_start..limit]
        .iter()
        .position(|byte| !byte.is_ascii_alphabetic())
        .map_or(limit, |length| name_start + length);
    let name = &text[name_start..name_end];
    let Some(which) = DECLARATION_NAMES.iter().position(|&known| known == name) else {
        return Err(source.error(
            name_start,
            if name.is_empty() {
                format!(
                    "unexpected {:?} in the XML declaration",
                    source.char_at(name_start)
                )
            } else {
                format!("unexpected `{}` in the XML declaration", quote(name))
            },
        ));
    };
    if next == 0 && which != 0 {
        return Err(source.error(name_start, "the XML declaration must start with `version`"));
    }
    if which < next {
        return Err(source.error(
            name_start,
            format!("`{name}` repeated or out of order in the XML declaration"),
        ));
    }
    Ok((which, name_end))
}

/// The quoted value after `name` (which ends at `name_end`) in an XML declaration: where it
/// starts and ends, without its quotes.
pub(super) fn declaration_value(
    source: &Source<'_>,
    name: &str,
    name_end: usize,
    limit: usize,
) -> Result<(usize, usize), XmlError> {
    let bytes = source.bytes();
    let equals = skip_space(bytes, name_end, limit);
    if equals == limit || bytes[equals] != b'=' {
        return Err(source.error(
            equals,
            format!("expected `=` after `{name}` in the XML declaration"),
        ));
    }
    let open_quote = skip_space(bytes, equals + 1, limit);
    if open_quote == limit || !matches!(bytes[open_quote], b'"' | b'\'') {
        return Err(source.error(
            open_quote,
            format!("the value of `{name}` in the XML declaration is not in quotes"),
        ));
    }
    let value_start = open_quote + 1;
    let Some(length) = bytes[value_start..limit]
        .iter()
        .position(|&byte| byte == bytes[open_quote])
    else {
        return Err(source.error(
            open_quote,
            format!("the value of `{name}` in the XML declaration is not closed"),
        ));
    };
    Ok((value_start, value_start + length))
}

/// Checks the value of pseudo-attribute `which` of an XML declaration.
pub(super) fn check_declaration_value(
    source: &Source<'_>,
    which: usize,
    value_start: usize,
    value_end: usize,
) -> Result<(), XmlError> {
    let value = &source.text[value_start..value_end];
    match which {
        0 => check_version(value).map_err(|message| source.error(value_start, message)),
        1 => check_encoding(value).map_err(|error| match error {
            Some(error) => error,
            None => source.error(
                value_start,
                format!("invalid encoding name `{}`", quote(value)),
            ),
        }),
        _ if value == "yes" || value == "no" => Ok(()),
        _ => Err(source.error(
            value_start,
            "standalone must be \"yes\" or \"no\" in the XML declaration",
        )),
    }
}
