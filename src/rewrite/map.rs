//! The schema map the rewriter reads: which bare name belongs to which
//! schema, per kind of object, and the rewrite cache that goes with it.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{CacheStats, DEFAULT_CACHE_BYTES, RewriteCache};
use super::prefilter::MappedNamePrefilter;

/// Bare table name -> schema, for one upstream database.
///
/// Unquoted names in SQL match case-insensitively (Postgres folds them to
/// lower case); quoted names match exactly. Names in the map are stored as
/// Postgres stores them (already folded / exact).
#[derive(Debug, Clone, Default)]
pub struct SchemaMap {
    /// table name (exact, as stored in the catalog) -> schema name (exact).
    pub(super) tables: HashMap<String, String>,
    /// Function, procedure and aggregate names -> schema.
    pub(super) routines: HashMap<String, String>,
    /// Type and domain names -> schema.
    pub(super) types: HashMap<String, String>,
    /// Finds mapped names in raw text; `None` for an empty map.
    pub(super) prefilter: Option<MappedNamePrefilter>,
    /// Rewrites already done with this map (shared by its clones, which map
    /// the same names; a new map starts empty).
    pub(super) cache: Arc<RewriteCache>,
    /// `public.users` for a mapped `users` is sent as written
    /// (`public_qualified: keep`, for tools that must reach the stale
    /// copies) instead of with the mapped schema (the default).
    pub(super) keep_public: bool,
    /// The route's search_path does not hold `public`: a `'public.x'`
    /// string of an unlisted name keeps its `public.` (see `strings`).
    pub(super) public_off_path: bool,
    /// Where objects created without a schema go, when that is not the
    /// first schema of the route's search_path (`None`: leave them to it).
    pub(super) create_schema: Option<Arc<str>>,
    /// Statements longer than this are never parsed whole (see `large`).
    pub(super) max_parse_bytes: MaxParseBytes,
    /// The search_path the client had before the move, whose first schema
    /// `current_schema()` answers (see `search_path`); `None`: the
    /// route's, as the server answers.
    pub(super) client_search_path: Option<Arc<[String]>>,
}

/// The default of [`SchemaMap::with_max_parse_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PARSE_BYTES: usize = 1 << 20;

/// A bound in bytes whose default is [`DEFAULT_MAX_PARSE_BYTES`].
#[derive(Debug, Clone, Copy)]
pub(super) struct MaxParseBytes(usize);

impl Default for MaxParseBytes {
    fn default() -> Self {
        MaxParseBytes(DEFAULT_MAX_PARSE_BYTES)
    }
}

impl SchemaMap {
    /// Build a map from `(schema, table)` pairs. Callers (config) validate
    /// duplicates and identifiers before calling this.
    pub fn new<I, S, T>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        let tables = pairs
            .into_iter()
            .map(|(s, t)| (t.into(), s.into()))
            .collect::<HashMap<String, String>>();
        let mut map = SchemaMap {
            tables,
            routines: HashMap::new(),
            types: HashMap::new(),
            prefilter: None,
            cache: Arc::new(RewriteCache::new(DEFAULT_CACHE_BYTES)),
            keep_public: false,
            public_off_path: false,
            create_schema: None,
            max_parse_bytes: MaxParseBytes::default(),
            client_search_path: None,
        };
        map.rebuild();
        map
    }

    /// The functions and types the map lists (`(schema, name)` pairs): a
    /// `CREATE [OR REPLACE]` of one goes to its schema, and a `public.`
    /// spelling of one means it. Their bare uses are left to the route's
    /// search_path. Such names also send a statement to the parser.
    pub fn with_routines_and_types<S: AsRef<str>, N: AsRef<str>>(
        mut self,
        routines: impl IntoIterator<Item = (S, N)>,
        types: impl IntoIterator<Item = (S, N)>,
    ) -> Self {
        let by_name = |pairs: &mut dyn Iterator<Item = (S, N)>| {
            pairs
                .map(|(s, n)| (n.as_ref().to_owned(), s.as_ref().to_owned()))
                .collect::<HashMap<String, String>>()
        };
        self.routines = by_name(&mut routines.into_iter());
        self.types = by_name(&mut types.into_iter());
        self.rebuild();
        self
    }

    /// The prefilter and an empty cache for the current names.
    fn rebuild(&mut self) {
        // Catalog listings hide the stale copies (see `catalog`), and the
        // client's schema is shown (see `search_path`): their words are
        // looked for only in a text that names no mapped object.
        let mut other_words: Vec<&str> = Vec::new();
        if super::catalog::hides_stale_copies(self) {
            other_words.extend(super::catalog::PREFILTER_WORDS);
        }
        if self.client_search_path().is_some() {
            other_words.extend(super::search_path::PREFILTER_WORDS);
        }
        self.prefilter = MappedNamePrefilter::new(
            self.tables
                .keys()
                .chain(self.routines.keys())
                .chain(self.types.keys())
                .map(String::as_str),
            self.create_schema.is_some(),
        )
        .map(|p| {
            p.with_public_strings(self.requalify_public())
                .with_other_words(&other_words)
        });
        self.cache = Arc::new(RewriteCache::new(self.cache.limit()));
    }

    /// The schema of a function name, as [`SchemaMap::schema_of`].
    pub(crate) fn routine_schema(&self, name: &str, quoted: bool) -> Option<&str> {
        lookup(&self.routines, name, quoted)
    }

    /// The schema of a type name, as [`SchemaMap::schema_of`].
    pub(crate) fn type_schema(&self, name: &str, quoted: bool) -> Option<&str> {
        lookup(&self.types, name, quoted)
    }

    /// Qualify objects created without a schema (`CREATE TABLE t`, `SELECT
    /// ... INTO t`, `CREATE FUNCTION f`, ...) with `schema`: needed when the
    /// route's search_path puts mapped schemas before the one they landed
    /// in before the move. Such statements are then parsed even when they
    /// name no mapped table.
    pub fn with_create_schema(mut self, schema: Option<&str>) -> Self {
        self.create_schema = schema.map(Arc::from);
        self.rebuild();
        self
    }

    /// Answer `current_schema()` from `path`, the
    /// search_path the database's clients had before the move (`$user`
    /// for the role's own schema), instead of the route's. Empty: off.
    /// Applies only where the route's path differs from where creations
    /// go (`with_create_schema`), which is also where a session's own
    /// `SET search_path` is followed (it then answers itself).
    pub fn with_client_search_path(mut self, path: &[String]) -> Self {
        self.client_search_path = (!path.is_empty()).then(|| path.into());
        self.rebuild();
        self
    }

    pub(crate) fn client_search_path(&self) -> Option<&[String]> {
        self.create_schema
            .as_ref()
            .and(self.client_search_path.as_deref())
    }

    pub(crate) fn create_schema(&self) -> Option<&str> {
        self.create_schema.as_deref()
    }

    /// Whether `public.name` of a mapped name is sent with the mapped
    /// schema (true, the default) or as written.
    pub fn with_public_requalified(mut self, requalify: bool) -> Self {
        self.keep_public = !requalify;
        self.rebuild();
        self
    }

    /// Whether the route's search_path holds `public` (the default: yes).
    /// A `'public.x'` string of a name the map does not list loses its
    /// `public.` only then: the server must find `x` in public as it did.
    pub fn with_public_on_search_path(mut self, on_path: bool) -> Self {
        self.public_off_path = !on_path;
        self.cache = Arc::new(RewriteCache::new(self.cache.limit()));
        self
    }

    pub(crate) fn drop_public_in_strings(&self) -> bool {
        self.requalify_public() && !self.public_off_path
    }

    pub(crate) fn requalify_public(&self) -> bool {
        !self.keep_public
    }

    /// Bound the rewrite cache to `bytes` (0 turns it off). Without this the
    /// bound is [`DEFAULT_CACHE_BYTES`]. Starts an
    /// empty cache.
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = Arc::new(RewriteCache::new(bytes));
        self
    }

    /// Never parse a statement longer than `bytes` whole: past it, a
    /// statement is rewritten through its skeleton (long literal lists
    /// cut), or refused per the parse-error policy when a mapped name
    /// cannot be placed without a parse. Bounds the parser's memory, some
    /// 300 times the text. Without this: [`DEFAULT_MAX_PARSE_BYTES`].
    pub fn with_max_parse_bytes(mut self, bytes: usize) -> Self {
        self.max_parse_bytes = MaxParseBytes(bytes);
        self
    }

    pub(crate) fn max_parse_bytes(&self) -> usize {
        self.max_parse_bytes.0
    }

    /// Hits, misses and size of this map's rewrite cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The schema of a table name as written in SQL. `quoted` says whether
    /// the identifier was double-quoted (then it matches exactly; otherwise
    /// it is folded to lower case first, as Postgres does).
    pub fn schema_of(&self, name: &str, quoted: bool) -> Option<&str> {
        lookup(&self.tables, name, quoted)
    }

    /// Every `(table, schema)` pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables.iter().map(|(t, s)| (t.as_str(), s.as_str()))
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// A name as written looked up as Postgres matches it: quoted exactly,
/// unquoted folded to lower case.
pub(super) fn lookup<'m>(
    names: &'m HashMap<String, String>,
    name: &str,
    quoted: bool,
) -> Option<&'m str> {
    if names.is_empty() {
        return None;
    }
    if quoted || !name.bytes().any(|b| b.is_ascii_uppercase()) {
        names.get(name).map(String::as_str)
    } else {
        names.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}
