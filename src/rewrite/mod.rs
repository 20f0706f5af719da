//! The pure rewriter: SQL text + [`SchemaMap`] in, SQL text + a report of
//! what was done out. No I/O, no sockets, no wire protocol.
//!
//! The original text is edited in place (an insertion of `schema.` before each
//! bare mapped table name); the AST is never re-printed, so comments, literals,
//! quoting, whitespace and letter case are kept byte for byte.
//!
//! CONTRACT (other modules rely on this API; keep it stable):
//! - [`SchemaMap`]: which bare table name belongs to which schema.
//! - [`rewrite_sql`]: the one entry point the session and the CLI call.
//! - [`Rewrite`]: the result: the outcome, the edits, the per-name decisions,
//!   and [`Rewrite::original_position`] to map a server error position back.
//!
//! The steps, in order:
//! 1. `prefilter`: no mapped name at an identifier boundary -> done, no parse.
//!    Then `cache`: the same text, or the same shape (literals masked, see
//!    `shape`), rewritten before with this map -> the stored result.
//! 2. `split`: tokenize once (sqlparser's Postgres tokenizer), cut at
//!    top-level `;`, map token locations (chars) to byte offsets.
//! 3. `statement`: parse each statement alone; `walk` finds every table
//!    name with its CTE scope; each insertion point is verified against the
//!    text; a keyword cross-check on the tokens catches names the walk did
//!    not see.
//! 4. `exact`: statements sqlparser cannot parse, or whose names the walk
//!    missed (the keyword cross-check of `fallback`), are qualified by
//!    PostgreSQL's own grammar (libpg_query); [`OnParseError`] decides only
//!    for statements PostgreSQL's parser rejects too.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

mod cache;
mod encoding;
mod escapes;
mod exact;
mod facts;
mod fallback;
mod names;
mod prefilter;
mod quote;
mod shape;
mod splice;
mod split;
mod statement;
mod walk;

#[cfg(test)]
mod tests;

pub use cache::{CacheStats, DEFAULT_CACHE_BYTES};
pub use encoding::{EncodingClass, LexableText, lexable_text, mask_for_lexing};
pub use escapes::mask_backslash_escapes;
pub use facts::{SessionFacts, TempRelations};
pub use names::table_names;
pub use quote::quote_identifier;
pub use splice::{splice, splice_into};

use cache::{Cached, KeyKind, RewriteCache, ShapeRewrite};

use prefilter::MappedNamePrefilter;
use split::{TextIndex, split_statements, tokenize};
use statement::rewrite_statement;

/// What to do with a statement that names a mapped table (per the
/// tokenizer) and that sqlparser cannot parse. Such a statement is first
/// qualified exactly by PostgreSQL's own grammar (libpg_query), whatever the
/// policy; the policy decides only when that parser rejects it too (a
/// syntax error the server will report) or parses it but cannot place a
/// mapped name in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnParseError {
    /// Forward a syntax error unchanged (the server rejects it); refuse a
    /// statement whose mapped name cannot be placed exactly.
    #[default]
    Tokens,
    /// Refuse the statement (the session answers 0A000).
    Reject,
    /// Forward the statement unchanged.
    Passthrough,
}

/// Bare table name -> schema, for one upstream database.
///
/// Unquoted names in SQL match case-insensitively (Postgres folds them to
/// lower case); quoted names match exactly. Names in the map are stored as
/// Postgres stores them (already folded / exact).
#[derive(Debug, Clone, Default)]
pub struct SchemaMap {
    /// table name (exact, as stored in the catalog) -> schema name (exact).
    tables: HashMap<String, String>,
    /// Function, procedure and aggregate names -> schema.
    routines: HashMap<String, String>,
    /// Type and domain names -> schema.
    types: HashMap<String, String>,
    /// Finds mapped names in raw text; `None` for an empty map.
    prefilter: Option<MappedNamePrefilter>,
    /// Rewrites already done with this map (shared by its clones, which map
    /// the same names; a new map starts empty).
    cache: Arc<RewriteCache>,
    /// `public.users` for a mapped `users` is sent as written
    /// (`public_qualified: keep`, for tools that must reach the stale
    /// copies) instead of with the mapped schema (the default).
    keep_public: bool,
    /// Where objects created without a schema go, when that is not the
    /// first schema of the route's search_path (`None`: leave them to it).
    create_schema: Option<Arc<str>>,
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
        let prefilter = MappedNamePrefilter::new(tables.keys().map(String::as_str), false);
        SchemaMap {
            tables,
            routines: HashMap::new(),
            types: HashMap::new(),
            prefilter,
            cache: Arc::new(RewriteCache::new(DEFAULT_CACHE_BYTES)),
            keep_public: false,
            create_schema: None,
        }
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
        self.prefilter = MappedNamePrefilter::new(
            self.tables
                .keys()
                .chain(self.routines.keys())
                .chain(self.types.keys())
                .map(String::as_str),
            self.create_schema.is_some(),
        );
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

    pub(crate) fn create_schema(&self) -> Option<&str> {
        self.create_schema.as_deref()
    }

    /// Whether `public.name` of a mapped name is sent with the mapped
    /// schema (true, the default) or as written.
    pub fn with_public_requalified(mut self, requalify: bool) -> Self {
        self.keep_public = !requalify;
        self.cache = Arc::new(RewriteCache::new(self.cache.limit()));
        self
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
fn lookup<'m>(names: &'m HashMap<String, String>, name: &str, quoted: bool) -> Option<&'m str> {
    if names.is_empty() {
        return None;
    }
    if quoted || !name.bytes().any(|b| b.is_ascii_uppercase()) {
        names.get(name).map(String::as_str)
    } else {
        names.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What the rewriter did with one SQL string (all its statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No word of the text can name a mapped table: forwarded without parsing.
    NoParseNeeded,
    /// Parsed; nothing needed a schema. Forward the original text.
    Unchanged,
    /// Parsed; at least one name was qualified.
    Rewritten,
    /// At least one statement did not parse with sqlparser (or named a table
    /// where its AST walk does not look) and was qualified by the exact
    /// fallback, PostgreSQL's own grammar.
    FallbackTokens,
    /// A statement did not parse, names a mapped table, and the policy is
    /// [`OnParseError::Reject`]. The session must answer 0A000.
    Rejected,
    /// A statement did not parse, names a mapped table, and the policy is
    /// [`OnParseError::Passthrough`]: forwarded unchanged.
    PassthroughUnparsed,
}

/// Why a statement went to the exact parser (PostgreSQL's grammar), for
/// the fallback counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackCause {
    /// sqlparser could not parse it.
    SqlparserSyntax,
    /// sqlparser parsed it into a form the walk does not read (a computed
    /// object name, a `SELECT INTO` target that is no name).
    UnsupportedForm,
    /// A name the walk found could not be placed in the text.
    UnplacedName,
    /// The keyword cross-check saw a mapped name in a table position the
    /// walk did not account for.
    CrossCheck,
}

impl FallbackCause {
    /// Every cause's metric label, in [`FallbackCause::index`] order.
    pub const LABELS: [&'static str; 4] = [
        "sqlparser_syntax",
        "unsupported_form",
        "unplaced_name",
        "cross_check",
    ];

    pub fn index(self) -> usize {
        match self {
            FallbackCause::SqlparserSyntax => 0,
            FallbackCause::UnsupportedForm => 1,
            FallbackCause::UnplacedName => 2,
            FallbackCause::CrossCheck => 3,
        }
    }
}

/// Why a table name was or was not qualified (for logs, EXPLAIN REWRITE and
/// the cut-over report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Qualified with this schema from the map.
    QualifiedByMap { schema: Arc<str> },
    /// Qualified with this schema by the exact fallback (PostgreSQL's grammar).
    QualifiedByFallback { schema: Arc<str> },
    /// Already written as `schema.table`.
    AlreadyQualified,
    /// The name refers to a CTE in scope.
    Cte,
    /// A bare name the map does not list (reads whatever search_path finds).
    NotInMap,
    /// `public.name` for a name the map moved: `public` replaced by this
    /// schema (legacy code names the live table that way).
    RequalifiedFromPublic { schema: Arc<str> },
    /// An object created without a schema, sent with the schema it landed
    /// in before the move (the route's create schema).
    CreatedIn { schema: Arc<str> },
    /// The statement creates a temporary relation of a mapped name (`CREATE
    /// TEMP TABLE users`, `pg_temp.users`): left as written, and from now
    /// on the session leaves that name bare, as pg_temp comes first.
    TempCreated,
    /// The statement sets the session's own search_path (`own`), or gives
    /// it back to the route's (RESET, DISCARD ALL): from then on objects
    /// created without a schema follow the session's own path, as they did
    /// before the move.
    SessionSearchPath { own: bool },
    /// Created without a schema while the session runs its own search_path:
    /// left to it.
    CreatedBySessionPath,
    /// A mapped name left bare because the session created a temporary
    /// relation of that name: PostgreSQL resolves it in pg_temp first, and
    /// the route's search_path resolves it to the mapped schema otherwise.
    TempShadowed,
}

impl Decision {
    /// Every decision's metric label, in [`Decision::index`] order.
    pub const LABELS: [&'static str; 11] = [
        "qualified_by_map",
        "qualified_by_fallback",
        "already_qualified",
        "cte",
        "not_in_map",
        "requalified_from_public",
        "created_in",
        "temp_created",
        "temp_shadowed",
        "session_search_path",
        "created_by_session_path",
    ];

    /// The slot of this decision in [`Decision::LABELS`]: which layer
    /// resolved the name (the map, the fallback parser, the session's
    /// temporary relations, or left to the search_path).
    pub fn index(&self) -> usize {
        match self {
            Decision::QualifiedByMap { .. } => 0,
            Decision::QualifiedByFallback { .. } => 1,
            Decision::AlreadyQualified => 2,
            Decision::Cte => 3,
            Decision::NotInMap => 4,
            Decision::RequalifiedFromPublic { .. } => 5,
            Decision::CreatedIn { .. } => 6,
            Decision::TempCreated => 7,
            Decision::TempShadowed => 8,
            Decision::SessionSearchPath { .. } => 9,
            Decision::CreatedBySessionPath => 10,
        }
    }

    /// The schema the name was sent with, when the proxy changed it.
    pub fn qualified_schema(&self) -> Option<&Arc<str>> {
        match self {
            Decision::QualifiedByMap { schema }
            | Decision::QualifiedByFallback { schema }
            | Decision::RequalifiedFromPublic { schema }
            | Decision::CreatedIn { schema } => Some(schema),
            _ => None,
        }
    }

    /// One line for logs, the `rewrite` command and EXPLAIN REWRITE.
    pub fn describe(&self) -> String {
        match self {
            Decision::QualifiedByMap { schema } => format!("qualified by map -> {schema}"),
            Decision::QualifiedByFallback { schema } => {
                format!("qualified by the fallback parser -> {schema}")
            }
            Decision::AlreadyQualified => "already qualified: left as written".into(),
            Decision::Cte => "CTE in scope: left bare".into(),
            Decision::NotInMap => "not in map: left bare (search_path decides)".into(),
            Decision::RequalifiedFromPublic { schema } => {
                format!("public. spelling of a moved name -> {schema}")
            }
            Decision::CreatedIn { schema } => {
                format!("created without a schema -> {schema}, where it landed before the move")
            }
            Decision::TempCreated => "temporary relation created: left bare".into(),
            Decision::TempShadowed => {
                "session has a temporary relation of this name: left bare".into()
            }
            Decision::SessionSearchPath { own: true } => {
                "the session sets its own search_path: creations follow it".into()
            }
            Decision::SessionSearchPath { own: false } => {
                "the session gives back its search_path: creations go to the create schema".into()
            }
            Decision::CreatedBySessionPath => {
                "created without a schema under the session's own search_path: left to it".into()
            }
        }
    }
}

/// One table reference found in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameUse {
    /// The name as written (without quotes).
    pub name: Arc<str>,
    /// Byte offset of the name's first byte in the original text (the
    /// opening quote for a quoted name).
    pub offset: usize,
    pub decision: Decision,
}

/// One change to the original text: almost always an insertion of
/// `schema.`; a replacement only where a legacy `public.` spelling of a
/// moved name becomes its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Byte offset in the original text where `insert` goes.
    pub offset: usize,
    /// Bytes of the original from `offset` on that `insert` replaces (0 for
    /// an insertion).
    pub replaced: usize,
    /// The text inserted, e.g. `shared_common.` or `"My Schema".`.
    pub insert: Arc<str>,
}

impl Edit {
    /// An insertion of `insert` at `offset`.
    pub fn insertion(offset: usize, insert: Arc<str>) -> Edit {
        Edit {
            offset,
            replaced: 0,
            insert,
        }
    }
}

/// The result of [`rewrite_sql`].
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub outcome: Outcome,
    /// Sorted by offset, non-overlapping. Empty for `NoParseNeeded`,
    /// `Unchanged` and `Rejected`. For `PassthroughUnparsed` it holds the
    /// edits of the other statements of the same string (the unparsed one
    /// is forwarded as it is, the others are still qualified).
    pub edits: Vec<Edit>,
    /// Every table reference found, in text order (may be empty for
    /// `NoParseNeeded`).
    pub names: Vec<NameUse>,
    /// The parser's error, when a statement did not parse.
    pub parse_error: Option<String>,
    /// Why the first statement that went to the exact parser did.
    pub fallback_cause: Option<FallbackCause>,
    /// For `Rejected`: the mapped table that made the statement matter.
    pub rejected_table: Option<String>,
}

impl Rewrite {
    /// Whether the text to send differs from the original.
    pub fn changed(&self) -> bool {
        !self.edits.is_empty()
    }

    /// The text to send: the original with every edit applied.
    pub fn apply(&self, original: &str) -> String {
        let extra: usize = self.edits.iter().map(|e| e.insert.len()).sum();
        let mut out = String::with_capacity(original.len() + extra);
        let mut at = 0;
        for e in &self.edits {
            out.push_str(&original[at..e.offset]);
            out.push_str(&e.insert);
            at = e.offset + e.replaced;
        }
        out.push_str(&original[at..]);
        out
    }

    /// Map a 1-based character position in the sent text (as Postgres reports
    /// in an ErrorResponse `P` field) back to the 1-based character position
    /// in the original text. A position inside an inserted `schema.` maps to
    /// the start of the table name it qualifies.
    pub fn original_position(&self, original: &str, sent_position: usize) -> usize {
        self.position_shift(original)
            .original_position(sent_position)
    }

    /// What [`Rewrite::original_position`] needs, in characters, without
    /// keeping the original text (a session holds one per statement in
    /// flight).
    pub fn position_shift(&self, original: &str) -> PositionShift {
        let mut inserts = SmallVec::new();
        let (mut at, mut chars_before) = (0, 0);
        for e in &self.edits {
            chars_before += original[at..e.offset].chars().count();
            let replaced = match e.replaced {
                0 => 0,
                n => original[e.offset..e.offset + n].chars().count(),
            };
            // Inserts are ASCII or quoted identifiers: count chars, not bytes.
            inserts.push(Shift {
                original_before: chars_before,
                replaced,
                inserted: e.insert.chars().count(),
            });
            chars_before += replaced;
            at = e.offset + e.replaced;
        }
        PositionShift { inserts }
    }
}

/// The edits of a rewrite in characters, in text order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionShift {
    inserts: SmallVec<[Shift; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    /// Characters of the original before the edit.
    original_before: usize,
    /// Characters of the original the edit replaces.
    replaced: usize,
    /// Characters the edit inserts.
    inserted: usize,
}

impl PositionShift {
    /// See [`Rewrite::original_position`].
    pub fn original_position(&self, sent_position: usize) -> usize {
        // Sent chars minus original chars before the current point.
        let mut shift = 0isize;
        for s in &self.inserts {
            // 1-based sent position of the first inserted char:
            let sent_start = (s.original_before as isize + shift + 1) as usize;
            if sent_position < sent_start {
                break;
            }
            if sent_position < sent_start + s.inserted {
                return s.original_before + 1;
            }
            shift += s.inserted as isize - s.replaced as isize;
        }
        ((sent_position as isize - shift).max(1)) as usize
    }
}

/// Rewrite every statement in `sql` (one simple-Query string may hold
/// several) by `map`, following `policy` for statements that do not parse.
///
/// Statements are rewritten one by one, so one that does not parse does not
/// stop the others. The combined outcome is the worst of the statements',
/// in this order: `Rejected` > `FallbackTokens` > `PassthroughUnparsed` >
/// `Rewritten` > `Unchanged` > `NoParseNeeded`. A string in which no mapped
/// name occurs at an identifier boundary is `NoParseNeeded` (not even
/// tokenized); a string that only holds comments or whitespace, or whose
/// unparsable statements name no mapped table, is `Unchanged` (with the
/// parser's message in `parse_error` in the latter case). `parse_error`
/// holds the first statement's error; it also explains a `FallbackTokens`
/// outcome for a statement that parsed but named a table where the AST walk
/// does not look (the keyword cross-check).
pub fn rewrite_sql(sql: &str, map: &SchemaMap, policy: OnParseError) -> Rewrite {
    let Some(prefilter) = &map.prefilter else {
        return Rewrite::untouched();
    };
    if !prefilter.may_name_mapped_table(sql) {
        return Rewrite::untouched();
    }
    let cache = &map.cache;
    if !cache.enabled() {
        return rewrite_parsed(sql, map, policy, prefilter);
    }
    SCRATCH.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            // Only if a rewrite ever re-entered this one.
            return rewrite_parsed(sql, map, policy, prefilter);
        };
        let result = rewrite_cached(sql, map, policy, prefilter, &mut scratch);
        scratch.trim();
        result
    })
}

thread_local! {
    /// Key and word buffers reused by every lookup on this thread, so a
    /// cache hit allocates nothing to find its entry.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    word_starts: Vec<u32>,
}

impl Scratch {
    /// Give back what a huge statement made the buffers grow to.
    fn trim(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.key.capacity() > KEEP {
            self.key = Vec::new();
        }
        if self.word_starts.capacity() > KEEP / 4 {
            self.word_starts = Vec::new();
        }
    }
}

fn rewrite_cached(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
    scratch: &mut Scratch,
) -> Rewrite {
    let cache = &map.cache;
    // A shape when the scanner is sure of one (simple-protocol statements
    // with literals inline); the exact text otherwise (Parse with `$n`,
    // comments, dollar quotes, ...). Never both: a text key per literal
    // value would only churn the cache.
    let Scratch { key, word_starts } = scratch;
    key.clear();
    key.extend_from_slice(&cache::key_prefix(KeyKind::Shape, policy));
    if shape::scan_into(sql, key, word_starts) {
        if let Some(hit) = cache.get(key, KeyKind::Shape)
            && let Cached::Shape(s) = &*hit
            && let Some(r) = s.instantiate(word_starts)
        {
            return r;
        }
        let r = rewrite_parsed(sql, map, policy, prefilter);
        if let Some(anchored) = ShapeRewrite::anchor(&r, word_starts) {
            cache.insert(key, Cached::Shape(anchored));
        }
        return r;
    }
    key.clear();
    key.extend_from_slice(&cache::key_prefix(KeyKind::Text, policy));
    key.extend_from_slice(sql.as_bytes());
    if let Some(hit) = cache.get(key, KeyKind::Text)
        && let Cached::Text(r) = &*hit
    {
        return r.clone();
    }
    let r = rewrite_parsed(sql, map, policy, prefilter);
    cache.insert(key, Cached::Text(r.clone()));
    r
}

/// [`rewrite_sql`] without the cache: what a miss costs. For benches and
/// the tests that prove a cache hit equals a fresh rewrite.
#[doc(hidden)]
pub fn rewrite_sql_uncached(sql: &str, map: &SchemaMap, policy: OnParseError) -> Rewrite {
    let Some(prefilter) = &map.prefilter else {
        return Rewrite::untouched();
    };
    if !prefilter.may_name_mapped_table(sql) {
        return Rewrite::untouched();
    }
    rewrite_parsed(sql, map, policy, prefilter)
}

/// The parts of a rewrite, timed apart by `benches/rewrite.rs`.
#[doc(hidden)]
pub mod parts {
    /// Tokenize with sqlparser's Postgres tokenizer (the first step of a
    /// miss); the number of tokens.
    pub fn tokenize(sql: &str) -> usize {
        super::tokenize(sql).map_or(0, |t| t.len())
    }

    /// Tokenize and parse, as a miss does, without walking the AST.
    pub fn parse(sql: &str) -> usize {
        use sqlparser::dialect::PostgreSqlDialect;
        use sqlparser::parser::Parser;
        Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(super::statement::RECURSION_LIMIT)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_or(0, |s| s.len())
    }

    /// The literal-masking scan of a shape-cache lookup; the key length.
    pub fn shape(sql: &str) -> Option<usize> {
        super::shape::scan(sql).map(|s| s.key.len())
    }
}

impl Rewrite {
    /// The result for a text the prefilter clears.
    fn untouched() -> Rewrite {
        Rewrite {
            outcome: Outcome::NoParseNeeded,
            edits: Vec::new(),
            names: Vec::new(),
            parse_error: None,
            fallback_cause: None,
            rejected_table: None,
        }
    }
}

/// Everything after the prefilter: tokenize, split, parse, qualify.
fn rewrite_parsed(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
) -> Rewrite {
    let mut result = Rewrite::untouched();
    let tokens = match tokenize(sql) {
        Ok(tokens) => tokens,
        Err(e) => {
            // Without tokens there is nothing to anchor a fallback on. The
            // text is broken for Postgres too (unterminated literal or
            // quote), so only Reject refuses it; the others forward it.
            tracing::debug!(error = %e, ?policy, "query text does not tokenize");
            result.parse_error = Some(e.to_string());
            if policy == OnParseError::Reject {
                result.outcome = Outcome::Rejected;
                result.rejected_table = prefilter.first_mapped_name(sql);
            } else {
                result.outcome = Outcome::PassthroughUnparsed;
            }
            return result;
        }
    };
    let index = TextIndex::new(sql);
    result.outcome = Outcome::Unchanged;
    for statement in split_statements(tokens) {
        if statement.is_empty() {
            continue;
        }
        let done = rewrite_statement(sql, &index, statement.tokens, map, policy);
        if severity(done.outcome) > severity(result.outcome) {
            result.outcome = done.outcome;
        }
        result.parse_error = result.parse_error.or(done.parse_error);
        result.fallback_cause = result.fallback_cause.or(done.fallback_cause);
        result.rejected_table = result.rejected_table.or(done.rejected_table);
        result.names.extend(done.names);
        result.edits.extend(done.edits);
    }
    if result.outcome == Outcome::Rejected {
        result.edits.clear();
    }
    result
}

/// The order in which outcomes of several statements combine (see
/// [`rewrite_sql`]).
fn severity(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::NoParseNeeded => 0,
        Outcome::Unchanged => 1,
        Outcome::Rewritten => 2,
        Outcome::PassthroughUnparsed => 3,
        Outcome::FallbackTokens => 4,
        Outcome::Rejected => 5,
    }
}
