//! The cheap first look: can this text name a mapped table at all?
//!
//! Most statements of a service touch none of the mapped tables, and those
//! must be decided without tokenizing or parsing. One Aho-Corasick pass over
//! the text finds every occurrence of a mapped name (ASCII case-insensitive,
//! which also covers quoted names with upper case); an occurrence counts
//! only at an identifier boundary. Occurrences inside literals and comments
//! are false positives that the parser sorts out later.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::quote::is_identifier_byte;

#[derive(Debug, Clone)]
pub(crate) struct MappedNamePrefilter {
    automaton: AhoCorasick,
    /// The creating keywords, when created objects get a schema, and the
    /// other words of [`MappedNamePrefilter::with_other_words`]: a second
    /// automaton, asked only when no mapped name occurs, so the names'
    /// search keeps its start-byte acceleration (the catalog words in the
    /// first one cost pgbench's statements some 2,200 instructions each).
    creating: Option<AhoCorasick>,
    /// `public.` spellings are rewritten, also inside strings: a string
    /// starting with one sends a statement to the parser too (a statement whose
    /// only mapped reference is `nextval('public.users_id_seq')` names no
    /// mapped word).
    public_strings: bool,
}

/// The words of statements that create objects, or that change where
/// objects are created (a session's own search_path): looked for as well
/// when created objects get a schema (see `SchemaMap::with_create_schema`).
pub(super) const CREATING_WORDS: [&str; 5] = ["create", "into", "search_path", "reset", "discard"];

impl MappedNamePrefilter {
    /// `None` when there is no name to look for.
    pub(crate) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        creating_statements: bool,
    ) -> Option<Self> {
        let names: Vec<&str> = names.into_iter().filter(|n| !n.is_empty()).collect();
        if names.is_empty() && !creating_statements {
            return None;
        }
        Some(MappedNamePrefilter {
            automaton: build(&names),
            creating: creating_statements.then(|| build(&CREATING_WORDS)),
            public_strings: false,
        })
    }

    /// Also let through a text holding one of `words` at an identifier
    /// boundary (catalog listings, `current_schema`): looked for with the
    /// creating keywords, in the second automaton, so a text that names a
    /// mapped table pays nothing for them.
    pub(crate) fn with_other_words(mut self, words: &[&str]) -> Self {
        if words.is_empty() {
            return self;
        }
        let mut all: Vec<&str> = match self.creating {
            Some(_) => CREATING_WORDS.to_vec(),
            None => Vec::new(),
        };
        all.extend_from_slice(words);
        self.creating = Some(build(&all));
        self
    }

    /// Also let through a text holding a string that starts with `public.`
    /// (see `strings::contains_public_string`), when such spellings are
    /// rewritten.
    pub(crate) fn with_public_strings(mut self, on: bool) -> Self {
        self.public_strings = on;
        self
    }

    /// Whether some mapped name (or, when created objects get a schema, a
    /// creating keyword) occurs in `text` at an identifier boundary, or,
    /// when `public.` spellings are rewritten, a string starts with one.
    #[inline]
    pub(crate) fn may_name_mapped_table(&self, text: &str) -> bool {
        self.names_a_listed_word(text.as_bytes()) || self.may_spell_public(text)
    }

    /// The word half of [`Self::may_name_mapped_table`]: a mapped name or
    /// another listed word, without the `public.` strings. Asked of a
    /// shape (literals masked), it answers for every text of that shape.
    #[inline]
    pub(crate) fn names_a_listed_word(&self, text: &[u8]) -> bool {
        Self::occurs(&self.automaton, text)
            || self
                .creating
                .as_ref()
                .is_some_and(|words| Self::occurs(words, text))
    }

    /// Whether a string of `text` may start with a `public.` spelling.
    #[inline]
    fn may_spell_public(&self, text: &str) -> bool {
        self.public_strings && super::strings::contains_public_string(text)
    }

    #[inline]
    fn occurs(automaton: &AhoCorasick, bytes: &[u8]) -> bool {
        let at_boundary = |m: aho_corasick::Match| {
            let before_ok = m.start() == 0 || !is_identifier_byte(bytes[m.start() - 1]);
            let after_ok = m.end() == bytes.len() || !is_identifier_byte(bytes[m.end()]);
            before_ok && after_ok
        };
        // The non-overlapping search is the faster one and answers most
        // texts: no occurrence at all, or one at a boundary.
        let mut any = false;
        for m in automaton.find_iter(bytes) {
            if at_boundary(m) {
                return true;
            }
            any = true;
        }
        // An occurrence inside a longer word may have hidden an overlapping
        // one that stands alone.
        any && automaton.find_overlapping_iter(bytes).any(at_boundary)
    }
}

fn build(words: &[&str]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        // Overlapping search: `cache` inside `kasi_cache_x` must not
        // hide a later real occurrence.
        .match_kind(MatchKind::Standard)
        .build(words)
        .expect("names form a valid automaton")
}

impl MappedNamePrefilter {
    /// The first mapped name at an identifier boundary, lower-cased (for a
    /// rejection message when the text cannot even be tokenized).
    pub(crate) fn first_mapped_name(&self, text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        self.automaton
            .find_overlapping_iter(text)
            .find(|m| {
                (m.start() == 0 || !is_identifier_byte(bytes[m.start() - 1]))
                    && (m.end() == bytes.len() || !is_identifier_byte(bytes[m.end()]))
            })
            .map(|m| text[m.range()].to_ascii_lowercase())
    }
}
