//! The settlement ledger: one row per payment (an EIP-3009 authorization, a Permit2 permit,
//! or another method's payment, by its ledger key), unique on (network, asset, payer,
//! auth_nonce). Status moves `pending -> submitted -> mined -> confirmed`, or to `failed`
//! from any of them: `mined` is on chain but not yet `confirmations` blocks deep (a reorg may
//! still take it out); a `failed` row without a transaction sent nothing and may be claimed
//! again.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "settlements")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub network: String,
    pub asset: String,
    pub payer: String,
    pub auth_nonce: String,
    pub pay_to: String,
    /// Decimal string, atomic units.
    pub amount: String,
    pub valid_after: i64,
    pub valid_before: i64,
    pub x402_version: i16,
    pub request_hash: String,
    pub payment_id: Option<String>,
    /// The signed authorization (enough to re-broadcast or reconcile).
    pub payload: Json,
    pub status: String,
    pub tx_hash: Option<String>,
    pub signer: Option<String>,
    pub signer_nonce: Option<i64>,
    pub block_number: Option<i64>,
    pub gas_used: Option<i64>,
    /// Decimal string, wei.
    pub fee_wei: Option<String>,
    pub error_reason: Option<String>,
    pub client_id: Option<String>,
    /// The idempotency key (scoped by `client_id`) of the request that claimed this row: only
    /// a retry carrying it is answered from the row; any other copy is "nonce already used".
    pub idempotency_key: Option<String>,
    /// The instance responsible for the row's next step: its claimant, then its sender.
    pub instance_id: Option<String>,
    /// Set while the row waits for a lease holder (another instance) to send it.
    pub queued_at: Option<DateTimeUtc>,
    /// The call a lease holder makes for a queued row: the contract, and the 0x-hex calldata.
    pub call_to: Option<String>,
    pub calldata: Option<String>,
    /// The signed transaction (0x hex), re-broadcast as is after a takeover or a reorg.
    pub raw_tx: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
