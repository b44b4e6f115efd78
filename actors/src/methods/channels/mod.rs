//! Payment channels: the x402 `batch-settlement` scheme on EVM (`x402::batch_settlement`).
//!
//! A voucher is verified off-chain (the config hashes to the channel id and matches the
//! requirements; ECDSA by the `payerAuthorizer`), or, when the `payerAuthorizer` is zero, as
//! the contract judges the payer's own signature (ECDSA without code, else ERC-1271; one
//! bounded round trip, `check_payer_signature`; such a payer's deposit authorization is left
//! to the token, in the deposit's simulation); then against the channel's state in the shared
//! database (`store`): read from the contract when the row is missing or older than
//! `sync_ttl`, else no RPC call at all. A `voucher` payload is accepted at `/verify` by one
//! conditional `UPDATE` (`store::accept`): the highest ceiling wins, anything at or below the
//! accepted one is a replay. A `deposit` is verified the same way (the deposit counted in the balance) and
//! settled through its collector by the shared pipeline: the ERC-3009 collector (ledger row
//! keyed by the deposit's ERC-3009 nonce) or the Permit2 collector (`permitWitnessTransferFrom`,
//! witness the channel id; ledger row keyed by the Permit2 nonce; the payer's allowance to
//! Permit2 read with its balance, unless the payment carries an `eip2612GasSponsoring` permit of
//! Permit2, passed in `collectorData`); its voucher is accepted with the deposit's ledger claim,
//! before anything is sent (`reserve`), and stands or falls with that row (`resolve_deposit`).
//!
//! Every answer carries the channel snapshot the spec requires (`extra` of `/verify`,
//! `extra.channelState` of `/settle`).
//!
//! The server's payloads (`server`): `claim` (`claimWithSignature`), `settle` (the sweep, its
//! ledger key the receiver's totals) and the completed `refund` (`refundWithSignature`).
//!
//! With a key configured, the facilitator is a merchant's delegated `receiverAuthorizer`: it
//! signs the claims and refunds of channels naming it (advertised in `/supported`).
//!
//! The managed claimer of delegated channels is `crate::facilitator::channel_claimer`.
//!
//! Not taken: ERC-6492 (undeployed wallet) deposit signatures and the
//! `erc20ApprovalGasSponsoring` extension.

mod deposit;
mod server;
pub mod store;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde_json::Value;
use x402::batch_settlement::checks::{self, CheckedVoucher, VoucherSigner};
use x402::batch_settlement::wire::{ChannelPayload, ChannelSnapshot};
use x402::batch_settlement::{IX402BatchSettlement, BATCH_SETTLEMENT, SCHEME};
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{
    Checked, Family, MethodContext, MethodFuture, MethodKey, PaymentMethod, Phase, SettleCall,
    Settled, Transfer,
};
use crate::chain::erc1271;
use crate::error::{ServiceError, ServiceResult};
use crate::facilitator::NetworkRuntime;
use deposit::resolve_deposit;
use store::{Channel, OnChain};

/// How long a channel's on-chain state, as last read, is trusted by default. Shorter than the
/// contract's least withdrawal delay (900 s) by far: a payer's withdrawal is seen long before
/// it can take the escrow.
pub const DEFAULT_SYNC_TTL_SECS: u64 = 60;

/// A `/verify` answer of a method that answers it itself.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnVerify {
    pub reason: Option<Reason>,
    /// The answer's `extra`: the channel snapshot.
    pub extra: Option<Value>,
}

/// The `batch-settlement` method.
pub struct BatchSettlement {
    pub sync_ttl_secs: u64,
    /// The key it signs claims and refunds with for merchants who delegate their channels'
    /// `receiverAuthorizer` to the facilitator (advertised in `/supported`).
    pub authorizer: Option<PrivateKeySigner>,
}

impl Default for BatchSettlement {
    fn default() -> Self {
        Self {
            sync_ttl_secs: DEFAULT_SYNC_TTL_SECS,
            authorizer: None,
        }
    }
}

fn snapshot(id: B256, chain: &OnChain) -> ChannelSnapshot {
    ChannelSnapshot {
        channel_id: id,
        balance: chain.balance,
        total_claimed: chain.total_claimed,
        withdraw_requested_at: chain.withdraw_requested_at,
        refund_nonce: chain.refund_nonce,
    }
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(format!("rpc: {e}"))
}

/// `channels(id)`, `pendingWithdrawals(id)`, `refundNonce(id)` in one batched round trip.
pub async fn read_chain(rt: &NetworkRuntime, id: B256) -> ServiceResult<OnChain> {
    use IX402BatchSettlement as C;
    let mut batch = alloy::rpc::client::BatchRequest::new(rt.provider.client());
    let call = |data: Vec<u8>| {
        (
            TransactionRequest::default()
                .to(BATCH_SETTLEMENT)
                .input(TransactionInput::new(data.into())),
            "latest",
        )
    };
    let channel = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(C::channelsCall { channelId: id }.abi_encode()),
        )
        .map_err(unavailable)?;
    let withdrawal = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(C::pendingWithdrawalsCall { channelId: id }.abi_encode()),
        )
        .map_err(unavailable)?;
    let nonce = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(C::refundNonceCall { channelId: id }.abi_encode()),
        )
        .map_err(unavailable)?;
    batch.send().await.map_err(unavailable)?;
    let (channel, withdrawal, nonce) = (
        channel.await.map_err(unavailable)?,
        withdrawal.await.map_err(unavailable)?,
        nonce.await.map_err(unavailable)?,
    );
    let channel = C::channelsCall::abi_decode_returns(&channel).map_err(unavailable)?;
    let withdrawal =
        C::pendingWithdrawalsCall::abi_decode_returns(&withdrawal).map_err(unavailable)?;
    let refund_nonce = C::refundNonceCall::abi_decode_returns(&nonce).map_err(unavailable)?;
    Ok(OnChain {
        balance: channel.balance,
        total_claimed: channel.totalClaimed,
        withdraw_requested_at: withdrawal.initiatedAt.to::<u64>(),
        refund_nonce,
    })
}

/// Rule 6 when the payer signs (`payerAuthorizer` zero): as the contract's `SignatureChecker`,
/// ECDSA by a payer without code, else the payer's ERC-1271 `isValidSignature` of the voucher's
/// digest, asked of the chain now in one round trip (a `payerAuthorizer`'s ECDSA voucher was
/// checked with the payload, no RPC). A revert or another answer: refused; no answer: the RPC
/// failure it is, never "valid". A signature longer than a wallet's may be is refused before
/// anything is asked.
async fn check_payer_signature(
    ctx: &MethodContext<'_>,
    rt: &NetworkRuntime,
    v: &CheckedVoucher,
) -> ServiceResult<Result<(), Reason>> {
    let VoucherSigner::Payer { digest } = v.signer else {
        return Ok(Ok(()));
    };
    if v.signature.len() > ctx.max_signature_bytes {
        return Ok(Err(Reason::BatchSettlementVoucherSignature));
    }
    let valid = erc1271::is_valid_signature_now(&rt.provider, v.config.payer, digest, &v.signature)
        .await
        .map_err(unavailable)?;
    Ok(if valid {
        Ok(())
    } else {
        Err(Reason::BatchSettlementVoucherSignature)
    })
}

impl BatchSettlement {
    /// The channel as stored, read from the chain first when the row is missing, older than
    /// the TTL, `force`d, or its pending deposit just resolved.
    async fn channel(
        &self,
        ctx: &MethodContext<'_>,
        rt: &NetworkRuntime,
        v: &CheckedVoucher,
        force: bool,
    ) -> ServiceResult<(Channel, bool)> {
        let now = ctx.now();
        if let Some(c) = store::load(ctx.db, v.channel_id).await? {
            // A deposit resolved since changes the balance: read it.
            let resolved = resolve_deposit(ctx, &c).await?;
            if !force && !resolved && c.synced_at + self.sync_ttl_secs > now {
                return Ok((c, false));
            }
        }
        let chain = read_chain(rt, v.channel_id).await?;
        store::record_chain(
            ctx.db,
            rt.entry.info.v1_name,
            v.channel_id,
            &v.config,
            &chain,
            now,
        )
        .await?;
        let c = store::load(ctx.db, v.channel_id)
            .await?
            .ok_or_else(|| ServiceError::Unavailable("channels: row vanished".into()))?;
        Ok((c, true))
    }

    /// The voucher against the channel's state; a balance refusal on a state not just read is
    /// asked of the chain again (someone may have topped the channel up elsewhere).
    async fn judge_state(
        &self,
        ctx: &MethodContext<'_>,
        rt: &NetworkRuntime,
        v: &CheckedVoucher,
    ) -> ServiceResult<(Channel, Result<(), Reason>)> {
        let (mut c, mut fresh) = self.channel(ctx, rt, v, false).await?;
        loop {
            let verdict =
                checks::check_against_state(v, c.chain.balance, c.chain.total_claimed, c.accepted);
            let stale_refusal = matches!(
                verdict,
                Err(Reason::BatchSettlementCumulativeExceedsBalance
                    | Reason::BatchSettlementChannelNotFound)
            ) && !fresh;
            if !stale_refusal {
                return Ok((c, verdict));
            }
            (c, fresh) = self.channel(ctx, rt, v, true).await?;
        }
    }

    async fn verify_voucher(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        v: &CheckedVoucher,
    ) -> ServiceResult<OwnVerify> {
        let Some(rt) = ctx.runtime else {
            return Ok(OwnVerify {
                reason: Some(Reason::InvalidNetwork),
                extra: None,
            });
        };
        if let Err(reason) = check_payer_signature(ctx, rt, v).await? {
            return Ok(OwnVerify {
                reason: Some(reason),
                extra: None,
            });
        }
        let (c, verdict) = self.judge_state(ctx, rt, v).await?;
        let extra = |c: &Channel| serde_json::to_value(snapshot(c.id, &c.chain)).ok();
        if let Err(reason) = verdict {
            return Ok(OwnVerify {
                reason: Some(reason),
                extra: extra(&c),
            });
        }
        if v.deposit.is_some() {
            // Rule 8 and the rest of a deposit: the payer's balance, and the deposit simulated
            // as one of our signers would send it.
            let from = rt.router.signers().first().copied().unwrap_or_default();
            if let Err(reason) = self.deposit_call(rt, v, from, Phase::Verify).await? {
                return Ok(OwnVerify {
                    reason: Some(reason),
                    extra: extra(&c),
                });
            }
        }
        let is_voucher = matches!(
            req.channel.as_ref().map(|c| &c.payload),
            Some(ChannelPayload::Voucher { .. })
        );
        if is_voucher
            && !store::accept(
                ctx.db,
                v.channel_id,
                v.max_claimable,
                &v.signature,
                ctx.now(),
            )
            .await?
        {
            // Lost to a voucher at least as high (a replay, or another instance's).
            let c = store::load(ctx.db, v.channel_id).await?.unwrap_or(c);
            let reason =
                checks::check_against_state(v, c.chain.balance, c.chain.total_claimed, c.accepted)
                    .err()
                    .unwrap_or(Reason::BatchSettlementCumulativeBelowClaimed);
            return Ok(OwnVerify {
                reason: Some(reason),
                extra: extra(&c),
            });
        }
        Ok(OwnVerify {
            reason: None,
            extra: extra(&c),
        })
    }
}

impl PaymentMethod for BatchSettlement {
    fn name(&self) -> &'static str {
        "batch-settlement"
    }

    fn keys(&self) -> Vec<MethodKey> {
        vec![MethodKey::new(2, SCHEME, Family::Eip155, Transfer::Channel)]
    }

    fn check(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        phase: Phase,
    ) -> Result<Checked, Reason> {
        let Some(channel) = &req.channel else {
            return Err(Reason::InvalidPayload);
        };
        let Some(rt) = ctx.runtime else {
            return Err(Reason::InvalidNetwork);
        };
        let known = ctx
            .assets()
            .iter()
            .any(|a| a.active && a.asset.parse::<Address>().ok() == Some(req.asset));
        if !known {
            return Err(Reason::InvalidPaymentRequirements);
        }
        let checked = checks::check(req, channel, phase, ctx.now(), rt.min_amount(&req.asset))?;
        Ok(Checked::new(checked))
    }

    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(async move {
            let Some(rt) = ctx.runtime else {
                return Ok(Err(Reason::InvalidNetwork));
            };
            let voucher = checked
                .get::<Option<CheckedVoucher>>()
                .and_then(Option::as_ref);
            // A deposit's or a refund's voucher, as at verify (a claim's rows are the
            // contract's to check, in its simulation).
            if let Some(v) = voucher {
                if let Err(reason) = check_payer_signature(ctx, rt, v).await? {
                    return Ok(Err(reason));
                }
            }
            match (voucher, req.channel.as_ref().map(|c| &c.payload)) {
                (Some(v), _) if v.deposit.is_some() => {
                    self.judge_deposit(ctx, v, from, phase).await
                }
                (
                    Some(v),
                    Some(ChannelPayload::Refund {
                        amount,
                        refund_nonce,
                        claims,
                        refund_authorizer_signature,
                        claim_authorizer_signature,
                        ..
                    }),
                ) => {
                    let refund = server::Refund {
                        amount: *amount,
                        nonce: *refund_nonce,
                        claims: claims.as_deref(),
                        refund_signature: refund_authorizer_signature.as_ref(),
                        claim_signature: claim_authorizer_signature.as_ref(),
                        authorizer: self.authorizer.as_ref(),
                    };
                    server::judge_refund(ctx, rt, v, &refund, from).await
                }
                (
                    _,
                    Some(ChannelPayload::Claim {
                        claims,
                        claim_authorizer_signature,
                    }),
                ) => {
                    let signature = claim_authorizer_signature.as_ref();
                    let authorizer = self.authorizer.as_ref();
                    server::judge_claim(rt, claims, signature, authorizer, from).await
                }
                (_, Some(ChannelPayload::Settle { receiver, token })) => {
                    server::judge_sweep(rt, *receiver, *token, from).await
                }
                _ => Ok(Err(Reason::BatchSettlementPayloadType)),
            }
        })
    }

    fn receiver_authorizer(&self) -> Option<Address> {
        self.authorizer.as_ref().map(PrivateKeySigner::address)
    }

    fn answers_verify(&self) -> bool {
        true
    }

    fn verify_own<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
    ) -> MethodFuture<'a, OwnVerify> {
        Box::pin(async move {
            match checked.get::<Option<CheckedVoucher>>() {
                Some(Some(v)) => self.verify_voucher(ctx, req, v).await,
                _ => Ok(OwnVerify {
                    reason: Some(Reason::BatchSettlementPayloadType),
                    extra: None,
                }),
            }
        })
    }

    fn reserve<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        checked: &'a Checked,
        row: i64,
    ) -> MethodFuture<'a, Result<(), Reason>> {
        Box::pin(async move {
            let Some(Some(v)) = checked.get::<Option<CheckedVoucher>>() else {
                return Ok(Ok(()));
            };
            let Some(d) = &v.deposit else {
                return Ok(Ok(()));
            };
            // The deposit's voucher is accepted with its row: a copy of it is a replay from now
            // on, and it goes again if the deposit fails.
            let accept = || {
                store::accept_deposit(
                    ctx.db,
                    v.channel_id,
                    row,
                    v.max_claimable,
                    d.amount,
                    &v.signature,
                    ctx.now(),
                )
            };
            let mut outcome = accept().await?;
            if outcome == store::DepositAccept::Busy {
                // The other deposit may be resolved by now.
                if let Some(c) = store::load(ctx.db, v.channel_id).await? {
                    if resolve_deposit(ctx, &c).await? {
                        outcome = accept().await?;
                    }
                }
            }
            Ok(match outcome {
                store::DepositAccept::Accepted => Ok(()),
                store::DepositAccept::Busy => Err(Reason::BatchSettlementChannelBusy),
                store::DepositAccept::Refused => {
                    let c = store::load(ctx.db, v.channel_id).await?;
                    Err(c
                        .and_then(|c| {
                            checks::check_against_state(
                                v,
                                c.chain.balance,
                                c.chain.total_claimed,
                                c.accepted,
                            )
                            .err()
                        })
                        .unwrap_or(Reason::BatchSettlementCumulativeBelowClaimed))
                }
            })
        })
    }

    fn settle_key<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        network: &'a str,
    ) -> MethodFuture<'a, Option<crate::ledger::Key>> {
        Box::pin(async move {
            match (ctx.runtime, req.channel.as_ref().map(|c| &c.payload)) {
                (Some(rt), Some(ChannelPayload::Settle { receiver, token })) => {
                    let totals = server::receiver_totals(rt, *receiver, *token).await?;
                    Ok(Some(server::sweep_key(network, *receiver, *token, totals)))
                }
                _ => Ok(None),
            }
        })
    }

    fn settled<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        tx: B256,
    ) -> MethodFuture<'a, Settled> {
        Box::pin(async move {
            let Some(rt) = ctx.runtime else {
                return Ok(Settled::default());
            };
            let payload = req.channel.as_ref().map(|c| &c.payload);
            if let Some(ChannelPayload::Claim { claims, .. }) = payload {
                // The claimed channels' new state, as the chain has it now.
                for row in claims {
                    if let Some(config) = row.voucher.channel.to_config() {
                        let id =
                            x402::batch_settlement::channel_id(&config, rt.entry.info.chain_id);
                        let chain = read_chain(rt, id).await?;
                        let network = rt.entry.info.v1_name;
                        store::record_chain(ctx.db, network, id, &config, &chain, ctx.now())
                            .await?;
                    }
                }
                // A claim moves no funds: the spec's answer has an empty `amount`.
                return Ok(Settled {
                    amount_empty: true,
                    ..Settled::default()
                });
            }
            if let Some(ChannelPayload::Settle { receiver, token }) = payload {
                // What the sweep paid, as its event says.
                let receipt = server::receipt(rt, tx).await?;
                let amount = receipt.map_or(0, |r| server::swept(&r, *receiver, *token));
                return Ok(Settled {
                    amount: Some(U256::from(amount)),
                    ..Settled::default()
                });
            }
            let Some(Some(v)) = checked.get::<Option<CheckedVoucher>>() else {
                return Ok(Settled::default());
            };
            // A deposit or a refund is mined: the state is the chain's. A deposit's voucher,
            // accepted when its row was claimed, stays (`channel` resolves the row); a refund's
            // answer says what it returned.
            let (c, _) = self.channel(ctx, rt, v, true).await?;
            let amount = if v.refund {
                let receipt = server::receipt(rt, tx).await?;
                let refunded = receipt.map_or(0, |r| server::refunded(&r, v.channel_id));
                Some(U256::from(refunded))
            } else {
                None
            };
            Ok(Settled {
                amount,
                extra: Some(serde_json::json!({ "channelState": snapshot(c.id, &c.chain) })),
                amount_empty: false,
            })
        })
    }
}
