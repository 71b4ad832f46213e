//! Arrow Flight SQL on `serve --flight-sql-listen ADDR`: ADBC and JDBC clients (Python's
//! `adbc-driver-flightsql`, DBeaver, Grafana's Flight SQL data source) query the same SQL layer
//! as `POST /api/v1/sql`, with the same API keys, scopes, deployment limits and query budgets.
//!
//! A caller sends its key on every call as `authorization: Bearer <key>`, or once through the
//! Flight handshake as basic auth with the key as password (what JDBC's user and password
//! fields do), which answers with the bearer token to send from then on. Statements and
//! prepared statements are stateless: their handle is the SQL text itself, planned again when
//! the answer is fetched, so any server of a cluster can answer any ticket.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo, SqlSupportedTransaction,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use driftline_query::sql::{self, SqlError, SqlLimits};
use driftline_store::{Scope, Store};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{KeyCache, Principal};

/// What the Flight SQL service shares with the HTTP API.
#[derive(Clone)]
pub(crate) struct FlightSql {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: KeyCache,
    pub(crate) limits: SqlLimits,
    /// The same permits as `POST /api/v1/sql`: the server runs that many queries at once, however
    /// they come.
    pub(crate) permits: Arc<Semaphore>,
}

type Answer = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The gRPC status of a query's failure.
fn status(e: SqlError) -> Status {
    match e {
        SqlError::Query(m) => Status::invalid_argument(format!("sql: {m}")),
        SqlError::Limit(m) => Status::resource_exhausted(m),
        SqlError::Failed(m) => Status::unavailable(format!("the query failed: {m}")),
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// What the server says of itself to `GetSqlInfo`.
fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "driftline");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.build().expect("the server's SQL info is well formed")
    })
}

impl FlightSql {
    /// The caller of `request`, who must hold a key with read scope.
    fn caller<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authorize(&request.metadata().clone().into_headers())
    }

    /// Who the bearer key in `headers` belongs to, if its scope allows reading.
    fn authorize(&self, headers: &HeaderMap) -> Result<Principal, Status> {
        let principal = self.keys.authenticate(headers).map_err(|p| Status::unauthenticated(p.detail()))?;
        principal.require(Scope::Read).map_err(|p| Status::permission_denied(p.detail()))?;
        Ok(principal)
    }

    /// The `FlightInfo` of a catalog `command` whose answer has `schema`, for a caller who may read.
    fn catalog_info(
        &self,
        command: impl ProstMessageExt,
        schema: &Schema,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        Ok(Response::new(Self::info(schema, command, request.into_inner())?))
    }

    /// Plans `sql` for `principal`.
    async fn plan(&self, principal: &Principal, sql: &str) -> Result<sql::Planned, Status> {
        let ctx = sql::session(self.store.clone(), principal.deployment.clone(), &self.limits).map_err(status)?;
        sql::plan(&ctx, sql, &self.limits).await.map_err(status)
    }

    /// Where to fetch an answer of `schema`: one endpoint on this server, with `ticket`.
    fn info(schema: &Schema, ticket: impl ProstMessageExt, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| internal("encoding the answer's schema", e))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }

    /// Runs the statement `handle` (SQL text) and streams its answer.
    async fn answer(&self, principal: &Principal, handle: &[u8]) -> Result<Response<Answer>, Status> {
        let sql = std::str::from_utf8(handle)
            .map_err(|_| Status::invalid_argument("the statement handle is not the UTF-8 text of a SQL statement"))?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::unavailable("as many SQL queries as the server runs at once are running; retry in a moment")
        })?;
        let planned = self.plan(principal, sql).await?;
        let schema = planned.schema.clone();
        let answer = planned.start(&self.limits).await.map_err(status)?;
        // The permit is held until the answer's stream is dropped.
        let batches = answer.batches.map(move |batch| {
            let _held = &permit;
            batch.map_err(|e| FlightError::from(status(e)))
        });
        Ok(Response::new(encode(schema, batches)))
    }

    /// The metadata answer `batch` as a stream.
    fn one(batch: Result<RecordBatch, FlightError>) -> Result<Response<Answer>, Status> {
        let batch = batch.map_err(|e| internal("building the metadata answer", e))?;
        let schema = batch.schema();
        Ok(Response::new(encode(schema, futures::stream::iter([Ok(batch)]))))
    }
}

/// Record batches as Flight data, the schema first even when there are no rows.
fn encode(
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Answer {
    Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from))
}

/// A key that cannot be sent back as a header value.
fn not_text<E>(_: E) -> Status {
    Status::unauthenticated("the key is not valid text")
}

/// The key in a basic-auth `authorization` value: its password (the user name is not used).
fn basic_password(value: &str) -> Option<String> {
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic auth with the key as password answers with the bearer token to send from then on; a
    /// bearer key is checked and echoed.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let value = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no API key; send `authorization: Bearer <key>`, or basic auth with the key as password",
                )
            })?
            .to_string();
        let key = basic_password(&value)
            .or_else(|| value.strip_prefix("Bearer ").map(|k| k.trim().to_string()))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the authorization must be `Bearer <key>`, or basic auth with the key as password",
                )
            })?;
        let bearer = format!("Bearer {key}");
        self.authorize(&HeaderMap::from_iter([(AUTHORIZATION, HeaderValue::try_from(&bearer).map_err(not_text)?)]))?;
        let reply = HandshakeResponse { protocol_version: 0, payload: key.into_bytes().into() };
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", MetadataValue::try_from(&bearer).map_err(not_text)?);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.caller(&request)?;
        let planned = self.plan(&principal, &query.query).await?;
        let ticket = TicketStatementQuery { statement_handle: query.query.into_bytes().into() };
        Ok(Response::new(Self::info(&planned.schema, ticket, request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        let principal = self.caller(&request)?;
        self.answer(&principal, &ticket.statement_handle).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.caller(&request)?;
        let planned = self.plan(&principal, &query.query).await?;
        let IpcMessage(schema) = SchemaAsIpc::new(&planned.schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| internal("encoding the answer's schema", e))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema: schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept for a prepared statement.
        self.caller(&request).map(|_| ())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.caller(&request)?;
        let sql = std::str::from_utf8(&query.prepared_statement_handle)
            .map_err(|_| Status::invalid_argument("the prepared statement handle is not SQL text"))?;
        let planned = self.plan(&principal, sql).await?;
        Ok(Response::new(Self::info(&planned.schema, query, request.into_inner())?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        let principal = self.caller(&request)?;
        self.answer(&principal, &query.prepared_statement_handle).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        self.caller(&request)?;
        let mut catalogs = query.into_builder();
        catalogs.append(sql::CATALOG);
        Self::one(catalogs.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        self.caller(&request)?;
        let mut schemas = query.into_builder();
        schemas.append(sql::CATALOG, sql::SCHEMA);
        Self::one(schemas.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        self.caller(&request)?;
        let mut tables = query.into_builder();
        for (name, schema) in sql::tables() {
            tables
                .append(sql::CATALOG, sql::SCHEMA, name, "TABLE", &schema)
                .map_err(|e| internal("listing the tables", e))?;
        }
        Self::one(tables.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        self.caller(&request)?;
        let mut types = query.into_builder();
        types.append("TABLE");
        Self::one(types.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(sql_info()).schema();
        self.catalog_info(query, &schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<Answer>, Status> {
        self.caller(&request)?;
        Self::one(query.into_builder(sql_info()).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    service: FlightSql,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // A client that stops reading, or never finishes its request, is cut off; answers are
        // bounded by the query's own time budget.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(64))
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_gives_the_password_as_the_key() {
        let value =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("anyone:dl_secret:with:colons"));
        assert_eq!(basic_password(&value).as_deref(), Some("dl_secret:with:colons"));
        assert_eq!(basic_password("Bearer dl_secret"), None);
        assert_eq!(basic_password("Basic !!!"), None);
    }

    #[test]
    fn the_server_says_it_is_read_only() {
        let batch = CommandGetSqlInfo { info: vec![SqlInfo::FlightSqlServerReadOnly as u32] }
            .into_builder(sql_info())
            .build()
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
    }
}
