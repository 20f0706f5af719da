//! The console's commands on pgwire's query API: the simple protocol (one
//! command per Query) and the extended one (Parse/Bind/Describe/Execute/
//! Sync), so GUI tools and drivers that only speak the extended protocol
//! can run `SHOW ...` too. pgwire keeps the prepared statements and
//! portals; a statement here is a parsed [`Command`], described by its
//! columns without running it.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::ConsoleError;
use super::command::{self, Command};
use super::report::{self, ResultSet};
use crate::state::ProxyState;

/// A console session's commands, for both protocols.
pub(super) struct ConsoleQueries<'a> {
    state: &'a ProxyState,
    user: &'a str,
    parser: Arc<CommandParser>,
}

impl<'a> ConsoleQueries<'a> {
    pub(super) fn new(state: &'a ProxyState, user: &'a str) -> Self {
        ConsoleQueries {
            state,
            user,
            parser: Arc::new(CommandParser),
        }
    }

    /// Run one command: its result set, `None` for an empty query.
    async fn execute(&self, command: &Command) -> Result<Option<ResultSet>, ConsoleError> {
        let state = self.state;
        let set = match command {
            Command::Empty => return Ok(None),
            Command::ShowMapping => report::mapping(&state.config),
            Command::ShowClients => report::clients(state),
            Command::ShowStats => report::stats(state),
            Command::ShowUnmapped => report::unmapped(state),
            Command::ShowVersion => report::version(),
            Command::ShowPools => report::pools(state),
            Command::ShowServers => report::servers(state),
            Command::Reload => {
                // Who reloaded is worth a line: the other triggers log theirs.
                let r = report::reload(state.config.clone()).await;
                match &r {
                    Ok(_) => {
                        tracing::info!(user = %self.user, generation = state.config.load().generation, "RELOAD from the admin console")
                    }
                    Err(e) => {
                        tracing::warn!(user = %self.user, error = %e, "RELOAD from the admin console refused")
                    }
                }
                r?
            }
            Command::ExplainRewrite { sql, database } => {
                report::explain_rewrite(&state.config.load_full(), sql, database.as_deref())?
            }
        };
        Ok(Some(set))
    }
}

#[async_trait]
impl SimpleQueryHandler for ConsoleQueries<'_> {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!(user = %self.user, command = %query, "console command");
        let command = command::parse(query)
            .map_err(|text| ConsoleError::UnknownCommand(text).into_pgwire())?;
        let answer = self
            .execute(&command)
            .await
            .map_err(ConsoleError::into_pgwire)?;
        Ok(vec![response(answer, &Format::UnifiedText)?])
    }
}

#[async_trait]
impl ExtendedQueryHandler for ConsoleQueries<'_> {
    type Statement = Command;
    type QueryParser = CommandParser;

    fn query_parser(&self) -> Arc<CommandParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Command>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Command>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if portal.parameter_len() > 0 {
            return Err(ConsoleError::Parameters(portal.parameter_len()).into_pgwire());
        }
        let command = &portal.statement.statement;
        tracing::debug!(user = %self.user, command = ?command, "console command (extended)");
        let answer = self
            .execute(command)
            .await
            .map_err(ConsoleError::into_pgwire)?;
        response(answer, &portal.result_column_format)
    }
}

/// Parse turns the text into a [`Command`] right away, so an unknown
/// command fails at Parse (42601), as a syntax error does in Postgres.
#[derive(Debug)]
pub(super) struct CommandParser;

#[async_trait]
impl QueryParser for CommandParser {
    type Statement = Command;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Command>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        match command::parse(sql) {
            Ok(command) => Ok(Some(command)),
            Err(text) => Err(ConsoleError::UnknownCommand(text).into_pgwire()),
        }
    }

    fn get_parameter_types(&self, _command: &Command) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        command: &Command,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(
            &report::columns(command),
            format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

/// Every column is text; `format` is what the client asked for in Bind
/// (binary text is the same bytes).
fn fields(columns: &[&str], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            FieldInfo::new(
                (*name).to_owned(),
                None,
                None,
                Type::TEXT,
                format.format_for(i),
            )
        })
        .collect()
}

/// A result set as pgwire's response; pgwire appends the row count to the
/// tag and writes RowDescription (simple protocol) and the rows.
fn response(answer: Option<ResultSet>, format: &Format) -> PgWireResult<Response> {
    let Some(set) = answer else {
        return Ok(Response::EmptyQuery);
    };
    let schema = Arc::new(fields(&set.columns, format));
    let mut encoder = DataRowEncoder::new(Arc::clone(&schema));
    let mut rows = Vec::with_capacity(set.rows.len());
    for row in &set.rows {
        for value in row {
            encoder.encode_field(value)?;
        }
        rows.push(Ok(encoder.take_row()));
    }
    let mut response = QueryResponse::new(schema, futures_util::stream::iter(rows));
    response.set_command_tag(set.tag);
    Ok(Response::Query(response))
}
