//! The one API error type and its envelope `{"code","message","details"}` (API reference,
//! "Error Codes"). Every failure of every route ends here; `details` never carries internals
//! (SQL, stack traces, RPC errors): those go to the log with the request id.
//!
//! Also the envelope handlers the server installs, so that what actix itself refuses (a body
//! that is not JSON or too large, a bad query or path parameter, an unrouted path, any plain-text
//! error) reaches the client in the same envelope.

use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use facilitator_actors::error::ServiceError;
use serde::Serialize;

/// `Retry-After` of a verify or settle that failed because no RPC endpoint of its network
/// answered: long enough for a node to come back or a failover to settle (the background
/// probe re-checks every endpoint each `rpc.probe_interval_ms`), short enough for a waiting
/// buyer.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// The seed's error codes, plus the few a production REST API needs besides them.
///
/// Error codes and their HTTP statuses: `INVALID_REQUEST`, `INVALID_PAYLOAD` 400;
/// `UNAUTHORIZED` 401; `FORBIDDEN` 403; `NOT_FOUND` 404; `METHOD_NOT_ALLOWED` 405;
/// `REQUEST_TIMEOUT` 408; `CONFLICT`, `LIMIT_EXCEEDED` 409; `PAYLOAD_TOO_LARGE` 413; `UNSUPPORTED_MEDIA_TYPE` 415;
/// `TOO_MANY_REQUESTS` 429 (with `Retry-After`);
/// `VERIFICATION_FAILED`, `SETTLEMENT_FAILED`, `INTERNAL_ERROR` 500;
/// `SERVICE_UNAVAILABLE` 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidPayload,
    VerificationFailed,
    SettlementFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    /// An account is at one of its caps (keys, resources).
    LimitExceeded,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidPayload => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict | ErrorCode::LimitExceeded => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::VerificationFailed
            | ErrorCode::SettlementFailed
            | ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error envelope: every failure of every route answers this.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "code": "INVALID_REQUEST",
    "message": "Invalid request format",
    "details": "missing field `email`"
}))]
pub struct ApiError {
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
    /// Extra detail; empty when there is none.
    pub details: String,
    /// Response headers that go with this error (`Retry-After`, `RateLimit-*`); not part of
    /// the body.
    #[serde(skip)]
    #[schema(ignore)]
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: details.into(),
            headers: Vec::new(),
        }
    }

    /// Ask the client to come back after `secs` (the `Retry-After` header).
    pub fn retry_after(self, secs: u64) -> Self {
        self.with_header("Retry-After", secs.to_string())
    }

    /// A verify or settle that failed on our side, answered with the operation's seed code
    /// (`VERIFICATION_FAILED` / `SETTLEMENT_FAILED`, HTTP 500). When the cause is that no RPC
    /// endpoint of the network answered in time (`ServiceError::Unavailable`), `details` says
    /// so and `Retry-After` tells the client when trying again makes sense; any other cause
    /// stays in the log.
    pub fn x402_failure(
        e: &ServiceError,
        code: ErrorCode,
        message: &'static str,
        network: &str,
    ) -> Self {
        match e {
            ServiceError::Unavailable(_) => {
                let network: String = network.chars().take(64).collect();
                Self::new(
                    code,
                    message,
                    format!(
                        "network {network} is unavailable: no RPC endpoint answered in time; \
                         retry later"
                    ),
                )
                .retry_after(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            e if database_unavailable(e) => Self::new(code, message, DATABASE_UNAVAILABLE)
                .retry_after(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => Self::new(code, message, ""),
        }
    }

    /// Add a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 429 `TOO_MANY_REQUESTS` with `Retry-After` (whole seconds, rounded up, at least 1).
    pub fn too_many_requests(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let secs = retry_after_secs(retry_after);
        Self::new(
            ErrorCode::TooManyRequests,
            message,
            format!("retry after {secs} s"),
        )
        .with_header("Retry-After", secs.to_string())
    }

    pub fn invalid_request(details: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, "Invalid request format", details)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message, "")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message, "")
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "Internal server error", "")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        for (name, value) in &self.headers {
            res.insert_header((*name, value.as_str()));
        }
        res.json(self)
    }
}

/// Service errors map to the wire in one exhaustive match: a new variant does not compile
/// until someone chooses its code.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidInput(details) => ApiError::invalid_request(details),
            ServiceError::InvalidCredentials => ApiError::unauthorized("Invalid email or password"),
            ServiceError::InvalidSession(details) => {
                ApiError::new(ErrorCode::Unauthorized, "invalid session token", details)
            }
            ServiceError::Unauthorized(message) => ApiError::unauthorized(message),
            ServiceError::Forbidden(message) => ApiError::new(ErrorCode::Forbidden, message, ""),
            ServiceError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ServiceError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message, ""),
            ServiceError::LimitExceeded(message) => {
                ApiError::new(ErrorCode::LimitExceeded, message, "")
            }
            ServiceError::Unavailable(cause) => {
                // The cause may name an endpoint: it goes to the log, not to the client.
                tracing::warn!(error = %cause, "unavailable");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "Service temporarily unavailable",
                    "",
                )
                .retry_after(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            ServiceError::NoSigner(why) => ApiError::new(
                ErrorCode::SettlementFailed,
                "Payment settlement failed",
                why,
            )
            .with_header("Retry-After", "5"),
            ServiceError::TooManyRequests {
                message,
                retry_after,
            } => ApiError::too_many_requests(message, retry_after),
            e if database_unavailable(&e) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "Service temporarily unavailable",
                    DATABASE_UNAVAILABLE,
                )
                .retry_after(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            e @ (ServiceError::Database(_)
            | ServiceError::Mailbox(_)
            | ServiceError::Corrupt { .. }
            | ServiceError::Task(_)
            | ServiceError::Jwt(_)
            | ServiceError::TokenLifetime(_)
            | ServiceError::PasswordHash(_)
            | ServiceError::LedgerRowGone(_)) => {
                tracing::error!(error = %e, "internal error");
                ApiError::internal()
            }
        }
    }
}

const DATABASE_UNAVAILABLE: &str =
    "the database did not answer in time; retry later (a settle with the same Idempotency-Key)";

/// A database that does not answer (no connection within the pool's bound, or the connection
/// broke), as opposed to a query it refused.
fn database_unavailable(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Database(sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_))
    )
}

/// `Retry-After` seconds: rounded up, never 0 (a client told "0" would retry at once).
pub fn retry_after_secs(d: std::time::Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The envelope for a body that could not be read: over the limit (413), not complete in time
/// (408), or broken (400).
pub fn payload_error(err: &PayloadError, limit: Option<usize>) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "Request body too large",
            limit
                .map(|l| format!("limit is {l} bytes"))
                .unwrap_or_default(),
        ),
        PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            ErrorCode::RequestTimeout,
            "Request body not received in time",
            "",
        ),
        _ => ApiError::invalid_request("the body could not be read"),
    }
}

/// The JSON extractor's error handler (`web::JsonConfig::error_handler`) for bodies of at
/// most `limit` bytes.
pub fn json_error(
    limit: usize,
) -> impl Fn(JsonPayloadError, &HttpRequest) -> actix_web::Error + Send + Sync + 'static {
    move |err, _| {
        let api = match &err {
            JsonPayloadError::ContentType => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Content-Type must be application/json",
                "",
            ),
            JsonPayloadError::Overflow { limit }
            | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                "Request body too large",
                format!("limit is {limit} bytes"),
            ),
            JsonPayloadError::Payload(e) => payload_error(e, Some(limit)),
            JsonPayloadError::Deserialize(e) => ApiError::invalid_request(e.to_string()),
            _ => ApiError::invalid_request("the body could not be read as JSON"),
        };
        api.into()
    }
}

/// The query extractor's error handler (`web::QueryConfig::error_handler`).
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "Invalid query parameters",
        err.to_string(),
    )
    .into()
}

/// The path extractor's error handler (`web::PathConfig::error_handler`).
pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "Invalid path parameter",
        err.to_string(),
    )
    .into()
}

/// Any error response not already in our envelope (actix's own plain-text errors) is
/// rewritten into it, so clients never see a non-JSON error body.
pub fn envelope_fallback<B: 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::ServiceUnavailable,
        s if s < 500 => ErrorCode::InvalidRequest,
        _ => ErrorCode::InternalError,
    };
    let message = status.canonical_reason().unwrap_or("Error").to_owned();
    let (req, _) = res.into_parts();
    let body = serde_json::to_string(&ApiError::new(code, message, "")).unwrap_or_default();
    let response = HttpResponse::build(status)
        .content_type("application/json")
        .body(body);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
