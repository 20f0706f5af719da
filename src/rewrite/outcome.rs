//! What a rewrite reports: the outcome, the edits to splice in, every name
//! found with what was decided for it and why, and the position map for
//! the server's error positions.

use std::sync::Arc;

use smallvec::SmallVec;

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
    /// `'public.name'` in a string PostgreSQL reads as a relation (or type)
    /// name (`nextval('public.users_id_seq')`, `'public.users'::regclass`)
    /// for a name the map lists: `public` replaced by this schema inside
    /// the literal.
    RequalifiedStringFromPublic { schema: Arc<str> },
    /// The same for a relation name the map does not list: `public.`
    /// dropped inside the literal, so the server resolves it through the
    /// search_path exactly as the bare spelling (an owned sequence moved
    /// with its table is found in the mapped schema first).
    PublicDroppedFromString,
    /// A bare name the map lists, in a string PostgreSQL reads as a name
    /// (`to_regclass('users')`, `'user_status'::regtype`): this schema
    /// inserted inside the literal, so the lookup never reaches a stale
    /// copy in `public` (once the moved object is gone, say) nor follows a
    /// session's own search_path away from the map.
    QualifiedStringByMap { schema: Arc<str> },
    /// Any other string in such a position (a name the map does not list,
    /// or a spelling not read exactly): left as written, the search_path
    /// decides. Recorded so a rewrite that read a literal is never reused
    /// for a text of the same shape with another literal there.
    StringLeftToSearchPath,
    /// A catalog listing (`information_schema.tables`, `pg_tables`, ...)
    /// read through a subquery that leaves out the stale copies in `public`
    /// of what the map moved.
    CatalogStaleHidden,
    /// `current_schema()` answered from the path the client had before the
    /// move (`client_search_path`), not the route's.
    ClientSearchPathShown,
}

impl Decision {
    /// Every decision's metric label, in [`Decision::index`] order.
    pub const LABELS: [&'static str; 17] = [
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
        "requalified_string_from_public",
        "public_dropped_from_string",
        "qualified_string_by_map",
        "string_left_to_search_path",
        "catalog_stale_hidden",
        "client_search_path_shown",
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
            Decision::RequalifiedStringFromPublic { .. } => 11,
            Decision::PublicDroppedFromString => 12,
            Decision::QualifiedStringByMap { .. } => 13,
            Decision::StringLeftToSearchPath => 14,
            Decision::CatalogStaleHidden => 15,
            Decision::ClientSearchPathShown => 16,
        }
    }

    /// The schema the name was sent with, when the proxy changed it.
    pub fn qualified_schema(&self) -> Option<&Arc<str>> {
        match self {
            Decision::QualifiedByMap { schema }
            | Decision::QualifiedByFallback { schema }
            | Decision::RequalifiedFromPublic { schema }
            | Decision::RequalifiedStringFromPublic { schema }
            | Decision::QualifiedStringByMap { schema }
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
            Decision::RequalifiedStringFromPublic { schema } => {
                format!("public. spelling of a moved name inside a string -> {schema}")
            }
            Decision::PublicDroppedFromString => {
                "public. spelling of an unlisted name inside a string: public. dropped (search_path decides, as for the bare name)".into()
            }
            Decision::QualifiedStringByMap { schema } => {
                format!("mapped name inside a string read as a name -> {schema}")
            }
            Decision::StringLeftToSearchPath => {
                "string read as a name, not in map: left as written (search_path decides)".into()
            }
            Decision::CatalogStaleHidden => {
                "catalog read as before the move: moved objects shown in public, stale copies left out".into()
            }
            Decision::ClientSearchPathShown => {
                "search_path shown from the client's old path, not the route's".into()
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

    /// The offsets of the `SHOW search_path` statements sent as a SELECT
    /// of the client's path, whose answers' command tags must read `SHOW`.
    #[inline]
    pub fn search_path_shown_at(&self) -> Option<Vec<usize>> {
        // Such an edit replaces a whole statement; a qualification only
        // inserts: the common case is answered without the names.
        if !self.edits.iter().any(|e| e.replaced != 0) {
            return None;
        }
        self.show_statements()
    }

    #[cold]
    fn show_statements(&self) -> Option<Vec<usize>> {
        let shown: Vec<usize> = self
            .names
            .iter()
            .filter(|n| {
                matches!(n.decision, Decision::ClientSearchPathShown)
                    && &*n.name == super::search_path::SHOW_SEARCH_PATH
            })
            .map(|n| n.offset)
            .collect();
        (!shown.is_empty()).then_some(shown)
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
    #[inline]
    pub fn position_shift(&self, original: &str) -> PositionShift {
        PositionShift::of_edits(original, &self.edits)
    }
}

impl PositionShift {
    /// The shift of `edits` (sorted by offset, non-overlapping) applied to
    /// `original`.
    // Inlined: the qualify step is the hot caller; a call here cost
    // more than the copy in the rare second caller (SQL-level PREPARE).
    #[inline(always)]
    pub fn of_edits(original: &str, edits: &[Edit]) -> PositionShift {
        let mut inserts = SmallVec::new();
        let (mut at, mut chars_before) = (0, 0);
        for e in edits {
            chars_before += original[at..e.offset].chars().count();
            let replaced = match e.replaced {
                0 => 0,
                n => original[e.offset..e.offset + n].chars().count(),
            };
            // Inserts are ASCII or quoted identifiers: count chars, not bytes.
            inserts.push(Shift {
                original_before: saturating_u32(chars_before),
                replaced: saturating_u32(replaced),
                inserted: saturating_u32(e.insert.chars().count()),
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

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Character counts as u32: a statement is at most `max_message_size`
/// (under 1 GiB), and the smaller shift keeps each request the relay
/// queues per frame small (it is moved several times per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    /// Characters of the original before the edit.
    original_before: u32,
    /// Characters of the original the edit replaces.
    replaced: u32,
    /// Characters the edit inserts.
    inserted: u32,
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
            if sent_position < sent_start + s.inserted as usize {
                return s.original_before as usize + 1;
            }
            shift += s.inserted as isize - s.replaced as isize;
        }
        ((sent_position as isize - shift).max(1)) as usize
    }
}
