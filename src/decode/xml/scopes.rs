//! Namespace scopes: which URI a prefix is bound to at each depth.

use std::collections::HashMap;

use super::*;

/// Namespace declarations in scope.
pub(super) struct Scopes<'a> {
    /// Every binding in scope, outermost first.
    pub(super) stack: Vec<Binding<'a>>,
    /// The innermost binding of each prefix (an index into `stack`), once `stack` has grown
    /// past [`SCAN_MAX`]; before that, a backwards scan is cheaper.
    pub(super) index: Option<HashMap<&'a str, usize>>,
}

#[derive(Clone, Copy)]
pub(super) struct Binding<'a> {
    /// The empty prefix is the default namespace.
    pub(super) prefix: &'a str,
    /// [`prefix_key`] of `prefix`.
    pub(super) key: u64,
    pub(super) ns: u32,
    /// The binding of the same prefix that this one hides, if any.
    pub(super) hides: Option<usize>,
}

/// A prefix packed into a number for a quick comparison: its first seven bytes and its
/// length. Prefixes of up to seven bytes are equal exactly when their keys are.
pub(super) fn prefix_key(prefix: &str) -> u64 {
    let bytes = prefix.as_bytes();
    let mut key = (bytes.len().min(255) as u64) << 56;
    for (at, &byte) in bytes.iter().take(7).enumerate() {
        key |= u64::from(byte) << (8 * at);
    }
    key
}

impl<'a> Scopes<'a> {
    pub(super) fn new() -> Scopes<'a> {
        Scopes {
            stack: vec![Binding {
                prefix: "xml",
                key: prefix_key("xml"),
                ns: XML_NAMESPACE,
                hides: None,
            }],
            index: None,
        }
    }

    pub(super) fn innermost(&self, prefix: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(prefix).copied(),
            None => {
                let key = prefix_key(prefix);
                self.stack.iter().rposition(|binding| {
                    binding.key == key && (prefix.len() <= 7 || binding.prefix == prefix)
                })
            }
        }
    }

    pub(super) fn lookup(&self, prefix: &str) -> Option<u32> {
        self.innermost(prefix).map(|at| self.stack[at].ns)
    }

    pub(super) fn push(&mut self, prefix: &'a str, ns: u32) {
        let hides = self.innermost(prefix);
        self.stack.push(Binding {
            prefix,
            key: prefix_key(prefix),
            ns,
            hides,
        });
        match &mut self.index {
            Some(index) => {
                index.insert(prefix, self.stack.len() - 1);
            }
            None if self.stack.len() > SCAN_MAX => {
                // Later bindings overwrite earlier ones: each prefix ends at its innermost.
                let index = self
                    .stack
                    .iter()
                    .enumerate()
                    .map(|(at, binding)| (binding.prefix, at))
                    .collect();
                self.index = Some(index);
            }
            None => {}
        }
    }

    /// Ends the bindings past the first `len`, in O(1) each.
    pub(super) fn truncate(&mut self, len: usize) {
        while self.stack.len() > len {
            let Some(binding) = self.stack.pop() else {
                break;
            };
            if let Some(index) = &mut self.index {
                match binding.hides {
                    Some(outer) => index.insert(binding.prefix, outer),
                    None => index.remove(binding.prefix),
                };
            }
        }
    }
}
