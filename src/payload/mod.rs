//! Typed payloads derived from an [`Envelope`](crate::envelope::Envelope): print status and
//! registrations. No I/O.

pub mod post_status;
pub mod registration;

use crate::xml::Tree;

/// The trimmed text of the first element named `name` directly under `parent` (namespace `ns`).
fn child_text(tree: &Tree, parent: usize, ns: &str, name: &str) -> Option<String> {
    tree.child(parent, ns, name)
        .and_then(|node| tree.text(node))
        .map(str::to_owned)
}
