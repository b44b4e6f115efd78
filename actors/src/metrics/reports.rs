//! The answers of the metrics endpoints, built from the daily rollup rows: HTTP requests
//! (service-wide) and verifications and settlements (per client key), per day, per month or
//! over a range. Each answer is one type, serialized by the handler and described in the API
//! document.
//!
//! A reader flushes the `MetricsActor` first (`MetricsHandle::flush`), so a report includes
//! every event acknowledged before it was asked for.

use std::collections::BTreeMap;

use alloy_primitives::U256;
use chrono::NaiveDate;
use entities::{http_metrics_daily as http_row, x402_metrics_daily as x402_row};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;

use super::{http_rows, is_success, parse_sum, x402_rows, Operation, CONFIRMED, SUCCESS_REPEAT};
use crate::ServiceResult;

/// A day range, both ends included; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Whose settlement metrics a caller may see: `None` is everyone's (an admin); a user sees the
/// client keys of their account, revoked ones included (that history is theirs).
pub async fn visible_clients(
    db: &DatabaseConnection,
    user_id: i64,
    is_admin: bool,
) -> ServiceResult<Option<Vec<String>>> {
    if is_admin {
        return Ok(None);
    }
    let ids: Vec<String> = entities::client::Entity::find()
        .select_only()
        .column(entities::client::Column::ClientId)
        .filter(entities::client::Column::UserId.eq(user_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(Some(ids))
}

fn avg_ms(total_us: i64, count: i64) -> f64 {
    if count > 0 {
        total_us as f64 / count as f64 / 1000.0
    } else {
        0.0
    }
}

fn month(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

// ---- HTTP ------------------------------------------------------------------------------

#[derive(Default)]
struct HttpAgg {
    requests: i64,
    errors: i64,
    total_latency_us: i64,
    max_latency_us: i64,
    by_status: BTreeMap<String, i64>,
}

impl HttpAgg {
    fn add(&mut self, r: &http_row::Model) {
        self.requests += r.count;
        if r.status >= 400 {
            self.errors += r.count;
        }
        self.total_latency_us += r.total_latency_us;
        self.max_latency_us = self.max_latency_us.max(r.max_latency_us);
        *self.by_status.entry(r.status.to_string()).or_default() += r.count;
    }

    fn counters(&self) -> HttpCounters {
        HttpCounters {
            requests: self.requests,
            errors: self.errors,
            avg_latency_ms: avg_ms(self.total_latency_us, self.requests),
            max_latency_ms: self.max_latency_us as f64 / 1000.0,
            by_status: self.by_status.clone(),
        }
    }
}

/// Totals plus a per-route breakdown.
#[derive(Default)]
struct HttpAggs {
    total: HttpAgg,
    routes: BTreeMap<(String, String), HttpAgg>,
}

impl HttpAggs {
    fn add(&mut self, r: &http_row::Model) {
        self.total.add(r);
        self.routes
            .entry((r.route.clone(), r.method.clone()))
            .or_default()
            .add(r);
    }

    fn totals(&self) -> HttpTotals {
        HttpTotals {
            counters: self.total.counters(),
            routes: self
                .routes
                .iter()
                .map(|((route, method), agg)| HttpRouteCounters {
                    method: method.clone(),
                    route: route.clone(),
                    counters: agg.counters(),
                })
                .collect(),
        }
    }
}

/// HTTP request counters.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpRouteCounters {
    #[schema(example = "GET")]
    pub method: String,
    #[schema(example = "/api/v1/clients/{id}")]
    pub route: String,
    #[serde(flatten)]
    pub counters: HttpCounters,
}

/// HTTP counters of a period, in total and per route.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpTotals {
    #[serde(flatten)]
    pub counters: HttpCounters,
    pub routes: Vec<HttpRouteCounters>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpMetricsDay {
    #[schema(example = "2026-01-31")]
    pub date: NaiveDate,
    #[serde(flatten)]
    pub totals: HttpTotals,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpMetricsMonth {
    #[schema(example = "2026-01")]
    pub month: String,
    #[serde(flatten)]
    pub totals: HttpTotals,
}

/// `GET /api/v1/metrics/daily`: HTTP requests per day (service-wide). `from`/`to` echo the
/// query (`null` when open).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpMetricsDaily {
    #[schema(required = true)]
    pub from: Option<NaiveDate>,
    #[schema(required = true)]
    pub to: Option<NaiveDate>,
    pub days: Vec<HttpMetricsDay>,
}

/// `GET /api/v1/metrics/monthly`: HTTP requests per month (service-wide).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HttpMetricsMonthly {
    #[schema(required = true)]
    pub from: Option<NaiveDate>,
    #[schema(required = true)]
    pub to: Option<NaiveDate>,
    pub months: Vec<HttpMetricsMonth>,
}

/// `GET /api/v1/metrics/summary`: HTTP requests over the range (all time by default).
#[derive(Debug, Clone, Serialize, ToSchema)]
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

/// Rows added up per group key, in key order.
fn grouped<R, K: Ord, A: Default>(
    rows: &[R],
    key: impl Fn(&R) -> K,
    mut add: impl FnMut(&mut A, &R) -> ServiceResult<()>,
) -> ServiceResult<BTreeMap<K, A>> {
    let mut groups: BTreeMap<K, A> = BTreeMap::new();
    for r in rows {
        add(groups.entry(key(r)).or_default(), r)?;
    }
    Ok(groups)
}

fn add_http(g: &mut HttpAggs, r: &http_row::Model) -> ServiceResult<()> {
    g.add(r);
    Ok(())
}

/// HTTP requests per day of the range.
pub async fn http_daily(
    db: &DatabaseConnection,
    range: DayRange,
) -> ServiceResult<HttpMetricsDaily> {
    let rows = http_rows(db, range.from, range.to).await?;
    let days = grouped(&rows, |r| r.day, add_http)?
        .into_iter()
        .map(|(date, g)| HttpMetricsDay {
            date,
            totals: g.totals(),
        })
        .collect();
    Ok(HttpMetricsDaily {
        from: range.from,
        to: range.to,
        days,
    })
}

/// HTTP requests per month of the range.
pub async fn http_monthly(
    db: &DatabaseConnection,
    range: DayRange,
) -> ServiceResult<HttpMetricsMonthly> {
    let rows = http_rows(db, range.from, range.to).await?;
    let months = grouped(&rows, |r| month(r.day), add_http)?
        .into_iter()
        .map(|(month, g)| HttpMetricsMonth {
            month,
            totals: g.totals(),
        })
        .collect();
    Ok(HttpMetricsMonthly {
        from: range.from,
        to: range.to,
        months,
    })
}

/// HTTP requests over the range.
pub async fn http_summary(
    db: &DatabaseConnection,
    range: DayRange,
) -> ServiceResult<HttpMetricsSummary> {
    let rows = http_rows(db, range.from, range.to).await?;
    let mut aggs = HttpAggs::default();
    for r in &rows {
        aggs.add(r);
    }
    Ok(HttpMetricsSummary {
        from: range.from,
        to: range.to,
        first_day: rows.first().map(|r| r.day),
        last_day: rows.iter().map(|r| r.day).max(),
        totals: aggs.totals(),
    })
}

// ---- x402 ------------------------------------------------------------------------------

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
    /// network -> (gas used, fee in the network's smallest native unit)
    fees: BTreeMap<String, (i64, U256)>,
}

impl X402Agg {
    fn add(&mut self, r: &x402_row::Model) -> ServiceResult<()> {
        // Money and gas come from mined transactions, counted once per ledger row however
        // many requests asked about it.
        if r.operation == Operation::Transfer.as_str() {
            if r.outcome == CONFIRMED {
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
        if r.outcome == SUCCESS_REPEAT {
            self.settle_repeats += r.count;
        }
        Ok(())
    }

    fn counters(&self) -> X402Counters {
        let (verify, settle) = (&self.verify, &self.settle);
        X402Counters {
            verify: VerifyCounters {
                count: verify.count,
                valid: verify.successes,
                invalid: verify.count - verify.successes,
                invalid_reasons: verify.reasons.clone(),
                avg_latency_ms: avg_ms(verify.total_latency_us, verify.count),
            },
            settle: SettleCounters {
                count: settle.count,
                successes: settle.successes,
                repeats: self.settle_repeats,
                failures: settle.count - settle.successes,
                failure_reasons: settle.reasons.clone(),
                avg_latency_ms: avg_ms(settle.total_latency_us, settle.count),
            },
            amounts: self
                .amounts
                .iter()
                .map(|((network, asset), (amount, n))| SettledAmount {
                    network: network.clone(),
                    asset: asset.clone(),
                    amount: amount.to_string(),
                    settlements: *n,
                })
                .collect(),
            fees: self
                .fees
                .iter()
                .map(|(network, (gas, wei))| NetworkFees {
                    network: network.clone(),
                    gas_used: *gas,
                    fee_wei: wei.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyCounters {
    pub count: i64,
    pub valid: i64,
    pub invalid: i64,
    /// Invalid verifications by x402 reason.
    pub invalid_reasons: BTreeMap<String, i64>,
    pub avg_latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFees {
    pub network: String,
    /// 0 on SVM networks (compute units are not counted).
    pub gas_used: i64,
    /// The network's smallest native unit, decimal string: wei on EVM networks, lamports on
    /// SVM networks.
    pub fee_wei: String,
}

/// x402 counters of a period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402Counters {
    pub verify: VerifyCounters,
    pub settle: SettleCounters,
    pub amounts: Vec<SettledAmount>,
    pub fees: Vec<NetworkFees>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402MetricsDay {
    #[schema(example = "2026-01-31")]
    pub date: NaiveDate,
    #[serde(flatten)]
    pub counters: X402Counters,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402MetricsMonth {
    #[schema(example = "2026-01")]
    pub month: String,
    #[serde(flatten)]
    pub counters: X402Counters,
}

/// `GET /api/v1/x402-metrics/daily`: verifications and settlements per day (your client
/// keys; an admin sees all).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402MetricsDaily {
    #[schema(required = true)]
    pub from: Option<NaiveDate>,
    #[schema(required = true)]
    pub to: Option<NaiveDate>,
    pub days: Vec<X402MetricsDay>,
}

/// `GET /api/v1/x402-metrics/monthly`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402MetricsMonthly {
    #[schema(required = true)]
    pub from: Option<NaiveDate>,
    #[schema(required = true)]
    pub to: Option<NaiveDate>,
    pub months: Vec<X402MetricsMonth>,
}

/// `GET /api/v1/x402-metrics/summary`: totals over the range (all time by default).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct X402MetricsSummary {
    #[schema(required = true)]
    pub from: Option<NaiveDate>,
    #[schema(required = true)]
    pub to: Option<NaiveDate>,
    pub totals: X402Counters,
}

/// Verifications and settlements per day of the range, of the given client keys (`None`:
/// all of them).
pub async fn x402_daily(
    db: &DatabaseConnection,
    range: DayRange,
    clients: Option<&[String]>,
) -> ServiceResult<X402MetricsDaily> {
    let rows = x402_rows(db, range.from, range.to, clients).await?;
    let days = grouped(&rows, |r| r.day, X402Agg::add)?
        .into_iter()
        .map(|(date, g)| X402MetricsDay {
            date,
            counters: g.counters(),
        })
        .collect();
    Ok(X402MetricsDaily {
        from: range.from,
        to: range.to,
        days,
    })
}

/// Verifications and settlements per month of the range.
pub async fn x402_monthly(
    db: &DatabaseConnection,
    range: DayRange,
    clients: Option<&[String]>,
) -> ServiceResult<X402MetricsMonthly> {
    let rows = x402_rows(db, range.from, range.to, clients).await?;
    let months = grouped(&rows, |r| month(r.day), X402Agg::add)?
        .into_iter()
        .map(|(month, g)| X402MetricsMonth {
            month,
            counters: g.counters(),
        })
        .collect();
    Ok(X402MetricsMonthly {
        from: range.from,
        to: range.to,
        months,
    })
}

/// Verification and settlement totals over the range.
pub async fn x402_summary(
    db: &DatabaseConnection,
    range: DayRange,
    clients: Option<&[String]>,
) -> ServiceResult<X402MetricsSummary> {
    let rows = x402_rows(db, range.from, range.to, clients).await?;
    let mut agg = X402Agg::default();
    for r in &rows {
        agg.add(r)?;
    }
    Ok(X402MetricsSummary {
        from: range.from,
        to: range.to,
        totals: agg.counters(),
    })
}
