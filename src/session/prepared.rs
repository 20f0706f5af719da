//! The protocol-level prepared statements a client holds on its server.
//!
//! A named statement is rewritten once, when it is parsed; the server keeps
//! that text. After a reload that changes what the statement's text is
//! rewritten to, executing it would still read the old mapping's tables
//! (and a transaction could mix two generations). So the session keeps
//! each named statement's text, and at the first transaction boundary under
//! a new mapping prepares again, under the same name, every statement whose
//! rewritten text changed (Close + Parse + Sync, answers swallowed). A
//! statement the new mapping refuses is closed instead, so its next Bind
//! fails loudly.

use std::collections::HashMap;

use crate::rewrite::{Deallocation, Edit};

/// What was sent in place of a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SentForm {
    Unchanged,
    Spliced(Vec<Edit>),
    Refused,
}

/// A named Parse waiting for its ParseComplete.
#[derive(Debug)]
pub(super) struct NamedParse {
    pub name: Box<[u8]>,
    pub statement: Prepared,
}

#[derive(Debug, Clone)]
pub(super) struct Prepared {
    /// The client's text, before any rewrite.
    pub query: Box<[u8]>,
    /// The i16 count and the i32 type OIDs, as the client sent them.
    pub param_types: Box<[u8]>,
    pub sent: SentForm,
}

/// Named statements the server has confirmed (ParseComplete) and the client
/// has not closed.
#[derive(Debug, Default)]
pub(super) struct PreparedStatements {
    by_name: HashMap<Box<[u8]>, Prepared>,
}

impl PreparedStatements {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn confirmed(&mut self, parse: NamedParse) {
        self.by_name.insert(parse.name, parse.statement);
    }

    pub fn closed(&mut self, name: &[u8]) {
        self.by_name.remove(name);
    }

    pub fn deallocated(&mut self, what: Deallocation) {
        match what {
            Deallocation::All => self.by_name.clear(),
            Deallocation::Named(name) => self.closed(&name),
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut Prepared)> {
        self.by_name.iter_mut().map(|(k, v)| (&**k, v))
    }
}
