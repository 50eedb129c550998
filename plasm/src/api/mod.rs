//! The HTTP API (axum): a thin mapping of routes onto the [`Service`].
//!
//! Every error is JSON `{"error": {"code", "message"}}` with a status that says
//! what went wrong; internals are logged, never returned. With a token file every
//! route but `/healthz` and `POST /v1/receipts/verify` needs a bearer token whose
//! scopes cover it (`read` for GET, `submit` for POST/PUT, `admin` for PATCH and
//! everything else).

pub mod clients;
pub mod dashboard;
pub mod metrics;
pub mod origin;
pub mod serve;

pub use metrics::ApiMetrics;
pub use origin::OriginPolicy;
pub use serve::{ApiServer, TlsFiles};

use crate::receipt::Receipt;
use crate::service::{Placement, Service, ServiceError, Submission};
use crate::store::JobRow;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body (a base64 module and input of 16 MiB each, plus the manifest).
pub const MAX_BODY_BYTES: usize = 48 * 1024 * 1024;
/// Largest body `POST /v1/receipts/verify` takes (unauthenticated): far above
/// any receipt plasm writes (about 1.5 KiB; `detail` is bounded), far below a job.
pub const MAX_RECEIPT_BYTES: usize = 64 * 1024;
/// Longest a `?wait=true` request is held.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Unreadable file.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Group or others may read the file (as ssh refuses a private key that is too open).
    #[error(
        "token file {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `<token> <scope>[,<scope>...]` with known scopes.
    #[error(
        "token file line {line}: expected `<token> <scope>[,<scope>]`: a token of at least 16 characters (e.g. from `openssl rand -hex 16`), then scopes among submit, read, admin"
    )]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
}

/// API tokens, kept as SHA-256 digests with their scopes.
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<[u8; 32], Vec<String>>);

impl Tokens {
    /// Parses a token file: one `<token> <scope>[,<scope>...]` per line, `#` comments.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(token), Some(scopes), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(TokenError::Syntax { line: i + 1 });
            };
            let scopes: Vec<String> = scopes.split(',').map(str::to_owned).collect();
            if token.len() < 16
                || scopes
                    .iter()
                    .any(|s| !["submit", "read", "admin"].contains(&s.as_str()))
            {
                return Err(TokenError::Syntax { line: i + 1 });
            }
            map.insert(Sha256::digest(token.as_bytes()).into(), scopes);
        }
        Ok(Self(map))
    }

    /// Reads a token file, refusing one that group or others can read or write:
    /// the tokens are credentials, and a file any local user can read leaks them.
    pub fn load(path: &std::path::Path) -> Result<Self, TokenError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| TokenError::Io {
            path: path.display().to_string(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::TooOpen {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text)
    }

    fn scopes(&self, token: &str) -> Option<&Vec<String>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0.get(&digest)
    }
}

/// Shared state of the API.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The service.
    pub service: Arc<Service>,
    /// Tokens, when required.
    pub tokens: Option<Arc<Tokens>>,
    /// Labels this node advertises.
    pub labels: Vec<String>,
    /// Metrics served on `/metrics`.
    pub metrics: Arc<ApiMetrics>,
    /// KiB of submission bodies being read and decoded at once ([`SUBMISSION_BUDGET_KIB`]).
    pub submissions: Arc<tokio::sync::Semaphore>,
    /// Event streams open at once ([`MAX_STREAMS`]).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Which browsers may call ([`origin`]).
    pub origin: OriginPolicy,
    /// What each client holds of the budget and the streams ([`clients`]).
    pub clients: Arc<clients::Clients>,
}

/// Event streams (`/v1/events`, `/v1/jobs/{id}/events`) a node serves at once;
/// one more is answered 429.
pub const MAX_STREAMS: usize = 256;

/// Most jobs `GET /v1/jobs` lists.
pub const MAX_LIST: usize = 500;

/// Memory for job submissions being read and decoded at once, in KiB: a body
/// takes [`DECODE_FACTOR`] times its `Content-Length` (or of the 48 MiB maximum)
/// from it before it is read, and a submission that does not fit is answered 429
/// before it costs memory.
pub const SUBMISSION_BUDGET_KIB: usize = 256 * 1024;

/// What decoding a submission holds at its peak, in multiples of the body: the
/// JSON text, the base64 strings parsed out of it, and the decoded bytes.
pub const DECODE_FACTOR: usize = 3;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed"),
            ServiceError::InvalidManifest { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest")
            }
            ServiceError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ServiceError::LimitExceeded(_) => (StatusCode::UNPROCESSABLE_ENTITY, "over_maximum"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Duplicate(_) => (StatusCode::CONFLICT, "replayed_nonce"),
            ServiceError::Busy => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            ServiceError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            ServiceError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            ServiceError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, e.to_string())
    }
}

fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "too_large",
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", r.body_text())
    }
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    // The one route open to anyone takes receipts only, not 48 MiB job bodies.
    let receipt_limit = DefaultBodyLimit::max(MAX_RECEIPT_BYTES);
    Router::new()
        .route("/", get(dashboard::page))
        .route("/ui/{file}", get(dashboard::asset))
        .route("/v1/jobs", post(submit))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/events", get(all_events))
        .route("/v1/served", get(list_served))
        .route("/v1/jobs/{job_id}", get(get_job).delete(cancel_job))
        .route("/v1/jobs/{job_id}/output", get(get_output))
        .route("/v1/jobs/{job_id}/events", get(job_events))
        .route("/v1/modules", put(put_module))
        .route("/v1/modules/{sha256}", get(get_module))
        .route("/v1/receipts/verify", post(verify).layer(receipt_limit))
        .route("/v1/receipts/audit", post(audit))
        .route("/v1/receipts/{job_id}", get(get_receipt))
        .route("/v1/receipts/{job_id}/audits", get(get_audits))
        .route("/v1/node", get(node))
        .route("/v1/node/capacity", patch(set_capacity))
        .route("/v1/peers", get(peers))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // Errors are JSON, a wrong method's too (axum keeps the `Allow` header).
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Token check and request timing, around every route.
async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    if let Err(e) = state.origin.check(request.headers()) {
        tracing::debug!(error = %e, "request refused by the origin policy");
        state.metrics.origin_refused.inc();
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", e.to_string())
            .into_response();
    }
    // The dashboard's page and assets hold no data of their own (the page shows
    // the node's status only when the node has no token file): open, like healthz.
    let open = route == "/healthz"
        || route == "/"
        || route == "/ui/{file}"
        || (route == "/v1/receipts/verify" && request.method() == Method::POST);
    if let (Some(tokens), false) = (&state.tokens, open) {
        let needed = match *request.method() {
            Method::GET | Method::HEAD => "read",
            Method::POST | Method::PUT | Method::DELETE => "submit",
            _ => "admin",
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        match presented.and_then(|t| tokens.scopes(t)) {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token is required",
                )
                .into_response();
            }
            Some(scopes) if !scopes.iter().any(|s| s == needed || s == "admin") => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this token lacks the {needed} scope"),
                )
                .into_response();
            }
            Some(_) => {}
        }
    }
    let mut request = request;
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .filter(|_| state.tokens.is_some());
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let key = clients::ClientKey::new(token, peer);
    request.extensions_mut().insert(key);
    let response = next.run(request).await;
    state
        .metrics
        .observe(&route, started.elapsed().as_secs_f64());
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    manifest: Value,
    module: Option<String>,
    input: Option<String>,
    placement: Option<String>,
    /// Publish the manifest and input so anyone can audit the job (decision 0057).
    #[serde(default)]
    publish: bool,
}

fn decode_b64(field: &str, s: Option<String>) -> Result<Option<Vec<u8>>, ApiError> {
    s.map(|s| B64.decode(s.as_bytes()))
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("`{field}` is not base64: {e}"),
            )
        })
}

pub(crate) fn job_json(row: &JobRow) -> Value {
    let receipt = row
        .receipt
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok());
    let exit_status = receipt
        .as_ref()
        .and_then(Value::as_object)
        .and_then(crate::job::receipt_exit_status);
    // Stored as succeeded means "ended with a verified receipt"; it is reported as
    // succeeded only when `plasm run` would exit 0 for it (rows of older releases too).
    let state = match (row.state, exit_status) {
        (crate::store::JobState::Succeeded, Some(0)) => "succeeded",
        (crate::store::JobState::Succeeded, _) => "failed",
        (s, _) => s.as_str(),
    };
    json!({
        "job_id": row.job_id,
        "state": state,
        "outcome": receipt.as_ref().and_then(|r| r["outcome"].as_str()),
        "exit_status": exit_status,
        // What was asked for, where it ran and which way its bytes went.
        "placement": {
            "requested": row.placement,
            "executor": row.executor,
            "path": row.path,
            "relay": row.relay,
        },
        "executor": row.executor,
        "submitted_at": row.submitted_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": row.error,
        "attempts": row
            .attempts
            .as_deref()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .unwrap_or_else(|| json!([])),
        "receipt": receipt,
    })
}

async fn submit(
    State(state): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    axum::Extension(client): axum::Extension<clients::ClientKey>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // The body's share of the budget is taken before a byte of it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(MAX_BODY_BYTES)
        .min(MAX_BODY_BYTES);
    // Decoding holds about three times the body: the text, its strings, the bytes.
    let kib = u32::try_from((declared * DECODE_FACTOR).div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let budget = state
        .submissions
        .clone()
        .try_acquire_many_owned(kib)
        .map_err(|_| {
            state.service.metrics.overloaded.inc();
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "too many submission bytes are being received at once; retry later",
            )
        })?;
    // One client holds at most its share of the budget.
    let _share = state.clients.budget(&client, kib).ok_or_else(|| {
        state.service.metrics.overloaded.inc();
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "this client is already sending submissions that hold {} MiB of the decode budget (its share); retry when they are done",
                clients::MAX_KIB_PER_CLIENT / 1024
            ),
        )
    })?;
    // Never more than was charged to the budget, and at a minimum rate.
    let body = read_body(body, declared).await?;
    // Parsing up to 48 MiB of JSON and decoding base64: off the async threads.
    let sub = tokio::task::spawn_blocking(move || decode_submission(&body))
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal))??;
    let wait = match q.get("wait").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "wait must be true or false",
            ));
        }
    };
    let job_id = state.service.submit(sub).await?;
    // Decoded and recorded: the bytes now count against the queue or the remote
    // bounds, not the decode budget (a `?wait=true` client may hold on for 60 s).
    drop(budget);
    if wait {
        let row = state.service.wait(&job_id, MAX_WAIT).await?;
        let done = matches!(
            row.state,
            crate::store::JobState::Succeeded | crate::store::JobState::Failed
        );
        let status = if done {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        return Ok((status, Json(job_json(&row))).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job_id, "state": "queued"})),
    )
        .into_response())
}

/// Reads a body of at most `limit` bytes that keeps up [`clients::MIN_BODY_RATE`]
/// after [`clients::BODY_GRACE`]: a client trickling bytes is cut off (408)
/// instead of holding its share of the decode budget for ever.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let started = Instant::now();
    let too_slow = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "too_slow",
            format!(
                "the request body arrived slower than {} KiB/s after the first {} s; send it faster",
                clients::MIN_BODY_RATE / 1024,
                clients::BODY_GRACE.as_secs()
            ),
        )
    };
    // The byte count the client must have sent by now.
    let owed = |elapsed: Duration| {
        elapsed
            .saturating_sub(clients::BODY_GRACE)
            .as_millis()
            .saturating_mul(u128::from(clients::MIN_BODY_RATE))
            / 1000
    };
    let mut body = body;
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    loop {
        // Wait at most until the moment the client falls behind the rate.
        let received = out.len() as u128;
        let mut wait = clients::BODY_GRACE;
        while owed(started.elapsed() + wait) > received && wait > Duration::from_millis(10) {
            wait /= 2;
        }
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("request body: {e}"),
                ));
            }
            Ok(None) => break,
            Err(_) => {
                if owed(started.elapsed()) > out.len() as u128 {
                    return Err(too_slow());
                }
                continue;
            }
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("request body exceeds {MAX_BODY_BYTES} bytes"),
                ));
            }
            out.extend_from_slice(&data);
        }
        if owed(started.elapsed()) > out.len() as u128 {
            return Err(too_slow());
        }
    }
    Ok(Bytes::from(out))
}

/// Parses a submission body (on the blocking pool).
fn decode_submission(body: &[u8]) -> Result<Submission, ApiError> {
    let malformed = |e: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("request body: {e}"),
        )
    };
    // Strict: a member named twice (in the manifest or around it) is refused,
    // not read as its last copy (decision 0047).
    let text = std::str::from_utf8(body).map_err(|e| malformed(e.to_string()))?;
    let value = crate::jcs::parse_strict(text).map_err(|e| malformed(e.to_string()))?;
    let b: SubmitBody = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    let placement = match b.placement.as_deref() {
        None => Placement::Any,
        Some(p) => Placement::parse(p).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "placement must be local, remote or any",
            )
        })?,
    };
    Ok(Submission {
        manifest: b.manifest,
        module: decode_b64("module", b.module)?,
        input: decode_b64("input", b.input)?.unwrap_or_default(),
        placement,
        publish: b.publish,
    })
}

async fn get_job(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&state.service.job(&job_id).await?)))
}

/// `DELETE /v1/jobs/{id}`: cancels a queued or running job (202), 409 when it
/// has finished, 404 when unknown.
async fn cancel_job(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.service.cancel(&job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job_id, "state": "cancelling"})),
    ))
}

async fn get_output(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state.service.job(&job_id).await?;
    let store = state.service.store().clone();
    let out = tokio::task::spawn_blocking(move || store.output(&row.job_id))
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal))?
        .map_err(ServiceError::from)?;
    match out {
        Some(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no output: the job has not finished, failed, or its output expired",
        )),
    }
}

/// A slot for one event stream, or 429.
fn stream_permit(
    state: &ApiState,
    client: &clients::ClientKey,
) -> Result<(tokio::sync::OwnedSemaphorePermit, clients::Lease), ApiError> {
    let mine = state.clients.stream(client).ok_or_else(|| {
        state.metrics.streams_refused.inc();
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "this client holds {} event streams already (its share); close one first",
                clients::MAX_STREAMS_PER_CLIENT
            ),
        )
    })?;
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        state.metrics.streams_refused.inc();
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("this node serves {MAX_STREAMS} event streams at once"),
        )
    })?;
    Ok((permit, mine))
}

/// Ends a stream after [`clients::STREAM_IDLE`] without an item (keep-alives
/// are not items): a client that stopped reading frees its slot.
fn idle_bounded<S: futures::Stream + Send + 'static>(
    stream: S,
) -> impl futures::Stream<Item = S::Item> + Send {
    use futures::StreamExt;
    let stream = Box::pin(stream);
    futures::stream::unfold(stream, |mut s| async move {
        match tokio::time::timeout(clients::STREAM_IDLE, s.next()).await {
            Ok(Some(item)) => Some((item, s)),
            _ => None,
        }
    })
}

/// The `Last-Event-ID` a reconnecting client sent (ignored when not a number).
fn last_event_id(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn state_event(ev: &crate::service::JobEvent) -> Option<Event> {
    Event::default()
        .event("state")
        .id(ev.id.to_string())
        .json_data(ev)
        .ok()
}

fn is_final(state: &str) -> bool {
    state == "succeeded" || state == "failed"
}

/// `GET /v1/jobs/{id}/events`: the job's current state, then each change until
/// it ends. A client reconnecting with `Last-Event-ID` at least the job's latest
/// event id is not sent that state again.
async fn job_events(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
    axum::Extension(client): axum::Extension<clients::ClientKey>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let permit = stream_permit(&state, &client)?;
    let live = state.service.subscribe(&job_id);
    let current = state.service.job(&job_id).await?;
    let seen = match (&live, last_event_id(&headers)) {
        (Some((_, latest)), Some(last)) => *latest > 0 && last >= *latest,
        _ => false,
    };
    let first = if seen {
        None
    } else {
        let mut e = Event::default()
            .event("state")
            .json_data(job_json(&current))
            .map_err(|_| ServiceError::Internal)?;
        if let Some((_, latest)) = &live {
            e = e.id(latest.to_string());
        }
        Some(e)
    };
    // A job that has ended (or ends before we listen) has nothing more to say.
    let rx = if is_final(current.state.as_str()) {
        None
    } else {
        live.map(|(rx, _)| rx)
    };
    let stream =
        futures::stream::unfold((first, rx, permit), |(first, mut rx, permit)| async move {
            if let Some(e) = first {
                return Some((Ok::<_, std::convert::Infallible>(e), (None, rx, permit)));
            }
            let r = rx.as_mut()?;
            loop {
                match r.recv().await {
                    Ok(ev) => {
                        let event = state_event(&ev)?;
                        let rx = if is_final(&ev.state) { None } else { rx };
                        return Some((Ok(event), (None, rx, permit)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        });
    Ok(Sse::new(idle_bounded(stream))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/events`: every job's state changes on this node, as they happen.
/// With `Last-Event-ID`, the held events after it come first; when some were
/// already dropped (or the client falls behind), a `reset` event tells it to
/// reload the job list.
async fn all_events(
    State(state): State<ApiState>,
    axum::Extension(client): axum::Extension<clients::ClientKey>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let permit = stream_permit(&state, &client)?;
    let sub = state
        .service
        .subscribe_all(last_event_id(&headers))
        .ok_or(ServiceError::Internal)?;
    let reset = || Event::default().event("reset").data("reload the job list");
    let mut first: std::collections::VecDeque<Event> =
        sub.replay.iter().filter_map(state_event).collect();
    if !sub.complete {
        first.push_front(reset());
    }
    let stream = futures::stream::unfold(
        (first, sub.live, permit),
        move |(mut first, mut rx, permit)| async move {
            if let Some(e) = first.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(e), (first, rx, permit)));
            }
            let event = match rx.recv().await {
                Ok(ev) => state_event(&ev)?,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().event("reset").data("reload the job list")
                }
                Err(_) => return None,
            };
            Some((Ok(event), (first, rx, permit)))
        },
    );
    Ok(Sse::new(idle_bounded(stream))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/jobs?limit=N`: the newest jobs, newest first (default 50).
/// `?limit=N` of a list (default 50, at most [`MAX_LIST`]); no other parameter.
fn list_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    let limit = match q.get("limit") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("limit must be an integer from 1 to {MAX_LIST}"),
                )
            })?,
    };
    if let Some(k) = q.keys().find(|k| *k != "limit") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("unknown query parameter {k:?}; expected limit"),
        ));
    }
    Ok(limit)
}

async fn list_jobs(
    State(state): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let jobs = state.service.recent_jobs(list_limit(&q)?).await?;
    Ok(Json(
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
    ))
}

/// One job this node ran for a peer, as the API shows it.
pub(crate) fn served_json(j: &crate::job::ServedJob) -> Value {
    json!({
        "job_id": j.job_id,
        "requester": j.requester,
        "outcome": j.outcome,
        "exit_status": j.exit_status,
        "fuel_used": j.fuel_used,
        "path": j.path,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
        "error": j.error,
        "receipt": j.receipt.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
    })
}

/// `GET /v1/served`: the jobs this node ran for peers, newest first.
async fn list_served(
    State(state): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let jobs = state.service.served(list_limit(&q)?).await?;
    Ok(Json(
        json!({"served": jobs.iter().map(served_json).collect::<Vec<_>>()}),
    ))
}

async fn put_module(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    // A module store is for modules: an empty or non-WebAssembly body would only
    // fail later, at every job that names it.
    if !body.starts_with(b"\0asm") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the body is not a WebAssembly module (no \\0asm header)",
        ));
    }
    if body.len() > crate::runtime::instrument::MAX_MODULE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "module too large",
        ));
    }
    let store = state.service.store().clone();
    let sha = tokio::task::spawn_blocking(move || store.put_module(&body))
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal))?
        .map_err(ServiceError::from)?;
    Ok(Json(json!({"sha256": sha})))
}

async fn get_module(
    State(state): State<ApiState>,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.service.store().clone();
    let s = sha.clone();
    let bytes = tokio::task::spawn_blocking(move || store.module(&s))
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal))?
        .map_err(ServiceError::from)?;
    match bytes {
        Some(b) => Ok(([(header::CONTENT_TYPE, "application/wasm")], b).into_response()),
        None => Err(ServiceError::NotFound(format!("module {sha}")).into()),
    }
}

/// A job's receipt: this node's own when it has the job, else the one its
/// submitter accepted, fetched from the peers holding the job's replicas
/// (decision 0056). `?all=true` answers every receipt and record held anywhere
/// asked, with the accepted receipt's digest.
async fn get_receipt(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let all = match q.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("all is true or false, not {other:?}"),
            ));
        }
    };
    let row = match state.service.job(&job_id).await {
        Ok(row) => Some(row),
        Err(ServiceError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let own = row.as_ref().and_then(|r| r.receipt.clone());
    if let (Some(r), false) = (&own, all) {
        return Ok(([(header::CONTENT_TYPE, "application/json")], r.clone()).into_response());
    }
    let valid_id = job_id.len() == 64 && job_id.bytes().all(|b| b.is_ascii_hexdigit());
    let fetched = match (state.service.replicas(), valid_id) {
        (Some(replicas), true) if all => replicas.fetch_all(&job_id).await.ok(),
        (Some(replicas), true) => replicas.fetch(&job_id).await.ok(),
        _ => None,
    };
    if all {
        let mut records = fetched.unwrap_or_default();
        if let Some(r) = own
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            && !records.receipts.contains(&r)
        {
            records.receipts.insert(0, r);
        }
        if records.receipts.is_empty() {
            return Err(no_receipt(&job_id, row.as_ref()));
        }
        return Ok(Json(json!({
            "job_id": job_id,
            "accepted": records.accepted_digest(),
            "receipts": records.receipts,
            "acceptances": records.acceptances,
            "publications": records.publications,
            "audits": records.audits,
        }))
        .into_response());
    }
    if fetched.as_ref().is_some_and(|f| f.conflicting()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "job {job_id}: acceptances signed by different keys name different receipts and no publication says which submitter is real; ?all=true lists them"
            ),
        ));
    }
    match fetched.as_ref().and_then(|f| f.answer()) {
        Some(r) => Ok(Json(r.clone()).into_response()),
        None => Err(no_receipt(&job_id, row.as_ref())),
    }
}

/// The body of `POST /v1/receipts/audit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditBody {
    receipt: Value,
    manifest: Option<Value>,
    module: Option<String>,
    input: Option<String>,
}

/// Runs a receipt's job again here and answers the signed verdict (decision 0057).
async fn audit(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let malformed = |e: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("request body: {e}"),
        )
    };
    let text = std::str::from_utf8(&body).map_err(|e| malformed(e.to_string()))?;
    let value = crate::jcs::parse_strict(text).map_err(|e| malformed(e.to_string()))?;
    let b: AuditBody = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    let Value::Object(receipt) = b.receipt else {
        return Err(malformed("receipt is an object".into()));
    };
    let request = crate::service::audit::AuditRequest {
        receipt: Receipt::from_map(receipt),
        manifest: b.manifest,
        module: decode_b64("module", b.module)?,
        input: decode_b64("input", b.input)?,
    };
    Ok(Json(state.service.audit(request).await?))
}

/// The audits of a job held here or on the peers holding its replicas.
async fn get_audits(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let valid_id = job_id.len() == 64 && job_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "a job id is 64 hex digits",
        ));
    }
    let audits = state.service.audits(&job_id).await?;
    Ok(Json(json!({"job_id": job_id, "audits": audits})))
}

fn no_receipt(job_id: &str, row: Option<&JobRow>) -> ApiError {
    let message = match row {
        Some(row) => format!("job {job_id} has no receipt (state {})", row.state.as_str()),
        None => {
            format!("no receipt for job {job_id} on this node or on the peers holding its replicas")
        }
    };
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

async fn verify(body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a receipt is at most {MAX_RECEIPT_BYTES} bytes"),
            )
        } else {
            body_error(r)
        }
    })?;
    // A body that is not a JSON object is not a receipt at all: a 400, not a verdict.
    // Any object gets a verdict, naming the first check it fails.
    let receipt = std::str::from_utf8(&body)
        .map_err(|_| "the body is not UTF-8".to_owned())
        .and_then(|text| Receipt::from_json(text).map_err(|e| e.to_string()))
        .map_err(|reason| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("not a receipt: {reason}"),
            )
        })?;
    let verdict = receipt.verify();
    Ok(Json(match verdict {
        Ok(v) => {
            json!({"valid": true, "executor": {"peer_id": v.peer_id, "public_key": v.public_key}, "job_id": v.job_id})
        }
        Err(e) => json!({"valid": false, "check": e.check(), "reason": e.to_string()}),
    }))
}

async fn node(State(state): State<ApiState>) -> Json<Value> {
    Json(node_value(&state).await)
}

/// The body of `GET /v1/node` (also what the dashboard's page shows without JavaScript).
pub(crate) async fn node_value(state: &ApiState) -> Value {
    let s = &state.service;
    let info = match s.client() {
        Some(c) => c.info().await.ok(),
        None => None,
    };
    let (workers, queue) = s.pool().map_or((0, 0), |p| p.capacity());
    let stats = s.pool().map(|p| p.stats());
    // Every engine the pool offers; `runtime` is the default one.
    let runtimes: Vec<&str> = s.pool().map_or_else(Vec::new, |p| {
        crate::runtime::engines::EngineName::ALL
            .into_iter()
            .map(crate::runtime::engines::EngineName::as_str)
            .filter(|e| p.runtime().offers(Some(e)))
            .collect()
    });
    let default_runtime = s.pool().map(|p| p.runtime().info().name);
    json!({
        "peer_id": s.identity().peer_id().to_string(),
        "public_key": s.identity().public_key_b64(),
        "listen_addrs": info.as_ref().map(|i| i.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
        "reachability": info.as_ref().map(|i| json!({
            "status": i.reachability,
            "profile": i.profile,
            "hidden": i.hidden,
            "dht_mode": if i.dht_server { "server" } else { "client" },
            "external_addrs": i.external_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "relays": i.relays.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "lan_peers": i.lan_peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "hole_punches": {"attempts": i.stats.hole_punch_attempts, "successes": i.stats.hole_punch_successes},
            "relay_server": {"reservations": i.stats.relay_reservations_held, "circuits_total": i.stats.relay_circuits_accepted},
        })),
        "connected_peers": info.as_ref().map_or(0, |i| i.connected.len()),
        "capabilities": {"runtime": default_runtime, "runtimes": runtimes, "arch": std::env::consts::ARCH, "labels": state.labels, "executes": s.pool().is_some()},
        "capacity": {"workers": workers, "queue": queue, "queued": stats.map_or(0, |x| x.queued), "running": stats.map_or(0, |x| x.running)},
        "sandbox": s.pool().and_then(|p| p.runtime().isolation()).map(|r| json!({
            "summary": r.summary(),
            "worker_processes": r.process,
            "seccomp": r.seccomp,
            "landlock": r.landlock,
            "no_new_privs": r.no_new_privs,
            "memory_limit_bytes": r.memory_limit_bytes,
            "env_cleared": r.env_cleared,
            "notes": r.notes,
        })),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// `PATCH /v1/node/capacity`: an object whose members, when present, are integers
/// (serde would also take `[5, 7]` as a struct and `null` as absent; neither is
/// what the API documents).
fn capacity_body(body: &[u8]) -> Result<(Option<usize>, Option<usize>), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("request body: {e}"))?;
    let v = crate::jcs::parse_strict(text).map_err(|e| format!("request body: {e}"))?;
    let Value::Object(m) = v else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(k) = m.keys().find(|k| *k != "workers" && *k != "queue") {
        return Err(format!("unknown field {k:?}; expected workers, queue"));
    }
    let field = |k: &str| -> Result<Option<usize>, String> {
        match m.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("{k} must be a non-negative integer")),
        }
    };
    Ok((field("workers")?, field("queue")?))
}

/// The longest queue `PATCH /v1/node/capacity` accepts (the pool's channel bound).
const MAX_QUEUE: usize = 65_536;

async fn set_capacity(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let (want_workers, want_queue) =
        capacity_body(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e))?;
    let pool = state.service.pool().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "this node does not execute jobs",
        )
    })?;
    let (workers, queue) = pool.capacity();
    let (workers, queue) = (want_workers.unwrap_or(workers), want_queue.unwrap_or(queue));
    if workers == 0 || workers > 256 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "workers must be 1 to 256",
        ));
    }
    if queue > MAX_QUEUE {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            format!("queue must be 0 to {MAX_QUEUE}"),
        ));
    }
    pool.set_capacity(workers, queue).map_err(|e| {
        tracing::error!(error = %e, "resizing the pool");
        ApiError::from(ServiceError::Internal)
    })?;
    let (workers, queue) = pool.capacity();
    tracing::info!(workers, queue, "capacity changed");
    Ok(Json(json!({"workers": workers, "queue": queue})))
}

async fn peers(State(state): State<ApiState>) -> Json<Value> {
    Json(peers_value(&state).await)
}

/// The body of `GET /v1/peers`: connected peers and every peer placement
/// knows, with round trip, breaker, local reliability and last score.
pub(crate) async fn peers_value(state: &ApiState) -> Value {
    let mut out = Vec::new();
    let placed: HashMap<String, crate::sched::PeerState> = state
        .service
        .scheduler()
        .snapshot()
        .into_iter()
        .map(|p| (p.peer.to_string(), p))
        .collect();
    let row = |peer: String, connected: bool, rtt: Option<f64>| {
        let p = placed.get(&peer);
        json!({
            "peer_id": peer,
            "connected": connected,
            "rtt_ms": rtt,
            "score": p.and_then(|p| p.score).map(|s| (s * 10.0).round() / 10.0),
            "breaker": p.map_or("closed", |p| p.breaker.as_str()),
            "breaker_trips": p.map_or(0, |p| p.trips),
            "reliability": p.map(|p| (p.reliability * 1000.0).round() / 1000.0),
            "jobs_out": p.map_or(0, |p| p.outstanding),
        })
    };
    if let Some(c) = state.service.client()
        && let Ok(info) = c.info().await
    {
        for p in info.connected {
            let rtt = c
                .rtt(p)
                .await
                .ok()
                .flatten()
                .map(|d| d.as_secs_f64() * 1000.0);
            out.push(row(p.to_string(), true, rtt));
        }
    }
    let seen: std::collections::HashSet<String> = out
        .iter()
        .filter_map(|v| v["peer_id"].as_str().map(str::to_owned))
        .collect();
    let mut rest: Vec<&String> = placed.keys().filter(|p| !seen.contains(*p)).collect();
    rest.sort();
    for p in rest {
        out.push(row(p.clone(), false, None));
    }
    json!({"peers": out})
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let text = state.metrics.render(&state.service).await;
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}
