//! A value for a derived column: the text of an element, capped. The envelope and the payloads
//! both derive their columns through it.

use crate::decode::xml::Tree;

/// Most bytes a derived text column keeps of a value (the envelope keeps it whole): longer
/// values are cut, with a marker saying how much (`… [cut N bytes]`).
pub const FIELD_MAX_BYTES: usize = 64 * 1024;

/// A value for a derived column: at most [`FIELD_MAX_BYTES`], cut with a marker.
pub fn field(text: &str) -> String {
    crate::mask::cap(text, FIELD_MAX_BYTES).into_owned()
}

/// The trimmed text of the first element named `name` directly under `parent` (namespace `ns`),
/// as a [`field`].
pub fn child_text(tree: &Tree, parent: usize, ns: &str, name: &str) -> Option<String> {
    tree.child(parent, ns, name)
        .and_then(|node| tree.text(node))
        .map(field)
}
