//! Metrics endpoints: HTTP request rollups (`/api/v1/metrics/*`), settlement rollups
//! (`/api/v1/x402-metrics/*`), and the Prometheus exposition (`/metrics`).
//!
//! Every read first flushes what the `MetricsActor` holds in memory, so an answer includes
//! every request and settlement acknowledged before it. Regular users see the x402 metrics of
//! their own client keys (revoked ones included: that history is theirs); admins see all. The
//! HTTP metrics are service-wide.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use alloy_primitives::U256;
use chrono::{DateTime, NaiveDate};
use facilitator_actors::auth::accounts;
use facilitator_actors::metrics::{self, is_success, parse_sum, Operation, SignerGauge};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::docs::errors;
use super::Data;
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::startup::AppState;

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

/// A date range, inclusive; either end open.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
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
    fn resolve(&self) -> Result<Range, ApiError> {
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
        Ok(Range { from, to })
    }
}

fn range_json(r: Range) -> (Value, Value) {
    (
        r.from.map(|d| json!(d.to_string())).unwrap_or(Value::Null),
        r.to.map(|d| json!(d.to_string())).unwrap_or(Value::Null),
    )
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

/// How rows are grouped: per day, per month, or all together.
#[derive(Clone, Copy)]
enum Period {
    Day,
    Month,
}

impl Period {
    /// The group's key for a day, its field name, and the name of the list of groups.
    fn key(self, day: NaiveDate) -> String {
        match self {
            Period::Day => day.format("%Y-%m-%d").to_string(),
            Period::Month => day.format("%Y-%m").to_string(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Period::Day => "date",
            Period::Month => "month",
        }
    }

    fn list(self) -> &'static str {
        match self {
            Period::Day => "days",
            Period::Month => "months",
        }
    }
}

/// Rows grouped by day or month (in date order), each group rendered with its label.
fn grouped<R, A: Default>(
    rows: &[R],
    period: Period,
    day: impl Fn(&R) -> NaiveDate,
    mut add: impl FnMut(&mut A, &R) -> ApiResult<()>,
    render: impl Fn(&A) -> Value,
) -> ApiResult<Vec<Value>> {
    let mut groups: BTreeMap<String, A> = BTreeMap::new();
    for r in rows {
        add(groups.entry(period.key(day(r))).or_default(), r)?;
    }
    Ok(groups
        .iter()
        .map(|(k, g)| {
            let mut v = render(g);
            v[period.label()] = json!(k);
            v
        })
        .collect())
}

/// `{"data": {"from", "to", <days|months>: items}}`
fn period_answer(range: Range, period: Period, items: Vec<Value>) -> HttpResponse {
    let (from, to) = range_json(range);
    super::data(json!({ "from": from, "to": to, period.list(): items }))
}

// ---- HTTP metrics ----------------------------------------------------------------------

#[derive(Default)]
struct HttpAgg {
    requests: i64,
    errors: i64,
    total_latency_us: i64,
    max_latency_us: i64,
    by_status: BTreeMap<String, i64>,
}

impl HttpAgg {
    fn add(&mut self, r: &entities::http_metrics_daily::Model) {
        self.requests += r.count;
        if r.status >= 400 {
            self.errors += r.count;
        }
        self.total_latency_us += r.total_latency_us;
        self.max_latency_us = self.max_latency_us.max(r.max_latency_us);
        *self.by_status.entry(r.status.to_string()).or_default() += r.count;
    }

    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "avgLatencyMs": if self.requests > 0 {
                self.total_latency_us as f64 / self.requests as f64 / 1000.0
            } else { 0.0 },
            "maxLatencyMs": self.max_latency_us as f64 / 1000.0,
            "byStatus": self.by_status,
        })
    }
}

/// Totals plus a per-route breakdown.
#[derive(Default)]
struct HttpReport {
    total: HttpAgg,
    routes: BTreeMap<(String, String), HttpAgg>,
}

impl HttpReport {
    fn add(&mut self, r: &entities::http_metrics_daily::Model) {
        self.total.add(r);
        self.routes
            .entry((r.route.clone(), r.method.clone()))
            .or_default()
            .add(r);
    }

    fn json(&self) -> Value {
        let mut v = self.total.json();
        v["routes"] = self
            .routes
            .iter()
            .map(|((route, method), agg)| {
                let mut r = agg.json();
                r["method"] = json!(method);
                r["route"] = json!(route);
                r
            })
            .collect();
        v
    }
}

async fn http_periods(state: &AppState, q: &RangeQuery, period: Period) -> ApiResult<HttpResponse> {
    let range = q.resolve()?;
    flushed(state).await?;
    let rows = metrics::http_rows(&state.db, range.from, range.to).await?;
    let items = grouped(
        &rows,
        period,
        |r| r.day,
        |g: &mut HttpReport, r| {
            g.add(r);
            Ok(())
        },
        HttpReport::json,
    )?;
    Ok(period_answer(range, period, items))
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
        (status = 200, description = "The metrics.", body = Data<schema::HttpMetricsDaily>),
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
    http_periods(&state, &q, Period::Day).await
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
        (status = 200, description = "The metrics.", body = Data<schema::HttpMetricsMonthly>),
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
    http_periods(&state, &q, Period::Month).await
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
        (status = 200, description = "The metrics.", body = Data<schema::HttpMetricsSummary>),
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
    let rows = metrics::http_rows(&state.db, range.from, range.to).await?;
    let mut report = HttpReport::default();
    for r in &rows {
        report.add(r);
    }
    let (from, to) = range_json(range);
    Ok(super::data(json!({
        "from": from,
        "to": to,
        "firstDay": rows.first().map(|r| r.day.to_string()),
        "lastDay": rows.iter().map(|r| r.day).max().map(|d| d.to_string()),
        "totals": report.json(),
    })))
}

// ---- x402 metrics ----------------------------------------------------------------------

#[derive(Default)]
struct OpAgg {
    count: i64,
    successes: i64,
    reasons: BTreeMap<String, i64>,
    total_latency_us: i64,
}

#[derive(Default)]
struct X402Agg {
    verify: OpAgg,
    settle: OpAgg,
    /// Settle successes answered from an earlier settle of the same authorization.
    settle_repeats: i64,
    /// (network, asset) -> (settled amount, on-chain transfers)
    amounts: BTreeMap<(String, String), (U256, i64)>,
    /// network -> (gas used, fee wei)
    fees: BTreeMap<String, (i64, U256)>,
}

impl X402Agg {
    fn add(&mut self, r: &entities::x402_metrics_daily::Model) -> ApiResult<()> {
        // Money and gas come from mined transactions, counted once per ledger row however
        // many requests asked about it.
        if r.operation == Operation::Transfer.as_str() {
            if r.outcome == metrics::CONFIRMED {
                let e = self
                    .amounts
                    .entry((r.network.clone(), r.asset.clone()))
                    .or_default();
                e.0 = e.0.saturating_add(parse_sum(&r.amount_sum)?);
                e.1 += r.count;
            }
            let e = self.fees.entry(r.network.clone()).or_default();
            e.0 += r.gas_used_sum;
            e.1 = e.1.saturating_add(parse_sum(&r.fee_wei_sum)?);
            return Ok(());
        }
        let op = if r.operation == Operation::Verify.as_str() {
            &mut self.verify
        } else {
            &mut self.settle
        };
        op.count += r.count;
        op.total_latency_us += r.total_latency_us;
        if is_success(&r.outcome) {
            op.successes += r.count;
        } else {
            *op.reasons.entry(r.outcome.clone()).or_default() += r.count;
        }
        if r.outcome == metrics::SUCCESS_REPEAT {
            self.settle_repeats += r.count;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let avg = |o: &OpAgg| {
            if o.count > 0 {
                o.total_latency_us as f64 / o.count as f64 / 1000.0
            } else {
                0.0
            }
        };
        json!({
            "verify": {
                "count": self.verify.count,
                "valid": self.verify.successes,
                "invalid": self.verify.count - self.verify.successes,
                "invalidReasons": self.verify.reasons,
                "avgLatencyMs": avg(&self.verify),
            },
            "settle": {
                "count": self.settle.count,
                "successes": self.settle.successes,
                "repeats": self.settle_repeats,
                "failures": self.settle.count - self.settle.successes,
                "failureReasons": self.settle.reasons,
                "avgLatencyMs": avg(&self.settle),
            },
            "amounts": self.amounts.iter().map(|((network, asset), (amount, n))| json!({
                "network": network,
                "asset": asset,
                "amount": amount.to_string(),
                "settlements": n,
            })).collect::<Vec<_>>(),
            "fees": self.fees.iter().map(|(network, (gas, wei))| json!({
                "network": network,
                "gasUsed": gas,
                "feeWei": wei.to_string(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Whose settlement metrics the caller may see: `None` = everyone's (admin).
async fn visible_clients(state: &AppState, user: &User) -> ApiResult<Option<Vec<String>>> {
    if user.0.is_admin {
        return Ok(None);
    }
    let ids: Vec<String> = entities::client::Entity::find()
        .select_only()
        .column(entities::client::Column::ClientId)
        .filter(entities::client::Column::UserId.eq(user.0.id))
        .into_tuple()
        .all(&state.db)
        .await
        .map_err(facilitator_actors::ServiceError::from)?;
    Ok(Some(ids))
}

async fn x402_rows(
    state: &AppState,
    user: &User,
    q: &RangeQuery,
) -> ApiResult<(Range, Vec<entities::x402_metrics_daily::Model>)> {
    let range = q.resolve()?;
    let clients = visible_clients(state, user).await?;
    flushed(state).await?;
    let rows = metrics::x402_rows(&state.db, range.from, range.to, clients.as_deref()).await?;
    Ok((range, rows))
}

async fn x402_periods(
    state: &AppState,
    user: &User,
    q: &RangeQuery,
    period: Period,
) -> ApiResult<HttpResponse> {
    let (range, rows) = x402_rows(state, user, q).await?;
    let items = grouped(&rows, period, |r| r.day, X402Agg::add, X402Agg::json)?;
    Ok(period_answer(range, period, items))
}

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
        (status = 200, description = "The metrics.", body = Data<schema::X402MetricsDaily>),
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
    x402_periods(&state, &user, &q, Period::Day).await
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
        (status = 200, description = "The metrics.", body = Data<schema::X402MetricsMonthly>),
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
    x402_periods(&state, &user, &q, Period::Month).await
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
        (status = 200, description = "The metrics.", body = Data<schema::X402MetricsSummary>),
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
    let (range, rows) = x402_rows(&state, &user, &q).await?;
    let mut agg = X402Agg::default();
    for r in &rows {
        agg.add(r)?;
    }
    let (from, to) = range_json(range);
    Ok(super::data(json!({
        "from": from,
        "to": to,
        "totals": agg.json(),
    })))
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

/// The answers the handlers above build with `json!`, described for the OpenAPI document.
pub mod schema {
    use std::collections::BTreeMap;

    use chrono::NaiveDate;
    use serde::Serialize;
    use utoipa::ToSchema;

    /// HTTP request counters.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpCounters {
        pub requests: i64,
        /// Requests answered 4xx or 5xx.
        pub errors: i64,
        pub avg_latency_ms: f64,
        pub max_latency_ms: f64,
        /// Requests by HTTP status.
        #[schema(example = json!({"200": 12, "401": 1}))]
        pub by_status: BTreeMap<String, i64>,
    }

    /// HTTP request counters of one route (its pattern, e.g. `/api/v1/clients/{id}`).
    #[derive(Serialize, ToSchema)]
    pub struct HttpRouteCounters {
        #[schema(example = "GET")]
        pub method: String,
        #[schema(example = "/api/v1/clients/{id}")]
        pub route: String,
        #[serde(flatten)]
        pub counters: HttpCounters,
    }

    /// HTTP counters of a period, in total and per route.
    #[derive(Serialize, ToSchema)]
    pub struct HttpTotals {
        #[serde(flatten)]
        pub counters: HttpCounters,
        pub routes: Vec<HttpRouteCounters>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsDay {
        #[schema(example = "2026-01-31")]
        pub date: NaiveDate,
        #[serde(flatten)]
        pub totals: HttpTotals,
    }

    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsMonth {
        #[schema(example = "2026-01")]
        pub month: String,
        #[serde(flatten)]
        pub totals: HttpTotals,
    }

    /// `GET /api/v1/metrics/daily`: HTTP requests per day (service-wide). `from`/`to` echo the
    /// query (`null` when open).
    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsDaily {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub days: Vec<HttpMetricsDay>,
    }

    /// `GET /api/v1/metrics/monthly`: HTTP requests per month (service-wide).
    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsMonthly {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub months: Vec<HttpMetricsMonth>,
    }

    /// `GET /api/v1/metrics/summary`: HTTP requests over the range (all time by default).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpMetricsSummary {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        /// First day with data.
        #[schema(required = true)]
        pub first_day: Option<NaiveDate>,
        /// Last day with data.
        #[schema(required = true)]
        pub last_day: Option<NaiveDate>,
        pub totals: HttpTotals,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct VerifyCounters {
        pub count: i64,
        pub valid: i64,
        pub invalid: i64,
        /// Invalid verifications by x402 reason.
        pub invalid_reasons: BTreeMap<String, i64>,
        pub avg_latency_ms: f64,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SettleCounters {
        pub count: i64,
        /// Successful answers, repeats included.
        pub successes: i64,
        /// Successes answered from an earlier settle of the same authorization (no second
        /// transfer, no fee).
        pub repeats: i64,
        pub failures: i64,
        /// Failed settlements by x402 reason.
        pub failure_reasons: BTreeMap<String, i64>,
        pub avg_latency_ms: f64,
    }

    /// Amount settled in one asset on one network.
    #[derive(Serialize, ToSchema)]
    pub struct SettledAmount {
        pub network: String,
        pub asset: String,
        /// Atomic units, decimal string.
        #[schema(example = "25000000")]
        pub amount: String,
        /// On-chain transfers (a repeated settle of one authorization counts once).
        pub settlements: i64,
    }

    /// Gas spent settling on one network.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NetworkFees {
        pub network: String,
        pub gas_used: i64,
        /// Wei, decimal string.
        pub fee_wei: String,
    }

    /// x402 counters of a period.
    #[derive(Serialize, ToSchema)]
    pub struct X402Counters {
        pub verify: VerifyCounters,
        pub settle: SettleCounters,
        pub amounts: Vec<SettledAmount>,
        pub fees: Vec<NetworkFees>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsDay {
        #[schema(example = "2026-01-31")]
        pub date: NaiveDate,
        #[serde(flatten)]
        pub counters: X402Counters,
    }

    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsMonth {
        #[schema(example = "2026-01")]
        pub month: String,
        #[serde(flatten)]
        pub counters: X402Counters,
    }

    /// `GET /api/v1/x402-metrics/daily`: verifications and settlements per day (your client
    /// keys; an admin sees all).
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsDaily {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub days: Vec<X402MetricsDay>,
    }

    /// `GET /api/v1/x402-metrics/monthly`.
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsMonthly {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub months: Vec<X402MetricsMonth>,
    }

    /// `GET /api/v1/x402-metrics/summary`: totals over the range (all time by default).
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsSummary {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub totals: X402Counters,
    }
}
