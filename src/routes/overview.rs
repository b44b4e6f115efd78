//! What the console's views read besides the rest of the API: an account's own settlements
//! (`/api/v1/users/settlements`), and for the operator the fleet (`/admin/fleet`), the
//! settlements still in flight with what reconciliation will do with each
//! (`/admin/settlements`), and a user's keys (`/admin/users/{id}/clients`).

use actix_web::{web, HttpResponse};
use alloy_primitives::{Address, B256};
use chrono::{DateTime, Utc};
use facilitator_actors::auth::{AuthUser, ClientView};
use facilitator_actors::ledger::{self, ListFilter, NextStep};
use facilitator_actors::metrics::reports;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::docs::errors;
use super::x402::Settlement;
use super::{Data, PageQuery, Paging};
use crate::auth::{Admin, User};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// `GET /users/settlements?tx=&payer=&nonce=&network=&offset=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountSettlementsQuery {
    /// Only the settlement(s) of this transaction, 0x-prefixed 32 bytes.
    #[param(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub tx: Option<String>,
    /// Only this payer's (`authorization.from`), 0x-prefixed 20 bytes.
    #[param(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub payer: Option<String>,
    /// Only this authorization nonce's, 0x-prefixed 32 bytes.
    #[param(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub nonce: Option<String>,
    /// Only this network's (v1 name or CAIP-2 id).
    #[param(example = "base-sepolia")]
    pub network: Option<String>,
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub offset: Option<u64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// A settlement of one of the account's keys.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettlement {
    #[serde(flatten)]
    pub settlement: Settlement,
    /// The key that settled it.
    pub client_id: String,
    /// The transaction on the network's block explorer (`networks.<id>.explorer_url`); null
    /// without a transaction or an explorer.
    #[schema(required = true, example = "https://sepolia.basescan.org/tx/0x...")]
    pub explorer_url: Option<String>,
}

fn parsed<T: std::str::FromStr>(value: &Option<String>, what: &str) -> ApiResult<Option<T>> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Invalid query parameters",
                    what.to_owned(),
                )
            })
        })
        .transpose()
}

/// The explorer link of a transaction on a network, when both are known.
fn explorer_link(state: &AppState, network: &str, tx: Option<&str>) -> Option<String> {
    let base = state.explorers.get(network)?;
    Some(format!("{base}/tx/{}", tx?))
}

/// List your settlements
///
/// The settlements made with your client keys (revoked ones included), newest first, with
/// their status (`pending`, `submitted`, `mined`, `confirmed`, `failed`) and the transaction's
/// explorer link; narrowed by transaction, payer, authorization nonce or network.
#[utoipa::path(
    get,
    path = "/api/v1/users/settlements",
    tag = "Clients",
    security(("bearerAuth" = [])),
    params(AccountSettlementsQuery),
    responses(
        (status = 200, description = "A page of settlements.", body = Data<Vec<AccountSettlement>>),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn account_settlements(
    state: web::Data<AppState>,
    User(user): User,
    query: web::Query<AccountSettlementsQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = PageQuery {
        offset: query.offset,
        limit: query.limit,
    }
    .resolve(50, 200)?;
    let network = match query.network.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(
            x402::network::parse_network(n)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        "Invalid query parameters",
                        "network: not a network served here (v1 name or CAIP-2 id)",
                    )
                })?
                .v1_name,
        ),
    };
    let filter = ListFilter {
        tx_hash: parsed::<B256>(&query.tx, "tx: expected a 0x-prefixed 32-byte hash")?,
        payer: parsed::<Address>(
            &query.payer,
            "payer: expected a 0x-prefixed 20-byte address",
        )?,
        nonce: parsed::<B256>(&query.nonce, "nonce: expected a 0x-prefixed 32-byte nonce")?,
        network,
    };
    // Your own keys, even as an admin: the operator's views are under `/admin`.
    let clients = reports::visible_clients(&state.db, user.id, false)
        .await?
        .unwrap_or_default();
    let rows = ledger::of_clients(&state.db, &clients, &filter, offset, limit)
        .await
        .map_err(facilitator_actors::ServiceError::from)?;
    let items: Vec<AccountSettlement> = rows
        .into_iter()
        .map(|row| {
            let explorer_url = explorer_link(&state, &row.network, row.tx_hash.as_deref());
            let client_id = row.client_id.clone().unwrap_or_default();
            AccountSettlement {
                settlement: Settlement::from(row),
                client_id,
                explorer_url,
            }
        })
        .collect();
    Ok(super::data(items))
}

/// An instance of the fleet, as its row in the database says.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    #[schema(example = "inst_0f3c...")]
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Its heartbeat is within `fleet.lease_ttl_secs`.
    pub live: bool,
    /// The instance that answered.
    pub this: bool,
}

/// Which instance drives a signer of a network.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    #[schema(example = "base-sepolia")]
    pub network: String,
    pub signer: String,
    /// The holder's instance id.
    pub holder: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
    /// Not expired.
    pub held: bool,
}

/// `GET /admin/fleet`.
#[derive(Serialize, ToSchema)]
pub struct FleetView {
    pub instances: Vec<InstanceView>,
    pub leases: Vec<LeaseView>,
}

/// The fleet
///
/// The instances sharing this database (live when their heartbeat is recent) and the signer
/// leases: which instance drives each (network, signer), under which epoch, until when.
#[utoipa::path(
    get,
    path = "/admin/fleet",
    tag = "Admin",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The fleet.", body = Data<FleetView>),
        errors::AdminAuth,
        errors::Internal,
    ),
)]
pub async fn fleet(state: web::Data<AppState>, _: Admin) -> ApiResult<HttpResponse> {
    let fleet = state.facilitator.fleet();
    let (instances, leases) = fleet
        .roster()
        .await
        .map_err(facilitator_actors::ServiceError::from)?;
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(fleet.ttl()).unwrap_or(chrono::Duration::MAX);
    Ok(super::data(FleetView {
        instances: instances
            .into_iter()
            .map(|i| InstanceView {
                live: now - i.heartbeat_at < ttl,
                this: i.id == fleet.id(),
                id: i.id,
                host: i.host,
                pid: i.pid,
                started_at: i.started_at,
                heartbeat_at: i.heartbeat_at,
            })
            .collect(),
        leases: leases
            .into_iter()
            .map(|l| LeaseView {
                held: l.expires_at > now,
                network: l.network,
                signer: l.signer,
                holder: l.holder,
                epoch: l.epoch,
                expires_at: l.expires_at,
            })
            .collect(),
    }))
}

/// A settlement whose outcome is not known yet.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnresolvedSettlement {
    pub id: i64,
    pub network: String,
    pub asset: String,
    pub payer: String,
    pub nonce: String,
    pub amount: String,
    /// `pending` (claimed, not sent) or `submitted` (sent, no receipt yet).
    pub status: String,
    #[schema(required = true)]
    pub transaction: Option<String>,
    #[schema(required = true)]
    pub signer: Option<String>,
    /// The instance responsible for its next step.
    #[schema(required = true)]
    pub instance: Option<String>,
    #[schema(required = true)]
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Seconds since it was claimed.
    pub age_secs: i64,
    /// What the next reconciliation will do with it.
    pub next_step: NextStep,
}

/// Settlements in flight
///
/// The settlements of every network whose outcome is not known yet (`pending`, `submitted`),
/// oldest first, each with its age and what reconciliation (at start-up and every
/// `settlement.reconcile_interval_secs`) will do with it.
#[utoipa::path(
    get,
    path = "/admin/settlements",
    tag = "Admin",
    security(("adminToken" = [])),
    params(Paging<100, 1000>),
    responses(
        (status = 200, description = "The unresolved settlements.", body = Data<Vec<UnresolvedSettlement>>),
        errors::BadRequest,
        errors::AdminAuth,
        errors::Internal,
    ),
)]
pub async fn unresolved(
    state: web::Data<AppState>,
    _: Admin,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(100, 1000)?;
    let rows = ledger::unresolved_oldest(&state.db, offset, limit)
        .await
        .map_err(facilitator_actors::ServiceError::from)?;
    let now = Utc::now();
    Ok(super::data(
        rows.into_iter()
            .map(|row| UnresolvedSettlement {
                age_secs: ledger::age_secs(&row, now),
                next_step: NextStep::of(&row),
                id: row.id,
                network: row.network,
                asset: row.asset,
                payer: row.payer,
                nonce: row.auth_nonce,
                amount: row.amount,
                status: row.status,
                transaction: row.tx_hash,
                signer: row.signer,
                instance: row.instance_id,
                client_id: row.client_id,
                created_at: row.created_at,
            })
            .collect::<Vec<_>>(),
    ))
}

/// A user's keys
///
/// The client keys of an account (revoked ones left out): status, scope, networks, settle
/// credits and rate limit.
#[utoipa::path(
    get,
    path = "/admin/users/{id}/clients",
    tag = "Admin",
    security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The user's id.", minimum = 1), Paging<100, 1000>),
    responses(
        (status = 200, description = "A page of the user's keys.", body = Data<Vec<ClientView>>),
        (status = 404, description = "`NOT_FOUND`: no such user.", body = ApiError),
        errors::BadRequest,
        errors::AdminAuth,
        errors::Internal,
    ),
)]
pub async fn user_clients(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(100, 1000)?;
    // 404 for a user that does not exist (the account view reads the user first).
    super::admin::account(&state, *id).await?;
    let owner = AuthUser {
        id: *id,
        is_admin: false,
    };
    Ok(super::data(
        state.auth.list_clients(&owner, offset, limit).await?,
    ))
}
