//! The server-authored `/settle` payloads of `batch-settlement`: `claim` (`claimWithSignature`),
//! `settle` (the sweep of what a receiver claimed, to the receiver) and the completed `refund`
//! (`refundWithSignature`, after the claims it carries, in one `multicall`). Each is judged by
//! the chain as its sender would send it: nothing is sent for one that would revert or move
//! nothing. Their answers' amounts are what the mined transaction moved, read from its events.

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolValue};
use x402::batch_settlement::checks::{self, CheckedVoucher};
use x402::batch_settlement::wire::WireClaim;
use x402::batch_settlement::{
    channel_id, claim_batch_digest, refund_digest, IX402BatchSettlement as C, BATCH_SETTLEMENT,
};
use x402::Reason;

use super::{read_chain, store, unavailable};
use crate::error::ServiceResult;
use crate::facilitator::NetworkRuntime;
use crate::ledger::Key;
use crate::methods::{MethodContext, SettleCall};

/// `settle` costs one store and one transfer, but its estimate is bimodal: it returns early
/// when nothing is owed, so an estimate against a state that has not seen the claim yet would
/// under-gas it. Its gas limit is at least this (the reference facilitator's fixed limit).
const SWEEP_GAS_FLOOR: u64 = 120_000;

/// The call `data` to the contract as `from` would send it: its gas estimated (at least
/// `floor`), or `refused` when the estimate fails (it would revert).
async fn contract_call(
    rt: &NetworkRuntime,
    from: Address,
    data: Bytes,
    floor: u64,
    refused: Reason,
) -> ServiceResult<Result<SettleCall, Reason>> {
    let tx = TransactionRequest::default()
        .from(from)
        .to(BATCH_SETTLEMENT)
        .input(TransactionInput::new(data.clone()));
    let gas = match rt.provider.estimate_gas(tx).await {
        Ok(gas) => gas,
        Err(_) => return Ok(Err(refused)),
    };
    let Some(gas_limit) = rt.fees.gas_limit_for(gas.max(floor)) else {
        return Ok(Err(Reason::SettlementGasExceedsLimit));
    };
    Ok(Ok(SettleCall {
        to: BATCH_SETTLEMENT,
        data,
        gas_limit: Some(gas_limit),
    }))
}

/// The contract's claim rows; `None` when a row's config does not fit.
fn rows(claims: &[WireClaim]) -> Option<Vec<C::VoucherClaim>> {
    claims.iter().map(WireClaim::to_claim).collect()
}

/// `digest` signed by the facilitator's authorizer key.
fn sign(key: &PrivateKeySigner, digest: B256) -> ServiceResult<Bytes> {
    let signature = key.sign_hash_sync(&digest).map_err(unavailable)?;
    Ok(Bytes::from(signature.as_bytes().to_vec()))
}

/// The claim authorization of `rows`: the one given, else the facilitator's when it is every
/// row's `receiverAuthorizer` (a merchant who delegated it).
fn claim_authorization(
    rows: &[C::VoucherClaim],
    given: Option<&Bytes>,
    authorizer: Option<&PrivateKeySigner>,
    chain_id: u64,
) -> ServiceResult<Result<Bytes, Reason>> {
    match (given, authorizer) {
        (Some(signature), _) => Ok(Ok(signature.clone())),
        (None, None) => Ok(Err(Reason::BatchSettlementAuthorizerNotConfigured)),
        (None, Some(key)) => {
            if rows
                .iter()
                .any(|r| r.voucher.channel.receiverAuthorizer != key.address())
            {
                return Ok(Err(Reason::BatchSettlementAuthorizerAddressMismatch));
            }
            sign(key, claim_batch_digest(rows, chain_id)).map(Ok)
        }
    }
}

/// A server-authored claim: `claimWithSignature(rows, claimAuthorizerSignature)`, the
/// facilitator signing when it is the delegated authorizer. The contract checks every voucher
/// and the authorization; a row at or below what is claimed is a no-op there.
pub(super) async fn judge_claim(
    rt: &NetworkRuntime,
    claims: &[WireClaim],
    signature: Option<&Bytes>,
    authorizer: Option<&PrivateKeySigner>,
    from: Address,
) -> ServiceResult<Result<SettleCall, Reason>> {
    let Some(rows) = rows(claims).filter(|r| !r.is_empty()) else {
        return Ok(Err(Reason::BatchSettlementClaimPayload));
    };
    let chain_id = rt.entry.info.chain_id;
    let signature = match claim_authorization(&rows, signature, authorizer, chain_id)? {
        Ok(signature) => signature,
        Err(reason) => return Ok(Err(reason)),
    };
    let data = C::claimWithSignatureCall {
        voucherClaims: rows,
        authorizerSignature: signature,
    }
    .abi_encode();
    contract_call(
        rt,
        from,
        data.into(),
        0,
        Reason::BatchSettlementClaimSimulationFailed,
    )
    .await
}

/// What `receiver` has claimed and been paid in `token`: `receivers(receiver, token)`.
pub(super) async fn receiver_totals(
    rt: &NetworkRuntime,
    receiver: Address,
    token: Address,
) -> ServiceResult<(u128, u128)> {
    let data = C::receiversCall { receiver, token }.abi_encode();
    let tx = TransactionRequest::default()
        .to(BATCH_SETTLEMENT)
        .input(TransactionInput::new(data.into()));
    let out = rt.provider.call(tx).await.map_err(unavailable)?;
    let totals = C::receiversCall::abi_decode_returns(&out).map_err(unavailable)?;
    Ok((totals.totalClaimed, totals.totalSettled))
}

/// A sweep's ledger key: the receiver, the token and the totals it sweeps (claimed, settled).
/// Two sweeps of one state are one payment (one success, a copy refused); the next claim or
/// sweep makes the next one.
pub(super) fn sweep_key(
    network: &str,
    receiver: Address,
    token: Address,
    (claimed, settled): (u128, u128),
) -> Key {
    let nonce = keccak256((receiver, token, U256::from(claimed), U256::from(settled)).abi_encode());
    Key::new(network, token, receiver, nonce)
}

/// The sweep: `settle(receiver, token)` when the receiver has claimed more than it was paid.
pub(super) async fn judge_sweep(
    rt: &NetworkRuntime,
    receiver: Address,
    token: Address,
    from: Address,
) -> ServiceResult<Result<SettleCall, Reason>> {
    let (claimed, settled) = receiver_totals(rt, receiver, token).await?;
    if claimed <= settled {
        return Ok(Err(Reason::BatchSettlementNothingToSettle));
    }
    let data = C::settleCall { receiver, token }.abi_encode();
    contract_call(
        rt,
        from,
        data.into(),
        SWEEP_GAS_FLOOR,
        Reason::BatchSettlementSettleSimulationFailed,
    )
    .await
}

/// A completed refund, as the resource server sends it to `/settle`.
pub(super) struct Refund<'a> {
    pub amount: Option<u128>,
    pub nonce: Option<u128>,
    pub claims: Option<&'a [WireClaim]>,
    pub refund_signature: Option<&'a Bytes>,
    pub claim_signature: Option<&'a Bytes>,
    /// The facilitator's key, when merchants may delegate their `receiverAuthorizer` to it.
    pub authorizer: Option<&'a PrivateKeySigner>,
}

/// A completed refund: the channel read now; the nonce the contract expects (rule 11); some
/// unclaimed escrow left after the claims it carries; then `refundWithSignature`, after
/// `claimWithSignature` of those claims in one `multicall` when there are any. The facilitator
/// signs what the payload leaves unsigned when it is the channel's delegated authorizer, and
/// then only a refund whose claims cover every voucher it accepted on the channel: escrow it
/// accepted vouchers against is the merchant's, never returned to the payer by its signature.
pub(super) async fn judge_refund(
    ctx: &MethodContext<'_>,
    rt: &NetworkRuntime,
    v: &CheckedVoucher,
    r: &Refund<'_>,
    from: Address,
) -> ServiceResult<Result<SettleCall, Reason>> {
    let (Some(amount), Some(nonce), Some(claims)) = (r.amount, r.nonce, r.claims) else {
        return Ok(Err(Reason::BatchSettlementRefundPayload));
    };
    if amount == 0 {
        return Ok(Err(Reason::BatchSettlementRefundAmountInvalid));
    }
    let Some(rows) = rows(claims) else {
        return Ok(Err(Reason::BatchSettlementClaimPayload));
    };
    let chain = read_chain(rt, v.channel_id).await?;
    let network = rt.entry.info.v1_name;
    store::record_chain(ctx.db, network, v.channel_id, &v.config, &chain, ctx.now()).await?;
    if let Err(reason) = checks::check_against_state(v, chain.balance, chain.total_claimed, 0) {
        return Ok(Err(reason));
    }
    if U256::from(nonce) != chain.refund_nonce {
        return Ok(Err(Reason::BatchSettlementRefundSimulationFailed));
    }
    // What the claims leave unclaimed: nothing, and the refund would move nothing.
    let claimed = rows
        .iter()
        .filter(|row| channel_id(&row.voucher.channel, v.chain_id) == v.channel_id)
        .map(|row| row.totalClaimed)
        .fold(chain.total_claimed, u128::max);
    if chain.balance <= claimed {
        return Ok(Err(Reason::BatchSettlementRefundNoBalance));
    }
    let refund_signature = match (r.refund_signature, r.authorizer) {
        (Some(signature), _) => signature.clone(),
        (None, None) => return Ok(Err(Reason::BatchSettlementAuthorizerNotConfigured)),
        (None, Some(key)) => {
            if v.config.receiverAuthorizer != key.address() {
                return Ok(Err(Reason::BatchSettlementAuthorizerAddressMismatch));
            }
            let accepted = store::load(ctx.db, v.channel_id)
                .await?
                .map_or(0, |c| c.accepted);
            if claimed < accepted {
                return Ok(Err(Reason::BatchSettlementRefundPayload));
            }
            let digest = refund_digest(v.channel_id, U256::from(nonce), amount, v.chain_id);
            sign(key, digest)?
        }
    };
    let refund = C::refundWithSignatureCall {
        config: v.config.clone(),
        amount,
        nonce: U256::from(nonce),
        receiverAuthorizerSignature: refund_signature,
    }
    .abi_encode();
    let data = if rows.is_empty() {
        refund
    } else {
        let given = r.claim_signature;
        let signature = match claim_authorization(&rows, given, r.authorizer, v.chain_id)? {
            Ok(signature) => signature,
            Err(reason) => return Ok(Err(reason)),
        };
        let claim = C::claimWithSignatureCall {
            voucherClaims: rows,
            authorizerSignature: signature,
        }
        .abi_encode();
        C::multicallCall {
            data: vec![claim.into(), refund.into()],
        }
        .abi_encode()
    };
    contract_call(
        rt,
        from,
        data.into(),
        0,
        Reason::BatchSettlementRefundSimulationFailed,
    )
    .await
}

/// The mined transaction `tx`'s receipt (`None`: the node does not have it).
pub(super) async fn receipt(
    rt: &NetworkRuntime,
    tx: B256,
) -> ServiceResult<Option<TransactionReceipt>> {
    rt.provider
        .get_transaction_receipt(tx)
        .await
        .map_err(unavailable)
}

/// What the sweep in `receipt` paid `receiver` in `token` (`Settled`).
pub(super) fn swept(receipt: &TransactionReceipt, receiver: Address, token: Address) -> u128 {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == BATCH_SETTLEMENT)
        .filter_map(|log| log.log_decode::<C::Settled>().ok())
        .map(|log| log.inner.data)
        .filter(|e| e.receiver == receiver && e.token == token)
        .map(|e| e.amount)
        .sum()
}

/// What the refund in `receipt` returned from channel `id` (`Refunded`).
pub(super) fn refunded(receipt: &TransactionReceipt, id: B256) -> u128 {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == BATCH_SETTLEMENT)
        .filter_map(|log| log.log_decode::<C::Refunded>().ok())
        .map(|log| log.inner.data)
        .filter(|e| e.channelId == id)
        .map(|e| e.amount)
        .sum()
}
