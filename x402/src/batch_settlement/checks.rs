//! The facilitator's off-chain checks of a `batch-settlement` payload, in the order of the spec's
//! "Verification Rules", each failing with one `Reason`. What needs the channel's state (its
//! balance, what is claimed, what this facilitator accepted) is the caller's.

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolStruct;

use super::wire::{ChannelPayload, ChannelRequest, Erc3009Deposit, Permit2Deposit, WireVoucher};
use super::{
    channel_id, erc3009_collector_data, erc3009_deposit_nonce, permit2_collector_data,
    permit2_deposit_digest, voucher_digest, ChannelConfig, ReceiveWithAuthorization,
    ERC3009_DEPOSIT_COLLECTOR, MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY, PERMIT2_DEPOSIT_COLLECTOR,
    SCHEME,
};
use crate::exact::evm::{domain as token_domain, recover_signer, VALID_BEFORE_BUFFER_SECS};
use crate::network::parse_network;
use crate::permit2::{Eip2612Permit, PERMIT2};
use crate::proto::PaymentRequest;
use crate::Reason;

/// `/verify` takes a client's payload (deposit, voucher, refund); `/settle` a deposit, or the
/// server's claim, settle and completed refund.
pub use crate::permit2::Phase;

/// A checked deposit: the collector `deposit` is called with, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedDeposit {
    pub amount: u128,
    /// The ERC-3009 collector, or the Permit2 collector.
    pub collector: Address,
    pub collector_data: Bytes,
    /// The deposit's identity on chain: the ERC-3009 nonce the collector derives, or the
    /// Permit2 nonce (as 32 bytes) of the payer.
    pub nonce: B256,
    /// A Permit2 deposit with no EIP-2612 permit: the payer's allowance to Permit2 must cover
    /// the amount.
    pub needs_permit2_allowance: bool,
}

/// A checked client payload: the channel, the voucher, and the deposit if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedVoucher {
    pub chain_id: u64,
    pub channel_id: B256,
    pub config: ChannelConfig,
    pub max_claimable: u128,
    pub signature: Bytes,
    pub deposit: Option<CheckedDeposit>,
    /// A refund's zero-charge voucher: may equal what is claimed and accepted.
    pub refund: bool,
    /// Who the voucher's signature is checked against: done here (ECDSA), or the chain's to say.
    pub signer: VoucherSigner,
}

/// Rule 6's two ways to sign a voucher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherSigner {
    /// ECDSA by the non-zero `payerAuthorizer`: checked off-chain, valid.
    Ecdsa,
    /// `payerAuthorizer` zero: the payer signs `digest`, judged as the contract's
    /// `SignatureChecker` (OpenZeppelin 5) judges it: ECDSA by the payer when it has no code,
    /// else its ERC-1271 `isValidSignature` answering `0x1626ba7e`. Which one only the chain
    /// can say: the caller asks it before anything is accepted.
    Payer { digest: B256 },
}

/// Scheme, network and the payload type for `phase`; then, for a client payload, every check
/// that needs no chain.
pub fn check(
    req: &PaymentRequest,
    channel: &ChannelRequest,
    phase: Phase,
    now: u64,
    min_deposit: U256,
) -> Result<Option<CheckedVoucher>, Reason> {
    if req.scheme != SCHEME || req.payload_scheme != SCHEME {
        return Err(Reason::BatchSettlementScheme);
    }
    if req.payload_network != req.network || !req.accepted_matches {
        return Err(Reason::BatchSettlementNetworkMismatch);
    }
    let network = parse_network(&req.network).ok_or(Reason::InvalidNetwork)?;
    let payload = &channel.payload;
    let allowed = match phase {
        Phase::Verify => matches!(
            payload,
            ChannelPayload::Deposit { .. }
                | ChannelPayload::Voucher { .. }
                | ChannelPayload::Refund { .. }
        ),
        Phase::Settle => !matches!(payload, ChannelPayload::Voucher { .. }),
    };
    if !allowed {
        return Err(Reason::BatchSettlementPayloadType);
    }
    if let ChannelPayload::Settle { receiver, token } = payload {
        // A sweep is the requirements' receiver's, in their asset.
        if *receiver != req.pay_to {
            return Err(Reason::BatchSettlementReceiverMismatch);
        }
        if *token != req.asset {
            return Err(Reason::BatchSettlementTokenMismatch);
        }
    }
    let Some((config, voucher)) = payload.channel_voucher() else {
        return Ok(None);
    };
    let config = config
        .to_config()
        .ok_or(Reason::BatchSettlementWithdrawDelayOutOfRange)?;
    check_config(req, channel, &config, voucher, network.chain_id)?;
    let signer = check_voucher_signature(&config, voucher, network.chain_id)?;
    let deposit = match payload {
        ChannelPayload::Deposit { deposit, .. } => {
            if deposit.amount == 0 || U256::from(deposit.amount) < min_deposit {
                return Err(Reason::BatchSettlementDepositBelowMinDeposit);
            }
            let auth = &deposit.authorization;
            let method = channel.terms.asset_transfer_method.as_deref();
            Some(
                match (&auth.erc3009_authorization, &auth.permit2_authorization) {
                    // Asked for Permit2 and not given it (the reference's answer).
                    (_, None) if method == Some("permit2") => {
                        return Err(Reason::BatchSettlementPayloadType)
                    }
                    (Some(a), None) => check_erc3009_deposit(
                        req,
                        &config,
                        voucher.channel_id,
                        deposit.amount,
                        a,
                        network.chain_id,
                        now,
                    )?,
                    (None, Some(p)) if method != Some("eip3009") => check_permit2_deposit(
                        req,
                        &config,
                        voucher.channel_id,
                        deposit.amount,
                        p,
                        channel.sponsoring.as_ref(),
                        network.chain_id,
                        now,
                    )?,
                    (Some(_), Some(_)) => return Err(Reason::BatchSettlementPayloadType),
                    _ => return Err(Reason::BatchSettlementErc3009AuthorizationRequired),
                },
            )
        }
        _ => None,
    };
    Ok(Some(CheckedVoucher {
        chain_id: network.chain_id,
        channel_id: voucher.channel_id,
        config,
        max_claimable: voucher.max_claimable_amount,
        signature: voucher.signature.clone(),
        deposit,
        refund: matches!(payload, ChannelPayload::Refund { .. }),
        signer,
    }))
}

/// Rules 1-5: the config hashes to the id and matches the requirements.
fn check_config(
    req: &PaymentRequest,
    channel: &ChannelRequest,
    config: &ChannelConfig,
    voucher: &WireVoucher,
    chain_id: u64,
) -> Result<(), Reason> {
    if channel_id(config, chain_id) != voucher.channel_id {
        return Err(Reason::BatchSettlementChannelIdMismatch);
    }
    if config.receiver != req.pay_to {
        return Err(Reason::BatchSettlementReceiverMismatch);
    }
    match channel.terms.receiver_authorizer {
        Some(a) if a != Address::ZERO && a == config.receiverAuthorizer => {}
        _ => return Err(Reason::BatchSettlementReceiverAuthorizerMismatch),
    }
    if config.token != req.asset {
        return Err(Reason::BatchSettlementTokenMismatch);
    }
    let delay = config.withdrawDelay.to::<u64>();
    if channel.terms.withdraw_delay.is_some_and(|d| d != delay) {
        return Err(Reason::BatchSettlementWithdrawDelayMismatch);
    }
    if !(MIN_WITHDRAW_DELAY..=MAX_WITHDRAW_DELAY).contains(&delay) {
        return Err(Reason::BatchSettlementWithdrawDelayOutOfRange);
    }
    Ok(())
}

/// Rule 6: ECDSA by a non-zero `payerAuthorizer`, as the contract checks it (no RPC). A zero
/// `payerAuthorizer` means the payer signs (ECDSA or ERC-1271, by its code): left to the
/// caller, who has the chain.
pub fn check_voucher_signature(
    config: &ChannelConfig,
    voucher: &WireVoucher,
    chain_id: u64,
) -> Result<VoucherSigner, Reason> {
    let digest = voucher_digest(voucher.channel_id, voucher.max_claimable_amount, chain_id);
    if config.payerAuthorizer == Address::ZERO {
        return Ok(VoucherSigner::Payer { digest });
    }
    match recover_signer(digest, &voucher.signature) {
        Ok(signer) if signer == config.payerAuthorizer => Ok(VoucherSigner::Ecdsa),
        _ => Err(Reason::BatchSettlementVoucherSignature),
    }
}

/// A deposit through the ERC-3009 collector: its amount, its validity window, and the payer's
/// `ReceiveWithAuthorization` signature (to the collector, with the channel-bound nonce).
fn check_erc3009_deposit(
    req: &PaymentRequest,
    config: &ChannelConfig,
    channel_id: B256,
    amount: u128,
    a: &Erc3009Deposit,
    chain_id: u64,
    now: u64,
) -> Result<CheckedDeposit, Reason> {
    let (Some(name), Some(version)) = (&req.extra_name, &req.extra_version) else {
        return Err(Reason::BatchSettlementMissingEip712Domain);
    };
    if a.valid_before < U256::from(now + VALID_BEFORE_BUFFER_SECS) {
        return Err(Reason::BatchSettlementValidBefore);
    }
    if a.valid_after > U256::from(now) {
        return Err(Reason::BatchSettlementValidAfter);
    }
    let nonce = erc3009_deposit_nonce(channel_id, a.salt);
    let digest = ReceiveWithAuthorization {
        from: config.payer,
        to: ERC3009_DEPOSIT_COLLECTOR,
        value: U256::from(amount),
        validAfter: a.valid_after,
        validBefore: a.valid_before,
        nonce,
    }
    .eip712_signing_hash(&token_domain(name, version, chain_id, config.token));
    match recover_signer(digest, &a.signature) {
        Ok(signer) if signer == config.payer => {}
        // A contract-wallet payer (its vouchers ERC-1271's): the token checks its signature
        // with the wallet's ERC-1271 (FiatTokenV2_2's `bytes` overload, which the collector
        // calls), so the deposit's simulation decides.
        _ if config.payerAuthorizer == Address::ZERO => {}
        _ => return Err(Reason::BatchSettlementReceiveAuthorizationSignature),
    }
    Ok(CheckedDeposit {
        amount,
        collector: ERC3009_DEPOSIT_COLLECTOR,
        collector_data: erc3009_collector_data(a.valid_after, a.valid_before, a.salt, &a.signature),
        nonce,
        needs_permit2_allowance: false,
    })
}

/// A deposit through the Permit2 collector, in the reference's order: the payer's, to the
/// collector, in the channel's token, for the deposit amount, witnessing this channel, not
/// expiring within the buffer, signed by the payer (ECDSA; a payer whose vouchers it signs
/// itself may be a contract wallet, whose ERC-1271 Permit2 asks in the deposit's simulation);
/// then an EIP-2612 permit of Permit2 if the payment carries one (else the caller checks the
/// payer's allowance).
#[allow(clippy::too_many_arguments)]
fn check_permit2_deposit(
    req: &PaymentRequest,
    config: &ChannelConfig,
    channel_id: B256,
    amount: u128,
    p: &Permit2Deposit,
    sponsoring: Option<&Result<Eip2612Permit, String>>,
    chain_id: u64,
    now: u64,
) -> Result<CheckedDeposit, Reason> {
    if p.from != config.payer {
        return Err(Reason::BatchSettlementPermit2InvalidSignature);
    }
    if p.spender != PERMIT2_DEPOSIT_COLLECTOR {
        return Err(Reason::BatchSettlementPermit2InvalidSpender);
    }
    if p.permitted.token != req.asset {
        return Err(Reason::BatchSettlementTokenMismatch);
    }
    if p.permitted.amount != U256::from(amount) {
        return Err(Reason::BatchSettlementPermit2AmountMismatch);
    }
    if p.witness.channel_id != channel_id {
        return Err(Reason::BatchSettlementChannelIdMismatch);
    }
    if p.deadline < U256::from(now + VALID_BEFORE_BUFFER_SECS) {
        return Err(Reason::BatchSettlementPermit2DeadlineExpired);
    }
    match recover_signer(permit2_deposit_digest(p, chain_id), &p.signature) {
        Ok(signer) if signer == config.payer => {}
        _ if config.payerAuthorizer == Address::ZERO => {}
        _ => return Err(Reason::BatchSettlementPermit2InvalidSignature),
    }
    let permit = match sponsoring {
        None => None,
        Some(Err(_)) => return Err(Reason::InvalidEip2612ExtensionFormat),
        Some(Ok(permit)) => {
            if permit.from != config.payer {
                return Err(Reason::Eip2612FromMismatch);
            }
            if permit.asset != config.token {
                return Err(Reason::Eip2612AssetMismatch);
            }
            if permit.spender != PERMIT2 {
                return Err(Reason::Eip2612SpenderNotPermit2);
            }
            if permit.deadline < U256::from(now + VALID_BEFORE_BUFFER_SECS) {
                return Err(Reason::Eip2612DeadlineExpired);
            }
            if permit.amount != U256::from(amount) {
                return Err(Reason::BatchSettlementEip2612AmountMismatch);
            }
            Some(permit)
        }
    };
    let collector_data = permit2_collector_data(p.nonce, p.deadline, &p.signature, permit)
        .ok_or(Reason::InvalidEip2612ExtensionFormat)?;
    Ok(CheckedDeposit {
        amount,
        collector: PERMIT2_DEPOSIT_COLLECTOR,
        collector_data,
        nonce: B256::from(p.nonce),
        needs_permit2_allowance: permit.is_none(),
    })
}

/// Rules 7, 9, 10 against a channel's state: a positive balance (plus the deposit), the
/// voucher within it, and above both what is claimed on chain and the highest voucher this
/// facilitator accepted (a refund's may equal them).
pub fn check_against_state(
    v: &CheckedVoucher,
    balance: u128,
    total_claimed: u128,
    accepted: u128,
) -> Result<(), Reason> {
    let deposit = v.deposit.as_ref().map_or(0, |d| d.amount);
    let effective = balance.saturating_add(deposit);
    if effective == 0 {
        return Err(Reason::BatchSettlementChannelNotFound);
    }
    if v.max_claimable > effective {
        return Err(Reason::BatchSettlementCumulativeExceedsBalance);
    }
    let floor = total_claimed.max(accepted);
    let below = if v.refund {
        v.max_claimable < total_claimed
    } else {
        v.max_claimable <= floor
    };
    if below {
        return Err(Reason::BatchSettlementCumulativeBelowClaimed);
    }
    Ok(())
}
