//! Metrics endpoints: HTTP request rollups (`/api/v1/metrics/*`), settlement rollups
//! (`/api/v1/x402-metrics/*`), and the Prometheus exposition (`/metrics`).
//!
//! The reports are built by `facilitator_actors::metrics::reports`; a handler here reads the
//! query, flushes what the `MetricsActor` holds in memory (so an answer includes every request
//! and settlement acknowledged before it), and answers the report. Regular users see the x402 metrics of
//! their own client keys (revoked ones included: that history is theirs); admins see all. The
//! HTTP metrics are service-wide.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate};
use facilitator_actors::auth::accounts;
use facilitator_actors::metrics::reports::{self, DayRange};
use facilitator_actors::metrics::SignerGauge;
use facilitator_actors::ServiceResult;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::docs::errors;
use super::Data;
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day included: an ISO 8601 date (`YYYY-MM-DD`), or a date-time (its UTC day).
    /// Open when omitted.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day included: an ISO 8601 date (`YYYY-MM-DD`), or a date-time (its UTC day).
    /// Open when omitted.
    #[param(format = Date)]
    to: Option<String>,
}

fn bad_query(details: String) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "Invalid query parameters",
        details,
    )
}

/// An ISO 8601 date (`2026-11-23`) or date-time (`2026-11-23T10:00:00Z`, its UTC day).
fn parse_day(name: &str, value: &str) -> Result<NaiveDate, ApiError> {
    let v = value.trim();
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|d| d.to_utc().date_naive())
        })
        .ok_or_else(|| {
            bad_query(format!(
                "{name}: expected an ISO 8601 date (YYYY-MM-DD) or date-time, got {v:?}"
            ))
        })
}

impl RangeQuery {
    fn resolve(&self) -> Result<DayRange, ApiError> {
        let from = self
            .from
            .as_deref()
            .map(|v| parse_day("from", v))
            .transpose()?;
        let to = self.to.as_deref().map(|v| parse_day("to", v)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(bad_query(format!("from ({f}) is after to ({t})")));
            }
        }
        Ok(DayRange { from, to })
    }
}

async fn flushed(state: &AppState) -> ApiResult<()> {
    state.metrics.flush().await.map_err(|e| {
        tracing::error!(error = %e, "metrics flush before read failed");
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Metrics are temporarily unavailable",
            "",
        )
    })
}

/// A report as answered, `{"data": report}` (keys sorted, as they always were).
fn answer<T: Serialize>(report: ServiceResult<T>) -> ApiResult<HttpResponse> {
    super::data_sorted(report?)
}

/// HTTP metrics by day
///
/// HTTP requests per day, in total and per route (service-wide).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/daily",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::HttpMetricsDaily>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn http_daily(
    state: web::Data<AppState>,
    _: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    flushed(&state).await?;
    answer(reports::http_daily(&state.db, range).await)
}

/// HTTP metrics by month
///
/// HTTP requests per month, in total and per route (service-wide).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/monthly",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::HttpMetricsMonthly>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn http_monthly(
    state: web::Data<AppState>,
    _: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    flushed(&state).await?;
    answer(reports::http_monthly(&state.db, range).await)
}

/// HTTP metrics totals
///
/// HTTP requests over the range (all time by default), in total and per route.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/summary",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::HttpMetricsSummary>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn http_summary(
    state: web::Data<AppState>,
    _: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    flushed(&state).await?;
    answer(reports::http_summary(&state.db, range).await)
}

// ---- x402 metrics ----------------------------------------------------------------------

/// Settlement metrics by day
///
/// Verifications and settlements per day: counts, reasons, amounts settled and gas
/// spent, by network. Users see their own client keys; admins see all.
#[utoipa::path(
    get,
    path = "/api/v1/x402-metrics/daily",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::X402MetricsDaily>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn x402_daily(
    state: web::Data<AppState>,
    user: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    let clients = reports::visible_clients(&state.db, user.0.id, user.0.is_admin).await?;
    flushed(&state).await?;
    answer(reports::x402_daily(&state.db, range, clients.as_deref()).await)
}

/// Settlement metrics by month
///
/// Verifications and settlements per month (your client keys; an admin sees all).
#[utoipa::path(
    get,
    path = "/api/v1/x402-metrics/monthly",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::X402MetricsMonthly>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn x402_monthly(
    state: web::Data<AppState>,
    user: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    let clients = reports::visible_clients(&state.db, user.0.id, user.0.is_admin).await?;
    flushed(&state).await?;
    answer(reports::x402_monthly(&state.db, range, clients.as_deref()).await)
}

/// Settlement totals
///
/// Verification and settlement totals over the range (all time by default; your client
/// keys, an admin sees all).
#[utoipa::path(
    get,
    path = "/api/v1/x402-metrics/summary",
    tag = "Metrics",
    security(("bearerAuth" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "The metrics.", body = Data<reports::X402MetricsSummary>),
        (status = 400, description = "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown parameter, or `from` after `to`.", body = ApiError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.", body = ApiError),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn x402_summary(
    state: web::Data<AppState>,
    user: User,
    q: web::Query<RangeQuery>,
) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    let clients = reports::visible_clients(&state.db, user.0.id, user.0.is_admin).await?;
    flushed(&state).await?;
    answer(reports::x402_summary(&state.db, range, clients.as_deref()).await)
}

// ---- Prometheus ------------------------------------------------------------------------

/// Prometheus metrics
///
/// Prometheus / OpenMetrics exposition: API and x402 counters, signer nonces, in-flight
/// transactions and balances, and the gas and fee spent today (UTC) per account and per client
/// key (fleet-wide, from the database; one series per key that spent today). With `metrics.prometheus_token` configured,
/// `Authorization: Bearer <token>` is required; without it, only loopback clients may scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "System",
    // The token, or nothing when the server has none configured.
    security(("metricsToken" = []), ()),
    responses(
        (status = 200, description = "OpenMetrics text exposition (Prometheus scrapes it).", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`UNAUTHORIZED`: a scrape token is configured and was not presented.", body = ApiError),
        (status = 403, description = "`FORBIDDEN`: no scrape token is configured and the client is not on loopback.", body = ApiError),
        errors::Internal,
    ),
)]
pub async fn prometheus(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    match &state.prometheus_token {
        Some(expected) => {
            let given = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
                return Err(ApiError::unauthorized(
                    "a valid metrics bearer token is required",
                ));
            }
        }
        None => {
            let loopback = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
            if !loopback {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "Metrics are served to loopback clients only",
                    "set APP__METRICS__PROMETHEUS_TOKEN to scrape from elsewhere",
                ));
            }
        }
    }
    let mut signers = Vec::new();
    for rt in state.facilitator.network_runtimes() {
        for s in rt.router.snapshot() {
            signers.push(SignerGauge {
                network: rt.entry.info.v1_name.to_owned(),
                signer: s.address,
                last_nonce: s.last_nonce,
                in_flight: s.in_flight,
                balance_wei: s.balance_wei,
                below_floor: s.balance_wei.is_some_and(|b| b < rt.min_signer_balance),
                leased: s.leased,
                funded: s.funded,
            });
        }
    }
    let spent = accounts::gas_spent_today(&state.db, &state.metrics).await?;
    state.metrics.set_gas_today(&spent);
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render(&signers)))
}
