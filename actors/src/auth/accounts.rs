//! Account limits: what binds all the keys of an account (a user) together.
//!
//! The operator limits an account with `PATCH /admin/users/{id}`: settle credits, a rate limit
//! and a daily gas budget. They apply to every key of the account at once, besides each key's
//! own limits, and a key inherits them from its first use: they are read with the key, per
//! account, so a new key never starts unlimited. The account is also capped in live keys and in
//! resources (`limits.max_keys_per_account`, `limits.max_resources_per_account`).
//!
//! - **Credits**: each new settlement of any of the account's keys uses one, by a conditional
//!   decrement of `users.settle_credits` (atomic against concurrent settles of every key, on
//!   every instance); a settle that sends nothing gives it back.
//! - **Gas budget**, in native fee (wei) per UTC day: the fee of the account's keys' settlement
//!   transactions mined since 00:00 UTC, reverted ones included, as the x402 metrics rollup
//!   counts them (this instance's unflushed sums included, other instances' once flushed, within
//!   `metrics.flush_interval_secs`). The sum is over every network the account settles on, in
//!   each chain's smallest native unit (wei on EVM networks, lamports on SVM ones). A settle is
//!   admitted while the spend is below the budget: settles in flight when it is reached still
//!   finish, so the spend may pass the budget by their fees.
//! - **Caps**: a create counts inside its insert's transaction after locking the account's row,
//!   so concurrent creates, on any instance, cannot pass the cap.

use std::collections::HashMap;

use alloy_primitives::U256;
use chrono::{NaiveDate, Utc};
use entities::{client, resource, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, Select, TransactionTrait,
};
use serde::Serialize;

use super::credits::{apply_credit_change, check_credit_change, credit_change_refused};
use super::{AuthHandle, CreditChange, UserView, MAX_RATE_LIMIT};
use crate::error::{ServiceError, ServiceResult};
use crate::metrics::{self, MetricsHandle, Operation};

/// How many live keys and resources an account may have.
#[derive(Debug, Clone, Copy)]
pub struct AccountCaps {
    pub max_keys: u64,
    pub max_resources: u64,
}

/// An account's limits as the hot path holds them: read with each of its keys, and re-read
/// when the key is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub user_id: i64,
    /// The account has a settle-credit balance (each new settlement of its keys uses one).
    pub credits_limited: bool,
    /// Requests per second of all its keys together (`0` = unlimited); `None` = the default.
    pub rate_limit_per_second: Option<u32>,
    /// Native fee (wei) its keys' settlements may spend per UTC day; `None` = unlimited.
    pub gas_budget_wei: Option<U256>,
}

impl AccountLimits {
    pub fn of(u: &user::Model) -> Self {
        Self {
            user_id: u.id,
            credits_limited: u.settle_credits.is_some(),
            rate_limit_per_second: u.rate_limit_per_second.map(|n| n.max(0) as u32),
            gas_budget_wei: u.gas_budget_wei.as_deref().map(parse_budget),
        }
    }
}

/// A stored budget. Only this module writes it, as a decimal; anything else would be a broken
/// row, read as a budget of 0 (refuse) rather than as no budget.
fn parse_budget(s: &str) -> U256 {
    U256::from_str_radix(s, 10).unwrap_or(U256::ZERO)
}

/// What the operator changes on an account (`PATCH /admin/users/{id}`); `None` = unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountChange {
    pub credits: Option<CreditChange>,
    /// `Some(None)`: back to the server's default.
    pub rate_limit_per_second: Option<Option<u32>>,
    /// `Some(None)`: no budget.
    pub gas_budget_wei: Option<Option<U256>>,
}

/// Gas and native fee of settlement transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GasSpent {
    pub gas_used: u64,
    pub fee_wei: U256,
}

impl GasSpent {
    fn add(&mut self, gas_used: u64, fee_wei: U256) {
        self.gas_used = self.gas_used.saturating_add(gas_used);
        self.fee_wei = self.fee_wei.saturating_add(fee_wei);
    }
}

/// Gas spent today (UTC) by settlement transactions, reverted ones included.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GasToday)]
pub struct GasTodayView {
    /// The UTC day counted, since 00:00.
    pub day: NaiveDate,
    #[schema(example = 86000)]
    pub gas_used: u64,
    /// Native fee paid (a decimal string), summed over networks, each in its smallest native
    /// unit: wei on EVM networks, lamports on SVM networks.
    #[schema(example = "86000000000000")]
    pub fee_wei: String,
}

impl GasTodayView {
    fn of(day: NaiveDate, spent: GasSpent) -> Self {
        Self {
            day,
            gas_used: spent.gas_used,
            fee_wei: spent.fee_wei.to_string(),
        }
    }
}

/// What an account may still do: its limits, which bind all its keys together, and today's
/// spend against its gas budget.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountAllowance {
    /// Settlements all the account's keys may still make together; `null` = unlimited.
    #[schema(required = true)]
    pub settle_credits: Option<i64>,
    /// Requests per second of all its keys together on `/verify`, `/settle`, `/supported`
    /// (`0` = unlimited); `null` = the server's default.
    #[schema(required = true)]
    pub rate_limit_per_second: Option<u32>,
    /// Native fee, in wei (a decimal string), its keys' settlement transactions may spend per
    /// UTC day; `null` = unlimited.
    #[schema(required = true, example = "1000000000000000")]
    pub gas_budget_wei_per_day: Option<String>,
    /// What its keys' settlement transactions spent today (UTC), reverted ones included.
    pub gas_today: GasTodayView,
    /// What is left of today's budget, in wei (`"0"` once spent: settles are refused until
    /// 00:00 UTC); `null` = no budget.
    #[schema(required = true, example = "914000000000000")]
    pub gas_budget_left_wei: Option<String>,
}

/// A count against its cap.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct CapUsage {
    pub used: u64,
    pub max: u64,
}

/// One key's spend today.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyGasToday {
    pub client_id: String,
    pub gas_used: u64,
    /// Native fee paid (a decimal string), summed over networks, each in its smallest native
    /// unit: wei on EVM networks, lamports on SVM networks.
    pub fee_wei: String,
}

/// An account, with its limits, what is left of them, and its keys' spend today.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Account)]
pub struct AccountView {
    #[serde(flatten)]
    pub user: UserView,
    #[serde(flatten)]
    pub allowance: AccountAllowance,
    /// Today's spend of each key that spent any (revoked ones included).
    pub gas_today_by_key: Vec<KeyGasToday>,
    /// Live keys (neither revoked nor expired) against `limits.max_keys_per_account`.
    pub keys: CapUsage,
    /// Registered resources against `limits.max_resources_per_account`.
    pub resources: CapUsage,
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Gas spent on `day` by each of `clients` (all of them in the answer, zero when nothing), or
/// by every key that spent (`None`): the rollup rows, plus this instance's sums not flushed
/// yet.
async fn spent_on(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    day: NaiveDate,
    clients: Option<&[String]>,
) -> ServiceResult<HashMap<String, GasSpent>> {
    let mut spent: HashMap<String, GasSpent> = clients
        .into_iter()
        .flatten()
        .map(|c| (c.clone(), GasSpent::default()))
        .collect();
    for row in metrics::x402_rows(db, Some(day), Some(day), clients).await? {
        if row.operation == Operation::Transfer.as_str() {
            let fee = metrics::parse_sum(&row.fee_wei_sum)?;
            spent
                .entry(row.client_id)
                .or_default()
                .add(row.gas_used_sum.max(0) as u64, fee);
        }
    }
    for (client_id, gas_used, fee_wei) in metrics.unflushed_transfers(day) {
        if clients.is_none() || spent.contains_key(&client_id) {
            spent.entry(client_id).or_default().add(gas_used, fee_wei);
        }
    }
    Ok(spent)
}

/// The account's keys that may have spent on `day`: every key not revoked before it.
async fn keys_alive_on(
    db: &DatabaseConnection,
    user_id: i64,
    day: NaiveDate,
) -> ServiceResult<Vec<String>> {
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    Ok(client::Entity::find()
        .select_only()
        .column(client::Column::ClientId)
        .filter(client::Column::UserId.eq(user_id))
        .filter(
            Condition::any()
                .add(client::Column::RevokedAt.is_null())
                .add(client::Column::RevokedAt.gte(start)),
        )
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// An account's spend today, in total and per key.
async fn account_spent_today(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    user_id: i64,
) -> ServiceResult<(NaiveDate, GasSpent, HashMap<String, GasSpent>)> {
    let day = today();
    let keys = keys_alive_on(db, user_id, day).await?;
    let by_key = spent_on(db, metrics, day, Some(&keys)).await?;
    let mut total = GasSpent::default();
    for s in by_key.values() {
        total.add(s.gas_used, s.fee_wei);
    }
    Ok((day, total, by_key))
}

/// Each key's spend today (UTC), in the order of `clients`, for the views of keys.
pub async fn keys_spent_today(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    clients: &[String],
) -> ServiceResult<Vec<GasTodayView>> {
    let day = today();
    let spent = spent_on(db, metrics, day, Some(clients)).await?;
    Ok(clients
        .iter()
        .map(|c| GasTodayView::of(day, spent.get(c).copied().unwrap_or_default()))
        .collect())
}

async fn find_user(db: &DatabaseConnection, user_id: i64) -> ServiceResult<user::Model> {
    user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

/// The allowance of an account and its keys' spend today.
async fn allowance_of(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    u: &user::Model,
) -> ServiceResult<(AccountAllowance, HashMap<String, GasSpent>)> {
    let (day, spent, by_key) = account_spent_today(db, metrics, u.id).await?;
    let budget = AccountLimits::of(u).gas_budget_wei;
    let allowance = AccountAllowance {
        settle_credits: u.settle_credits,
        rate_limit_per_second: u.rate_limit_per_second.map(|n| n.max(0) as u32),
        gas_budget_wei_per_day: budget.map(|b| b.to_string()),
        gas_today: GasTodayView::of(day, spent),
        gas_budget_left_wei: budget.map(|b| b.saturating_sub(spent.fee_wei).to_string()),
    };
    Ok((allowance, by_key))
}

/// What the account of `user_id` may still do (`/clients/status`).
pub async fn allowance(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    user_id: i64,
) -> ServiceResult<AccountAllowance> {
    let u = find_user(db, user_id).await?;
    Ok(allowance_of(db, metrics, &u).await?.0)
}

/// An account's whole view (`GET /users/me`, `GET /admin/users/{id}`).
pub async fn account_view(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    caps: AccountCaps,
    user_id: i64,
) -> ServiceResult<AccountView> {
    let u = find_user(db, user_id).await?;
    let (allowance, by_key) = allowance_of(db, metrics, &u).await?;
    let mut gas_today_by_key: Vec<KeyGasToday> = by_key
        .into_iter()
        .filter(|(_, s)| *s != GasSpent::default())
        .map(|(client_id, s)| KeyGasToday {
            client_id,
            gas_used: s.gas_used,
            fee_wei: s.fee_wei.to_string(),
        })
        .collect();
    gas_today_by_key.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Ok(AccountView {
        keys: CapUsage {
            used: live_keys(user_id).count(db).await?,
            max: caps.max_keys,
        },
        resources: CapUsage {
            used: resources_of(user_id).count(db).await?,
            max: caps.max_resources,
        },
        user: u.into(),
        allowance,
        gas_today_by_key,
    })
}

/// Every key that spent gas today (UTC), with its account. From the shared database (and this
/// instance's unflushed sums): the same fleet-wide figure on every instance.
pub async fn gas_spent_today(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
) -> ServiceResult<Vec<metrics::KeyGasToday>> {
    let spent = spent_on(db, metrics, today(), None).await?;
    let ids: Vec<String> = spent.keys().cloned().collect();
    let owners: HashMap<String, i64> = client::Entity::find()
        .select_only()
        .column(client::Column::ClientId)
        .column(client::Column::UserId)
        .filter(client::Column::ClientId.is_in(ids))
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(spent
        .into_iter()
        .filter_map(|(client_id, spent)| {
            // Settlements of no key (an operator's own) belong to no account.
            let account = *owners.get(&client_id)?;
            Some(metrics::KeyGasToday {
                account,
                client_id,
                gas_used: spent.gas_used,
                fee_wei: spent.fee_wei,
            })
        })
        .collect())
}

// ---- settle admission ----

/// Why a settle was refused by its key's or its account's limits (403 `FORBIDDEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    KeyCredits,
    AccountCredits,
    AccountGasBudget,
}

impl Refusal {
    /// The reason recorded on the ledger row (a retry after a top-up reclaims the row).
    pub fn ledger_reason(self) -> &'static str {
        match self {
            Refusal::KeyCredits => "settle_credits_exhausted",
            Refusal::AccountCredits => "account_settle_credits_exhausted",
            Refusal::AccountGasBudget => "account_gas_budget_spent",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::KeyCredits => "this client key has no settle credits left",
            Refusal::AccountCredits => "this account has no settle credits left",
            Refusal::AccountGasBudget => {
                "this account's gas budget for today (UTC) is spent; it renews at 00:00 UTC"
            }
        }
    }
}

/// What one settlement was charged: given back (`refund`) if it sends nothing.
#[derive(Debug, Clone)]
pub struct Charge {
    client_id: String,
    key: bool,
    account: Option<i64>,
}

impl Charge {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// Admit one new settlement of `client_id`: refused when its account's gas budget for today
/// is spent, or when its key or its account has no settle credit left; otherwise a credit of
/// each that is limited is used. `Ok(None)`: admitted, nothing charged.
pub async fn charge_settle(
    db: &DatabaseConnection,
    metrics: &MetricsHandle,
    client_id: &str,
    key_limited: bool,
    account: &AccountLimits,
) -> ServiceResult<Result<Option<Charge>, Refusal>> {
    if let Some(budget) = account.gas_budget_wei {
        let (_, spent, _) = account_spent_today(db, metrics, account.user_id).await?;
        if spent.fee_wei >= budget {
            return Ok(Err(Refusal::AccountGasBudget));
        }
    }
    if key_limited && !super::use_settle_credit(db, client_id).await? {
        return Ok(Err(Refusal::KeyCredits));
    }
    let charge = Charge {
        client_id: client_id.to_owned(),
        key: key_limited,
        account: None,
    };
    let account_charged = if account.credits_limited {
        match use_account_credit(db, account.user_id).await? {
            AccountCredit::Used => Some(account.user_id),
            AccountCredit::Unlimited => None,
            AccountCredit::NoneLeft => {
                refund(db, &charge).await?;
                return Ok(Err(Refusal::AccountCredits));
            }
        }
    } else {
        None
    };
    Ok(Ok((charge.key || account_charged.is_some()).then_some(
        Charge {
            account: account_charged,
            ..charge
        },
    )))
}

enum AccountCredit {
    Used,
    NoneLeft,
    /// The limit was lifted since the key was read: nothing to use.
    Unlimited,
}

async fn use_account_credit(db: &DatabaseConnection, user_id: i64) -> ServiceResult<AccountCredit> {
    let used = user::Entity::update_many()
        .col_expr(
            user::Column::SettleCredits,
            Expr::col(user::Column::SettleCredits).sub(1),
        )
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::SettleCredits.gt(0))
        .exec(db)
        .await?;
    if used.rows_affected == 1 {
        return Ok(AccountCredit::Used);
    }
    let limited = find_user(db, user_id).await?.settle_credits.is_some();
    Ok(if limited {
        AccountCredit::NoneLeft
    } else {
        AccountCredit::Unlimited
    })
}

/// Give back what a settle that sent nothing was charged.
pub async fn refund(db: &DatabaseConnection, charge: &Charge) -> ServiceResult<()> {
    if charge.key {
        super::refund_settle_credit(db, &charge.client_id).await?;
    }
    if let Some(user_id) = charge.account {
        user::Entity::update_many()
            .col_expr(
                user::Column::SettleCredits,
                Expr::col(user::Column::SettleCredits).add(1),
            )
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::SettleCredits.is_not_null())
            .exec(db)
            .await?;
    }
    Ok(())
}

// ---- caps ----

/// The account's live keys: neither revoked nor expired.
pub fn live_keys(user_id: i64) -> Select<client::Entity> {
    client::Entity::find()
        .filter(client::Column::UserId.eq(user_id))
        .filter(client::Column::RevokedAt.is_null())
        .filter(
            Condition::any()
                .add(client::Column::ExpiresAt.is_null())
                .add(client::Column::ExpiresAt.gt(Utc::now())),
        )
}

/// The account's resources.
pub fn resources_of(user_id: i64) -> Select<resource::Entity> {
    resource::Entity::find().filter(resource::Column::UserId.eq(user_id))
}

/// Begin a transaction in which the account has fewer than `cap` of `counted` (named `what` in
/// the refusal): insert the new one in it, then commit. The account's row is locked first, by
/// a write that changes nothing (PostgreSQL holds the row lock, SQLite its write lock, until
/// the end of the transaction), so a concurrent create for the same account, on any instance,
/// waits for this one and then counts it.
pub async fn begin_within_cap<E>(
    db: &DatabaseConnection,
    user_id: i64,
    counted: Select<E>,
    cap: u64,
    what: &str,
) -> ServiceResult<DatabaseTransaction>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let txn = db.begin().await?;
    let locked = user::Entity::update_many()
        .col_expr(
            user::Column::UpdatedAt,
            Expr::col(user::Column::UpdatedAt).into(),
        )
        .filter(user::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    if locked.rows_affected != 1 {
        return Err(ServiceError::NotFound("user"));
    }
    if counted.count(&txn).await? >= cap {
        return Err(ServiceError::LimitExceeded(format!(
            "an account may have at most {cap} {what}"
        )));
    }
    Ok(txn)
}

// ---- the operator's changes ----

impl AuthHandle {
    /// The operator sets or adjusts an account's settle credits, rate limit or gas budget
    /// (`PATCH /admin/users/{id}`).
    pub async fn operate_account(&self, user_id: i64, change: AccountChange) -> ServiceResult<()> {
        if let Some(credits) = change.credits {
            check_credit_change(credits)?;
        }
        if let Some(Some(n)) = change.rate_limit_per_second {
            if n > MAX_RATE_LIMIT {
                return Err(ServiceError::InvalidInput(format!(
                    "rateLimitPerSecond must be between 0 (unlimited) and {MAX_RATE_LIMIT}, or null for the default"
                )));
            }
        }
        if change.credits.is_none()
            && change.rate_limit_per_second.is_none()
            && change.gas_budget_wei.is_none()
        {
            return Err(ServiceError::InvalidInput(
                "nothing to change: give settleCredits, addSettleCredits, rateLimitPerSecond or gasBudgetWeiPerDay"
                    .into(),
            ));
        }
        let res = operate(&self.db, user_id, change).await;
        // The account's limits are cached with each of its keys: they re-read it on next use.
        self.account_changed(user_id).await;
        res
    }

    /// The caps of every account.
    pub fn caps(&self) -> AccountCaps {
        self.caps
    }
}

async fn operate(
    db: &DatabaseConnection,
    user_id: i64,
    change: AccountChange,
) -> ServiceResult<()> {
    let row = find_user(db, user_id).await?;
    let mut update = user::Entity::update_many().filter(user::Column::Id.eq(row.id));
    if let Some(credits) = change.credits {
        update = apply_credit_change(
            update,
            user::Column::SettleCredits,
            row.settle_credits,
            credits,
            "account",
        )?;
    }
    if let Some(rate) = change.rate_limit_per_second {
        update = update.col_expr(
            user::Column::RateLimitPerSecond,
            Expr::value(rate.map(|n| n as i32)),
        );
    }
    if let Some(budget) = change.gas_budget_wei {
        update = update.col_expr(
            user::Column::GasBudgetWei,
            Expr::value(budget.map(|b| b.to_string())),
        );
    }
    // The change and the fleet's notice of it commit together (`key_changes`).
    let txn = db.begin().await?;
    if update.exec(&txn).await?.rows_affected != 1 {
        return Err(credit_change_refused(change.credits, "account"));
    }
    crate::key_changes::notify_account_changed(&txn, user_id).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_budget_refuses_rather_than_frees() {
        assert_eq!(parse_budget("1000"), U256::from(1000));
        assert_eq!(parse_budget("0x10"), U256::ZERO);
        assert_eq!(parse_budget(""), U256::ZERO);
    }
}
