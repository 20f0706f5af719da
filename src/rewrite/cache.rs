//! The rewrite cache: a statement seen before is not parsed again.
//!
//! One cache lives inside each [`SchemaMap`](super::SchemaMap) and is shared
//! by its clones, so the key space is the map's own: a reload builds a new
//! map, hence an empty cache, and a session still pinned to the old map
//! keeps reading the old one. Keys are the statement text, or its shape
//! (literals masked, see `shape`) when the scanner is sure of it, plus the
//! parse-error policy.
//!
//! The bound is in bytes (key + value + a fixed overhead per entry), never
//! in entries alone. Eviction is CLOCK (second chance): an entry hit since
//! the hand last passed survives one more round.
//!
//! The lock is a plain mutex held for a lookup or an insert, never across
//! anything slow: values are `Arc`s, rebuilt into a [`Rewrite`] outside it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Decision, Edit, NameUse, OnParseError, Outcome, Rewrite};

/// The default bound when none is configured: enough for tens of thousands
/// of OLTP statements or ~5,000 2 KB reports.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// Bytes charged per entry on top of key and value: the hash table slot,
/// the CLOCK queue slot, the `Arc` headers and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 128;

/// What one cached statement rewrites to.
#[derive(Debug)]
pub(crate) enum Cached {
    /// Keyed by the exact text: the whole result.
    Text(Rewrite),
    /// Keyed by shape: edits and names anchored to words, not offsets.
    Shape(ShapeRewrite),
}

/// A rewrite with every offset replaced by the index of the word it falls
/// on (see [`super::shape::Shape::word_starts`]).
#[derive(Debug)]
pub(crate) struct ShapeRewrite {
    outcome: Outcome,
    /// (word, bytes replaced, text inserted)
    edits: Vec<(u32, usize, Arc<str>)>,
    names: Vec<(u32, Arc<str>, Decision)>,
}

impl ShapeRewrite {
    /// Anchor `rewrite` (of the text `shape` was scanned from) to words.
    /// `None` when it cannot be: an offset not at a word start, or a result
    /// that carries text of its own (a parser message, a rejected name).
    pub(crate) fn anchor(rewrite: &Rewrite, word_starts: &[u32]) -> Option<ShapeRewrite> {
        if !matches!(rewrite.outcome, Outcome::Unchanged | Outcome::Rewritten)
            || rewrite.parse_error.is_some()
            || rewrite.rejected_table.is_some()
        {
            return None;
        }
        let word = |offset: usize| -> Option<u32> {
            let offset = u32::try_from(offset).ok()?;
            word_starts.binary_search(&offset).ok().map(|i| i as u32)
        };
        let edits = rewrite
            .edits
            .iter()
            .map(|e| Some((word(e.offset)?, e.replaced, e.insert.clone())))
            .collect::<Option<Vec<_>>>()?;
        let names = rewrite
            .names
            .iter()
            .map(|n| Some((word(n.offset)?, n.name.clone(), n.decision.clone())))
            .collect::<Option<Vec<_>>>()?;
        Some(ShapeRewrite {
            outcome: rewrite.outcome,
            edits,
            names,
        })
    }

    /// The rewrite of a text of the same shape. `None` if the words do not
    /// line up (cannot happen for an equal key; checked anyway).
    pub(crate) fn instantiate(&self, word_starts: &[u32]) -> Option<Rewrite> {
        let at = |w: u32| word_starts.get(w as usize).map(|&o| o as usize);
        let mut edits = Vec::with_capacity(self.edits.len());
        for (w, replaced, insert) in &self.edits {
            edits.push(Edit {
                offset: at(*w)?,
                replaced: *replaced,
                insert: insert.clone(),
            });
        }
        let mut names = Vec::with_capacity(self.names.len());
        for (w, name, decision) in &self.names {
            names.push(NameUse {
                name: name.clone(),
                offset: at(*w)?,
                decision: decision.clone(),
            });
        }
        Some(Rewrite {
            outcome: self.outcome,
            edits,
            names,
            parse_error: None,
            fallback_cause: None,
            rejected_table: None,
        })
    }

    fn heap_bytes(&self) -> usize {
        self.edits
            .iter()
            .map(|(_, _, s)| 40 + s.len())
            .sum::<usize>()
            + self
                .names
                .iter()
                .map(|(_, n, d)| 64 + n.len() + decision_bytes(d))
                .sum::<usize>()
    }
}

fn decision_bytes(d: &Decision) -> usize {
    d.qualified_schema().map_or(0, |s| s.len())
}

impl Cached {
    /// What this value costs against the bound, roughly but never less
    /// than its heap use.
    fn bytes(&self) -> usize {
        match self {
            Cached::Text(r) => {
                r.edits.iter().map(|e| 48 + e.insert.len()).sum::<usize>()
                    + r.names
                        .iter()
                        .map(|n| 64 + n.name.len() + decision_bytes(&n.decision))
                        .sum::<usize>()
                    + r.parse_error.as_ref().map_or(0, String::len)
                    + r.rejected_table.as_ref().map_or(0, String::len)
            }
            Cached::Shape(s) => s.heap_bytes(),
        }
    }
}

/// Which key space a key belongs to (a text and a shape never collide).
#[derive(Clone, Copy)]
pub(crate) enum KeyKind {
    Text = 0,
    Shape = 1,
}

/// The bytes [`key_prefix`] puts before the text or shape.
pub(crate) const KEY_PREFIX_LEN: usize = 2;

/// The bytes a key starts with: kind, then policy; the text or shape
/// bytes follow.
pub(crate) fn key_prefix(kind: KeyKind, policy: OnParseError) -> [u8; KEY_PREFIX_LEN] {
    [kind as u8, policy as u8]
}

/// A whole key (tests).
#[cfg(test)]
pub(crate) fn key(kind: KeyKind, policy: OnParseError, body: &[u8]) -> Vec<u8> {
    let mut k = key_prefix(kind, policy).to_vec();
    k.extend_from_slice(body);
    k
}

struct Slot {
    value: Arc<Cached>,
    cost: usize,
    /// Hit since the CLOCK hand last passed.
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    /// foldhash, not SipHash: keys are whole statements, hashed on every
    /// lookup; the seed is still random per map.
    entries: HashMap<Arc<[u8]>, Slot, foldhash::fast::RandomState>,
    /// CLOCK order: the hand is the front.
    clock: VecDeque<Arc<[u8]>>,
    bytes: usize,
}

/// Counters of one cache, for metrics. All monotonic but `bytes` and
/// `entries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by an entry keyed by text.
    pub text_hits: u64,
    /// Lookups answered by an entry keyed by shape (literals masked).
    pub shape_hits: u64,
    /// Lookups that had to rewrite.
    pub misses: u64,
    /// Entries dropped to stay under the bound.
    pub evictions: u64,
    /// Bytes charged now (at most `limit`).
    pub bytes: usize,
    pub entries: usize,
    /// The bound.
    pub limit: usize,
}

/// A byte-bounded, thread-safe rewrite cache.
pub(crate) struct RewriteCache {
    limit: usize,
    inner: Mutex<Inner>,
    text_hits: AtomicU64,
    shape_hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    bytes: AtomicUsize,
    entries: AtomicUsize,
}

impl std::fmt::Debug for RewriteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for RewriteCache {
    fn default() -> Self {
        RewriteCache::new(DEFAULT_CACHE_BYTES)
    }
}

impl RewriteCache {
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn new(limit: usize) -> Self {
        RewriteCache {
            limit,
            inner: Mutex::new(Inner::default()),
            text_hits: AtomicU64::new(0),
            shape_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.limit > 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in Inner can be left half-updated by a panic that
        // matters more than a lost entry.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key`, counting a hit. A miss is counted by the
    /// caller ([`RewriteCache::count_miss`]) once it knows the text needed
    /// a rewrite: a text that names no mapped table is looked up too, and
    /// is no miss.
    pub(crate) fn get(&self, key: &[u8], kind: KeyKind) -> Option<Arc<Cached>> {
        let found = {
            let mut inner = self.lock();
            inner.entries.get_mut(key).map(|slot| {
                slot.referenced = true;
                Arc::clone(&slot.value)
            })
        };
        if found.is_some() {
            match kind {
                KeyKind::Text => &self.text_hits,
                KeyKind::Shape => &self.shape_hits,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// One lookup that found nothing for a text that needed a rewrite.
    pub(crate) fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn insert(&self, key: &[u8], value: Cached) {
        let cost = key.len() + value.bytes() + ENTRY_OVERHEAD;
        // One entry may take at most an eighth of the bound, so a few huge
        // statements cannot flush everything else.
        if cost > self.limit / 8 {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.contains_key(key) {
            return;
        }
        let key: Arc<[u8]> = key.into();
        let mut evicted = 0u64;
        // Each entry is passed over at most twice (once to clear its bit).
        let mut budget = 2 * inner.clock.len() + 1;
        while inner.bytes + cost > self.limit && budget > 0 {
            budget -= 1;
            let Some(victim) = inner.clock.pop_front() else {
                break;
            };
            let second_chance = match inner.entries.get_mut(&victim) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    true
                }
                _ => false,
            };
            if second_chance {
                inner.clock.push_back(victim);
            } else if let Some(slot) = inner.entries.remove(&victim) {
                inner.bytes -= slot.cost;
                evicted += 1;
            }
        }
        if inner.bytes + cost <= self.limit {
            inner.bytes += cost;
            inner.clock.push_back(Arc::clone(&key));
            inner.entries.insert(
                key,
                Slot {
                    value: Arc::new(value),
                    cost,
                    referenced: false,
                },
            );
        }
        self.bytes.store(inner.bytes, Ordering::Relaxed);
        self.entries.store(inner.entries.len(), Ordering::Relaxed);
        drop(inner);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            text_hits: self.text_hits.load(Ordering::Relaxed),
            shape_hits: self.shape_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_value(n: usize) -> Cached {
        Cached::Text(Rewrite {
            outcome: Outcome::Rewritten,
            edits: vec![Edit {
                offset: n,
                replaced: 0,
                insert: "shared_common.".into(),
            }],
            names: vec![],
            parse_error: None,
            fallback_cause: None,
            rejected_table: None,
        })
    }

    #[test]
    fn ten_thousand_distinct_2kb_statements_stay_under_the_bound() {
        let limit = 1 << 20;
        let cache = RewriteCache::new(limit);
        let filler = "x".repeat(2000);
        for i in 0..10_000 {
            let k = key(
                KeyKind::Text,
                OnParseError::Tokens,
                format!("{i} {filler}").as_bytes(),
            );
            assert!(cache.get(&k, KeyKind::Text).is_none());
            cache.count_miss();
            cache.insert(&k, text_value(i));
            assert!(cache.stats().bytes <= limit);
        }
        let s = cache.stats();
        assert!(s.entries > 400 && s.entries < 520, "{s:?}");
        assert_eq!(s.misses, 10_000);
        assert!(s.evictions >= 9_400);
    }

    #[test]
    fn a_hit_entry_survives_one_round_of_eviction() {
        let cache = RewriteCache::new(8 * 1024);
        let hot = key(KeyKind::Text, OnParseError::Tokens, b"hot");
        cache.insert(&hot, text_value(0));
        for i in 0..200 {
            assert!(cache.get(&hot, KeyKind::Text).is_some(), "lost at {i}");
            let k = key(
                KeyKind::Text,
                OnParseError::Tokens,
                format!("cold {i}").as_bytes(),
            );
            cache.insert(&k, text_value(i));
        }
        let s = cache.stats();
        assert_eq!(s.text_hits, 200);
        assert!(s.bytes <= 8 * 1024);
    }

    #[test]
    fn an_entry_over_an_eighth_of_the_bound_is_not_kept() {
        let cache = RewriteCache::new(8 * 1024);
        let k = key(KeyKind::Text, OnParseError::Tokens, &[b'x'; 2000]);
        cache.insert(&k, text_value(0));
        assert!(cache.get(&k, KeyKind::Text).is_none());
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn policies_and_kinds_are_separate_key_spaces() {
        let a = key(KeyKind::Text, OnParseError::Tokens, b"select 1");
        let b = key(KeyKind::Text, OnParseError::Reject, b"select 1");
        let c = key(KeyKind::Shape, OnParseError::Tokens, b"select 1");
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
