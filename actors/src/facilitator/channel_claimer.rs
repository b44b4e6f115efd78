//! The managed claimer of payment channels (`batch-settlement`): the vouchers this facilitator
//! accepted on channels whose `receiverAuthorizer` is its own delegated key (the only ones whose
//! claims it can sign) are claimed with `claimWithSignature`, one transaction for the channels
//! of a token on a network.
//!
//! A pass (`claim_channels`) reads from the database the channels of our key with an accepted
//! voucher above what was claimed (the voucher accepted before a deposit still pending, never
//! the deposit's own), reads each one's state from the chain, and claims those that are due:
//! every one with a payer's withdrawal pending (`withdrawRequestedAt` set), and, on a pass with
//! `all`, every one with anything unclaimed. The claim is settled exactly as a server's `claim`
//! posted to `/settle` (the same request, built here): through the ledger, under the signer
//! leases, its key the claim's content, so the same claim from two instances is sent once.
//!
//! One claimer per network in a fleet: an instance passes over a network unless it holds the
//! lease of the network's first signer (lowest address), which one live instance holds at a
//! time (`claims_here`). Two instances that read the channels a voucher apart would otherwise
//! both build a claim, different ones, and pay gas twice for what one claim does.

use alloy::primitives::Address;
use entities::channel::{Column, Entity};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{json, Value};

use super::Facilitator;
use crate::error::{ServiceError, ServiceResult};
use crate::methods::channels::{read_chain, store};

/// Channels read per pass and network (in id order, so that two instances build the same
/// claim of the same state: one ledger key, sent once); rows per claim transaction.
const PASS_LIMIT: u64 = 500;
const CLAIM_ROWS: usize = 50;

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPass {
    /// Channels claimed by a claim this pass settled.
    pub claimed: usize,
    /// Claims settled (`success: true`).
    pub claims: usize,
}

impl Facilitator {
    /// The delegated authorizer's address, when channels are served and a key is configured.
    pub fn channels_claimer_key(&self) -> Option<Address> {
        let c = &self.inner.config;
        c.channels
            .then(|| c.channels_authorizer.as_ref().map(|k| k.address()))
            .flatten()
    }

    /// One pass of the claimer: claim the due channels of our key (see the module). `all`:
    /// every channel with an unclaimed voucher is due, not only those with a withdrawal pending.
    pub async fn claim_channels(&self, all: bool) -> ServiceResult<ClaimPass> {
        let Some(key) = self.channels_claimer_key() else {
            return Ok(ClaimPass::default());
        };
        let mut pass = ClaimPass::default();
        for rt in self.network_runtimes() {
            if !self.claims_here(rt) {
                continue;
            }
            let network = rt.entry.info.v1_name;
            let rows = Entity::find()
                .filter(Column::Network.eq(network))
                .filter(Column::ReceiverAuthorizer.eq(format!("{key:#x}")))
                .filter(
                    sea_orm::sea_query::Expr::col(Column::Accepted)
                        .gt(sea_orm::sea_query::Expr::col(Column::TotalClaimed)),
                )
                .order_by_asc(Column::ChannelId)
                .limit(PASS_LIMIT)
                .all(&self.inner.db)
                .await?;
            // token -> claim rows.
            let mut due: Vec<(Address, Vec<Value>)> = Vec::new();
            for m in rows {
                let Some((config, token)) = wire_config(&m) else {
                    continue;
                };
                let c = store::Channel::try_from(m.clone())?;
                // A deposit still pending: only the voucher accepted before it is ours to claim.
                let (amount, signature) = match c.deposit_row {
                    Some(_) => (c.prior_accepted.unwrap_or(0), m.prior_signature.clone()),
                    None => (c.accepted, c.accepted_signature.clone()),
                };
                let Some(signature) = signature.filter(|_| amount > c.chain.total_claimed) else {
                    continue;
                };
                let chain = read_chain(rt, c.id).await?;
                let typed = config_of(&config)?;
                store::record_chain(&self.inner.db, network, c.id, &typed, &chain, self.now())
                    .await?;
                if chain.total_claimed >= amount || (!all && chain.withdraw_requested_at == 0) {
                    continue;
                }
                let row = json!({
                    "voucher": { "channel": config, "maxClaimableAmount": amount.to_string() },
                    "signature": signature,
                    "totalClaimed": amount.to_string(),
                });
                match due.iter_mut().find(|(t, _)| *t == token) {
                    Some((_, rows)) => rows.push(row),
                    None => due.push((token, vec![row])),
                }
            }
            for (token, rows) in due {
                for chunk in rows.chunks(CLAIM_ROWS) {
                    let body = claim_body(rt.entry.info.caip2, token, key, chunk);
                    let req = x402::proto::parse_facilitator_request(&body)
                        .map_err(|e| ServiceError::Unavailable(format!("claimer: {e:?}")))?;
                    let answer = self.settle(&req, None).await?;
                    if answer.success {
                        pass.claims += 1;
                        pass.claimed += chunk.len();
                    } else {
                        tracing::warn!(
                            network,
                            channels = chunk.len(),
                            reason = ?answer.error_reason,
                            "channel claim not settled"
                        );
                    }
                }
            }
        }
        Ok(pass)
    }
}

impl Facilitator {
    /// Whether this instance is the network's claimer: always alone on its database; in a fleet,
    /// while it holds the lease of the network's first signer (by address).
    fn claims_here(&self, rt: &super::NetworkRuntime) -> bool {
        if !self.inner.config.fleet {
            return true;
        }
        rt.router
            .states()
            .min_by_key(|(address, _)| *address)
            .is_some_and(|(_, state)| state.epoch() != 0)
    }
}

/// The channel's config as the wire has it, and its token; `None` for a row that does not parse.
fn wire_config(m: &entities::channel::Model) -> Option<(Value, Address)> {
    let a = |s: &str| s.parse::<Address>().ok();
    let token = a(&m.token)?;
    let config = json!({
        "payer": a(&m.payer)?,
        "payerAuthorizer": a(&m.payer_authorizer)?,
        "receiver": a(&m.receiver)?,
        "receiverAuthorizer": a(&m.receiver_authorizer)?,
        "token": token,
        "withdrawDelay": u64::try_from(m.withdraw_delay).ok()?,
        "salt": m.salt,
    });
    Some((config, token))
}

fn config_of(config: &Value) -> ServiceResult<x402::batch_settlement::ChannelConfig> {
    serde_json::from_value::<x402::batch_settlement::wire::WireChannelConfig>(config.clone())
        .ok()
        .and_then(|c| c.to_config())
        .ok_or_else(|| ServiceError::Unavailable("claimer: a stored config does not parse".into()))
}

/// The server's `claim` of `rows` as `/settle` takes it, left unsigned for us to sign.
fn claim_body(network: &str, token: Address, authorizer: Address, rows: &[Value]) -> Value {
    let requirements = json!({
        "scheme": x402::batch_settlement::SCHEME,
        "network": network,
        "amount": "1",
        "asset": token,
        "payTo": rows[0]["voucher"]["channel"]["receiver"],
        "maxTimeoutSeconds": 3600,
        "extra": { "receiverAuthorizer": authorizer },
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": { "url": "urn:x402-facilitator:channel-claimer" },
            "accepted": requirements,
            "payload": { "type": "claim", "claims": rows },
        },
        "paymentRequirements": requirements,
    })
}
