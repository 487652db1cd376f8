//! The query API over HTTP: `POST /graphql` (JSON), `GET /graphql` (GraphiQL, when enabled) and
//! `GET /graphql/ws` (subscriptions over graphql-ws / graphql-transport-ws).

use std::sync::Arc;

use accounts::sessions::SessionCheck;
use accounts::tokens::TokenKeys;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, EmptyMutation, ErrorExtensions, Schema, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_vocabulary::{ErrorCode, POSITION_HEADER};

use crate::consistency::{parse_position, RequestPosition, Waits};
use crate::error::QueryError;
use crate::schema::carts::CartToken;
use crate::schema::{OrderEvents, QueryRoot, ShopSchema, SubscriptionRoot};
use crate::viewer::{Revocations, Session, Viewer};

/// How long a live session's "not revoked" answer is trusted: a logout on another replica
/// reaches this one within it (the command API uses the same few seconds).
const SESSION_CACHE: std::time::Duration = std::time::Duration::from_secs(5);
use crate::{QueryConfig, ReadModels};

/// The built schema, the token keys and the settings; cheap to clone.
#[derive(Clone)]
pub struct QueryApi(Arc<Inner>);

struct Inner {
    schema: ShopSchema,
    keys: TokenKeys,
    config: QueryConfig,
    /// Signed-out sessions: their access tokens are refused before they expire.
    revocations: Revocations,
}

impl QueryApi {
    /// Builds the schema and starts the order-status feed (needs a Tokio runtime).
    pub fn new(models: ReadModels, keys: TokenKeys, config: QueryConfig) -> QueryApi {
        let feed = OrderEvents::start(models.pool.clone(), config.order_feed_poll);
        let revocations = Revocations {
            check: Arc::new(SessionCheck::new(SESSION_CACHE)),
            pool: models.pool.clone(),
        };
        let mut builder = Schema::build(QueryRoot::default(), EmptyMutation, SubscriptionRoot)
            .data(models)
            .data(feed)
            .data(crate::schema::catalog::MediaUrls {
                base: config.media_base_url.clone(),
            })
            // what a request without its own viewer (none of ours) is
            .data(Viewer::Guest)
            .limit_depth(config.max_depth)
            .limit_complexity(config.max_complexity)
            .limit_recursive_depth(config.max_depth * 2)
            .limit_directives(8);
        if !config.introspection {
            builder = builder.disable_introspection();
        }
        QueryApi(Arc::new(Inner {
            schema: builder.finish(),
            keys,
            config,
            revocations,
        }))
    }

    pub fn schema(&self) -> &ShopSchema {
        &self.0.schema
    }

    /// Runs one request as `viewer`, giving every error without a code one.
    pub async fn execute(
        &self,
        request: async_graphql::Request,
        viewer: Viewer,
        position: RequestPosition,
    ) -> async_graphql::Response {
        self.execute_with_waits(request, viewer, position, Waits::default())
            .await
    }

    /// [`execute`](Self::execute) with the request's read-your-writes bookkeeping given (tests
    /// count its polls).
    pub async fn execute_with_waits(
        &self,
        request: async_graphql::Request,
        viewer: Viewer,
        position: RequestPosition,
        waits: Waits,
    ) -> async_graphql::Response {
        let request = request.data(viewer).data(position).data(waits);
        let mut response = self.0.schema.execute(request).await;
        for error in &mut response.errors {
            give_code(error);
        }
        response
    }
}

/// Errors the engine raises itself (parse, validation, limits) carry no code: give them one.
fn give_code(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_some() {
        return;
    }
    let code = if error.message.contains("too complex") || error.message.contains("too deep") {
        ErrorCode::QueryTooComplex
    } else {
        ErrorCode::Validation
    };
    extensions.set("code", code.as_str());
}

/// `/graphql` and `/graphql/ws`, each request in a request span. A request's `Shop-Position`
/// header ([`POSITION_HEADER`]) is the position the whole request reads at least (read-your-writes).
pub fn router(api: QueryApi) -> Router {
    http_vocabulary::with_request_span(
        Router::new()
            .route("/graphql", get(graphiql).post(graphql))
            .route("/graphql/ws", get(websocket))
            .with_state(api),
    )
}

async fn graphql(State(api): State<QueryApi>, headers: HeaderMap, body: Bytes) -> Response {
    let prepared = match prepare(&api, &headers, &body) {
        Ok((request, viewer, Some(session), position)) => {
            // a signed-out session's token is refused before it expires
            match session.revocable(api.0.revocations.clone()).check().await {
                Ok(()) => Ok((request, viewer, position)),
                Err(error @ QueryError::Unauthorized(_)) => Err((StatusCode::UNAUTHORIZED, error)),
                Err(error) => Err((StatusCode::SERVICE_UNAVAILABLE, error)),
            }
        }
        Ok((request, viewer, None, position)) => Ok((request, viewer, position)),
        Err(failed) => Err(failed),
    };
    match prepared {
        Ok((request, viewer, position)) => {
            let response = api.execute(request, viewer, position).await;
            json(StatusCode::OK, &response)
        }
        Err((status, error)) => {
            let response = async_graphql::Response::from_errors(vec![error
                .extend()
                .into_server_error(async_graphql::Pos::default())]);
            json(status, &response)
        }
    }
}

type Prepared = (
    async_graphql::Request,
    Viewer,
    Option<Session>,
    RequestPosition,
);

/// Reads the viewer, the position and the request, or the HTTP status and error to answer.
fn prepare(
    api: &QueryApi,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Prepared, (StatusCode, QueryError)> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("invalid"));
    let (viewer, session) = Viewer::with_session(authorization, &api.0.keys)
        .map_err(|e| (StatusCode::UNAUTHORIZED, e))?;
    let position = match headers.get(POSITION_HEADER) {
        None => RequestPosition(None),
        Some(value) => RequestPosition(Some(
            value
                .to_str()
                .map_err(|_| QueryError::validation("the Shop-Position header is not text"))
                .and_then(parse_position)
                .map_err(|e| (StatusCode::BAD_REQUEST, e))?,
        )),
    };
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json_content {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            QueryError::validation("send the request as application/json"),
        ));
    }
    // the body holds the query and its variables: allow variables as much room as the query
    let limit = api.0.config.max_query_bytes;
    if body.len() > 2 * limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            QueryError::QueryTooLarge(body.len(), 2 * limit),
        ));
    }
    let request: async_graphql::Request = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            QueryError::validation(format!("the body is not a GraphQL request: {e}")),
        )
    })?;
    if request.query.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            QueryError::QueryTooLarge(request.query.len(), limit),
        ));
    }
    // a guest cart's secret, for `cart(id)` (the command API's header)
    let cart_token = headers
        .get(accounts::cart_tokens::HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let request = request.data(CartToken(cart_token));
    Ok((request, viewer, session, position))
}

fn json(status: StatusCode, response: &async_graphql::Response) -> Response {
    let body = serde_json::to_vec(response).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn graphiql(State(api): State<QueryApi>) -> Response {
    if api.0.config.graphiql {
        Html(GRAPHIQL).into_response()
    } else {
        let error = QueryError::NotFound("GraphiQL is off; POST queries to /graphql".into());
        let response = async_graphql::Response::from_errors(vec![error
            .extend()
            .into_server_error(async_graphql::Pos::default())]);
        json(StatusCode::NOT_FOUND, &response)
    }
}

/// Subscriptions. The token comes from the upgrade request's `Authorization` header or from the
/// `connection_init` payload (`{"Authorization": "Bearer ..."}`), as browsers cannot set headers
/// on a WebSocket.
async fn websocket(
    State(api): State<QueryApi>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("invalid").to_owned());
    let keys = api.0.keys.clone();
    let schema = api.0.schema.clone();
    let revocations = api.0.revocations.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let revocations = revocations.clone();
                    let from_payload = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|key| payload.get(key).and_then(|v| v.as_str()))
                        .map(str::to_owned);
                    let (viewer, session) =
                        Viewer::with_session(from_payload.or(authorization).as_deref(), &keys)
                            .map_err(|e| e.extend())?;
                    let mut data = Data::default();
                    data.insert(viewer);
                    // subscriptions check it again while they run
                    if let Some(session) = session {
                        let session = session.revocable(revocations);
                        session.check().await.map_err(|e| e.extend())?;
                        data.insert(session);
                    }
                    Ok(data)
                })
                .serve()
        })
}

const GRAPHIQL: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>shop GraphiQL</title>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
</head>
<body style="margin:0">
  <div id="graphiql" style="height:100vh"></div>
  <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
  <script>
    const url = new URL('/graphql', location.href).href;
    const fetcher = GraphiQL.createFetcher({
      url,
      subscriptionUrl: url.replace(/^http/, 'ws') + '/ws',
    });
    ReactDOM.createRoot(document.getElementById('graphiql'))
      .render(React.createElement(GraphiQL, { fetcher }));
  </script>
</body>
</html>
"#;
