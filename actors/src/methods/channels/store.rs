//! Channel state in the database the fleet shares (`channels`): the config, the on-chain state
//! as last read, and the highest voucher accepted. The accept is one conditional `UPDATE` (the
//! new ceiling above the accepted one and within the balance), so two instances verifying
//! vouchers of one channel never both accept the same amount: the highest wins, anything at or
//! below it is a replay.
//!
//! A deposit's voucher is accepted when the deposit's ledger row is claimed, before anything is
//! sent (`accept_deposit`), and stands or falls with that row: while the deposit is not mined
//! the channel names the row (`deposit_row`) and keeps the voucher accepted before
//! (`prior_*`); once the row is resolved (`resolve_deposit`) the mark goes, and a deposit that
//! finally failed takes its voucher with it (the channel returns to the prior one). One such
//! deposit per channel at a time; a higher voucher accepted meanwhile supersedes it.

use alloy::primitives::{B256, U256};
use entities::channel::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use x402::batch_settlement::ChannelConfig;

/// A `uint128` as stored: 39 zero-padded decimal digits, which compare as the numbers do.
pub fn pad(v: u128) -> String {
    format!("{v:039}")
}

fn unpad(s: &str) -> Result<u128, DbErr> {
    s.parse()
        .map_err(|_| DbErr::Custom(format!("channels: `{s}` is not a stored amount")))
}

fn id_key(id: B256) -> String {
    format!("{id:#x}")
}

/// What the contract says of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnChain {
    pub balance: u128,
    pub total_claimed: u128,
    pub withdraw_requested_at: u64,
    pub refund_nonce: U256,
}

/// A channel row, its amounts read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: B256,
    pub chain: OnChain,
    /// The highest voucher ceiling accepted.
    pub accepted: u128,
    pub accepted_signature: Option<String>,
    /// The ledger row of a deposit not known to be mined whose voucher is `accepted`.
    pub deposit_row: Option<i64>,
    /// The voucher accepted before that deposit's.
    pub prior_accepted: Option<u128>,
    pub synced_at: u64,
}

impl TryFrom<Model> for Channel {
    type Error = DbErr;

    fn try_from(m: Model) -> Result<Self, DbErr> {
        Ok(Channel {
            id: m
                .channel_id
                .parse()
                .map_err(|_| DbErr::Custom(format!("channels: bad id {}", m.channel_id)))?,
            chain: OnChain {
                balance: unpad(&m.balance)?,
                total_claimed: unpad(&m.total_claimed)?,
                withdraw_requested_at: u64::try_from(m.withdraw_requested_at).unwrap_or(0),
                refund_nonce: m.refund_nonce.parse().unwrap_or_default(),
            },
            accepted: unpad(&m.accepted)?,
            accepted_signature: m.accepted_signature,
            deposit_row: m.deposit_row,
            prior_accepted: m.prior_accepted.as_deref().map(unpad).transpose()?,
            synced_at: u64::try_from(m.synced_at).unwrap_or(0),
        })
    }
}

pub async fn load(db: &DatabaseConnection, id: B256) -> Result<Option<Channel>, DbErr> {
    Entity::find_by_id(id_key(id))
        .one(db)
        .await?
        .map(Channel::try_from)
        .transpose()
}

/// Record what the chain said of channel `id` at `now` (creating the row on first sight); the
/// accepted voucher is untouched.
pub async fn record_chain(
    db: &DatabaseConnection,
    network: &str,
    id: B256,
    config: &ChannelConfig,
    chain: &OnChain,
    now: u64,
) -> Result<(), DbErr> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let addr = |a: alloy::primitives::Address| format!("{a:#x}");
    let row = ActiveModel {
        channel_id: Set(id_key(id)),
        network: Set(network.to_owned()),
        payer: Set(addr(config.payer)),
        payer_authorizer: Set(addr(config.payerAuthorizer)),
        receiver: Set(addr(config.receiver)),
        receiver_authorizer: Set(addr(config.receiverAuthorizer)),
        token: Set(addr(config.token)),
        withdraw_delay: Set(config.withdrawDelay.to::<i64>()),
        salt: Set(format!("{:#x}", config.salt)),
        balance: Set(pad(chain.balance)),
        total_claimed: Set(pad(chain.total_claimed)),
        withdraw_requested_at: Set(i64::try_from(chain.withdraw_requested_at).unwrap_or(0)),
        refund_nonce: Set(chain.refund_nonce.to_string()),
        accepted: Set(pad(0)),
        accepted_signature: Set(None),
        deposit_row: Set(None),
        prior_accepted: Set(None),
        prior_signature: Set(None),
        synced_at: Set(now),
        updated_at: Set(now),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::ChannelId)
                .update_columns([
                    Column::Balance,
                    Column::TotalClaimed,
                    Column::WithdrawRequestedAt,
                    Column::RefundNonce,
                    Column::SyncedAt,
                    Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(db)
        .await
        .map(|_| ())
}

fn at(now: u64) -> SimpleExpr {
    Expr::value(i64::try_from(now).unwrap_or(i64::MAX))
}

fn hex(signature: &[u8]) -> String {
    format!("0x{}", alloy::hex::encode(signature))
}

/// Accept a voucher of ceiling `max` on channel `id`: only if it is above the accepted one and
/// within the recorded balance, atomically. `false`: refused (a replay, a lost race, or more
/// than the balance). A deposit's voucher accepted before it is superseded: its deposit's
/// outcome no longer decides the accepted voucher.
pub async fn accept(
    db: &DatabaseConnection,
    id: B256,
    max: u128,
    signature: &[u8],
    now: u64,
) -> Result<bool, DbErr> {
    let amount = pad(max);
    let done = Entity::update_many()
        .col_expr(Column::Accepted, Expr::value(amount.clone()))
        .col_expr(Column::AcceptedSignature, Expr::value(hex(signature)))
        .col_expr(Column::DepositRow, Expr::value(Option::<i64>::None))
        .col_expr(Column::PriorAccepted, Expr::value(Option::<String>::None))
        .col_expr(Column::PriorSignature, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, at(now))
        .filter(Column::ChannelId.eq(id_key(id)))
        .filter(Column::Accepted.lt(amount.clone()))
        .filter(Column::Balance.gte(amount))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// How accepting a deposit's voucher went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositAccept {
    /// Accepted for ledger row `row` (or it already was: the row claimed again).
    Accepted,
    /// Another deposit's voucher waits on its row.
    Busy,
    /// At or below the accepted voucher, or beyond the balance with the deposit.
    Refused,
}

/// Accept the voucher (`max`) of the deposit (`amount`) whose ledger row `row` was just
/// claimed: above the accepted one, within the recorded balance plus the deposit, and no other
/// deposit's voucher pending on the channel. The voucher accepted before is kept, to return to
/// if the deposit fails.
pub async fn accept_deposit(
    db: &DatabaseConnection,
    id: B256,
    row: i64,
    max: u128,
    amount: u128,
    signature: &[u8],
    now: u64,
) -> Result<DepositAccept, DbErr> {
    let ceiling = pad(max);
    let done = Entity::update_many()
        .col_expr(Column::PriorAccepted, Expr::col(Column::Accepted).into())
        .col_expr(
            Column::PriorSignature,
            Expr::col(Column::AcceptedSignature).into(),
        )
        .col_expr(Column::Accepted, Expr::value(ceiling.clone()))
        .col_expr(Column::AcceptedSignature, Expr::value(hex(signature)))
        .col_expr(Column::DepositRow, Expr::value(row))
        .col_expr(Column::UpdatedAt, at(now))
        .filter(Column::ChannelId.eq(id_key(id)))
        .filter(Column::DepositRow.is_null())
        .filter(Column::Accepted.lt(ceiling))
        .filter(Column::Balance.gte(pad(max.saturating_sub(amount))))
        .exec(db)
        .await?;
    if done.rows_affected == 1 {
        return Ok(DepositAccept::Accepted);
    }
    Ok(match load(db, id).await? {
        Some(c) if c.deposit_row == Some(row) && c.accepted == max => DepositAccept::Accepted,
        Some(c) if c.deposit_row.is_some() => DepositAccept::Busy,
        _ => DepositAccept::Refused,
    })
}

/// The deposit of ledger row `row` is resolved: mined (its voucher stays accepted), or failed
/// for good (the channel returns to the voucher accepted before it). Either way the mark goes.
pub async fn resolve_deposit(
    db: &DatabaseConnection,
    id: B256,
    row: i64,
    mined: bool,
    now: u64,
) -> Result<(), DbErr> {
    let mut update = Entity::update_many();
    if !mined {
        update = update
            .col_expr(
                Column::Accepted,
                Expr::cust(format!("COALESCE(prior_accepted, '{}')", pad(0))),
            )
            .col_expr(
                Column::AcceptedSignature,
                Expr::col(Column::PriorSignature).into(),
            );
    }
    update
        .col_expr(Column::DepositRow, Expr::value(Option::<i64>::None))
        .col_expr(Column::PriorAccepted, Expr::value(Option::<String>::None))
        .col_expr(Column::PriorSignature, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, at(now))
        .filter(Column::ChannelId.eq(id_key(id)))
        .filter(Column::DepositRow.eq(row))
        .exec(db)
        .await
        .map(|_| ())
}
