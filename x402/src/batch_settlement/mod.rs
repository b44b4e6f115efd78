//! `batch-settlement` on EVM: unidirectional payment channels (x402
//! `specs/schemes/batch-settlement/scheme_batch_settlement_evm.md`).
//!
//! A payer deposits once into `x402BatchSettlement` through a deposit collector, then signs
//! cumulative vouchers off-chain; the receiver side claims the latest voucher of many channels
//! in one `claimWithSignature` and sweeps the claimed funds with `settle(receiver, token)`.
//! This module is the protocol with no I/O: the contract's ABI (as npm `@x402/evm` 2.27.0
//! publishes it), the canonical addresses, and the EIP-712 hashes (`channelId`, vouchers, claim
//! batches, refunds) under the contract's domain.

use alloy_primitives::{address, Address, B256, U256};

pub mod checks;
pub mod wire;
use alloy_sol_types::{sol, Eip712Domain, SolStruct};

/// The scheme's name on the wire.
pub const SCHEME: &str = "batch-settlement";

/// `x402BatchSettlement`, the same address on every chain (CREATE2).
pub const BATCH_SETTLEMENT: Address = address!("0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
/// `ERC3009DepositCollector`: deposits through `receiveWithAuthorization`.
pub const ERC3009_DEPOSIT_COLLECTOR: Address =
    address!("0x4020806089470a89826cB9fB1f4059150b550004");
/// `Permit2DepositCollector`: deposits through Permit2 `permitWitnessTransferFrom`.
pub const PERMIT2_DEPOSIT_COLLECTOR: Address =
    address!("0x4020425FAf3B746C082C2f942b4E5159887B0005");

/// The contract's bounds on `withdrawDelay`, seconds (15 minutes, 30 days).
pub const MIN_WITHDRAW_DELAY: u64 = 900;
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;

sol! {
    /// A channel's immutable identity; its EIP-712 hash is the `channelId`.
    #[derive(Debug, PartialEq, Eq, Default)]
    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    /// What a payer (or its `payerAuthorizer`) signs per request: a cumulative ceiling.
    #[derive(Debug, PartialEq, Eq)]
    struct Voucher {
        bytes32 channelId;
        uint128 maxClaimableAmount;
    }

    /// What the `receiverAuthorizer` signs for `refundWithSignature`.
    #[derive(Debug, PartialEq, Eq)]
    struct Refund {
        bytes32 channelId;
        uint256 nonce;
        uint128 amount;
    }

    /// One row of a claim batch as the `receiverAuthorizer` signs it.
    #[derive(Debug, PartialEq, Eq)]
    struct ClaimEntry {
        bytes32 channelId;
        uint128 maxClaimableAmount;
        uint128 totalClaimed;
    }

    /// What the `receiverAuthorizer` signs for `claimWithSignature`.
    #[derive(Debug, PartialEq, Eq)]
    struct ClaimBatch {
        ClaimEntry[] claims;
    }

    /// ERC-3009 typed data of a deposit (the collector receives, then forwards).
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// `x402BatchSettlement` as `@x402/evm` 2.27.0's `batchSettlementABI` has it.
    interface IX402BatchSettlement {
        struct VoucherData {
            ChannelConfig channel;
            uint128 maxClaimableAmount;
        }

        struct VoucherClaim {
            VoucherData voucher;
            bytes signature;
            uint128 totalClaimed;
        }

        function multicall(bytes[] data) returns (bytes[] results);
        function deposit(ChannelConfig config, uint128 amount, address collector, bytes collectorData);
        function claim(VoucherClaim[] voucherClaims);
        function claimWithSignature(VoucherClaim[] voucherClaims, bytes authorizerSignature);
        function settle(address receiver, address token);
        function initiateWithdraw(ChannelConfig config, uint128 amount);
        function finalizeWithdraw(ChannelConfig config);
        function refund(ChannelConfig config, uint128 amount);
        function refundWithSignature(ChannelConfig config, uint128 amount, uint256 nonce, bytes receiverAuthorizerSignature);
        function getChannelId(ChannelConfig config) view returns (bytes32);
        function CHANNEL_CONFIG_TYPEHASH() view returns (bytes32);
        function channels(bytes32 channelId) view returns (uint128 balance, uint128 totalClaimed);
        function pendingWithdrawals(bytes32 channelId) view returns (uint128 amount, uint40 initiatedAt);
        function receivers(address receiver, address token) view returns (uint128 totalClaimed, uint128 totalSettled);
        function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) view returns (bytes32);
        function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) view returns (bytes32);
        function refundNonce(bytes32 channelId) view returns (uint256);
        function getClaimBatchDigest(VoucherClaim[] voucherClaims) view returns (bytes32);

        event ChannelCreated(bytes32 indexed channelId, ChannelConfig config);
        event ChannelClosed(bytes32 indexed channelId, ChannelConfig config);
        event Deposited(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 newBalance);
        event Claimed(bytes32 indexed channelId, address indexed sender, uint128 claimAmount, uint128 newTotalClaimed);
        event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
        event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount);
        event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 finalizeAfter);
        event WithdrawFinalized(bytes32 indexed channelId, address indexed sender, uint128 amount);
    }
}

/// The contract's EIP-712 domain on `chain_id`: `{name: "x402 Batch Settlement", version: "1",
/// chainId, verifyingContract}`.
pub fn domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("x402 Batch Settlement".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(BATCH_SETTLEMENT),
        None,
    )
}

/// The channel id: the EIP-712 hash of the config, bound to chain and deployment.
pub fn channel_id(config: &ChannelConfig, chain_id: u64) -> B256 {
    config.eip712_signing_hash(&domain(chain_id))
}

/// The digest a voucher's signer signs.
pub fn voucher_digest(channel_id: B256, max_claimable: u128, chain_id: u64) -> B256 {
    Voucher {
        channelId: channel_id,
        maxClaimableAmount: max_claimable,
    }
    .eip712_signing_hash(&domain(chain_id))
}

/// The digest a `receiverAuthorizer` signs for `refundWithSignature`.
pub fn refund_digest(channel_id: B256, nonce: U256, amount: u128, chain_id: u64) -> B256 {
    Refund {
        channelId: channel_id,
        nonce,
        amount,
    }
    .eip712_signing_hash(&domain(chain_id))
}

/// The digest a `receiverAuthorizer` signs for `claimWithSignature` of these rows.
pub fn claim_batch_digest(claims: &[IX402BatchSettlement::VoucherClaim], chain_id: u64) -> B256 {
    ClaimBatch {
        claims: claims
            .iter()
            .map(|c| ClaimEntry {
                channelId: channel_id(&c.voucher.channel, chain_id),
                maxClaimableAmount: c.voucher.maxClaimableAmount,
                totalClaimed: c.totalClaimed,
            })
            .collect(),
    }
    .eip712_signing_hash(&domain(chain_id))
}

/// The ERC-3009 nonce of a deposit through the ERC-3009 collector:
/// `keccak256(abi.encode(channelId, uint256(salt)))`.
pub fn erc3009_deposit_nonce(channel_id: B256, salt: B256) -> B256 {
    alloy_primitives::keccak256(alloy_sol_types::SolValue::abi_encode(&(
        channel_id,
        U256::from_be_bytes(salt.0),
    )))
}

/// `collectorData` for the ERC-3009 collector: `abi.encode(validAfter, validBefore, salt, signature)`.
pub fn erc3009_collector_data(
    valid_after: U256,
    valid_before: U256,
    salt: B256,
    signature: &[u8],
) -> alloy_primitives::Bytes {
    alloy_sol_types::SolValue::abi_encode_params(&(
        valid_after,
        valid_before,
        U256::from_be_bytes(salt.0),
        alloy_primitives::Bytes::copy_from_slice(signature),
    ))
    .into()
}

/// Permit2's `PermitWitnessTransferFrom` of a deposit through the Permit2 collector: the witness
/// is `DepositWitness(bytes32 channelId)` (the collector's `DEPOSIT_WITNESS_TYPE_STRING`).
pub mod permit2_typed {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct DepositWitness { bytes32 channelId; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            DepositWitness witness;
        }
    }
}

/// The digest a payer signs for a Permit2 deposit (Permit2's domain, `crate::permit2::domain`).
pub fn permit2_deposit_digest(a: &wire::Permit2Deposit, chain_id: u64) -> B256 {
    permit2_typed::PermitWitnessTransferFrom {
        permitted: permit2_typed::TokenPermissions {
            token: a.permitted.token,
            amount: a.permitted.amount,
        },
        spender: a.spender,
        nonce: a.nonce,
        deadline: a.deadline,
        witness: permit2_typed::DepositWitness {
            channelId: a.witness.channel_id,
        },
    }
    .eip712_signing_hash(&crate::permit2::domain(chain_id))
}

/// `collectorData` for the Permit2 collector: `abi.encode(nonce, deadline, permit2Signature,
/// eip2612PermitData)`, the last empty or `abi.encode(value, deadline, v, r, s)` of an EIP-2612
/// permit of Permit2. `None` when the permit's signature does not split.
pub fn permit2_collector_data(
    nonce: U256,
    deadline: U256,
    signature: &[u8],
    permit: Option<&crate::permit2::Eip2612Permit>,
) -> Option<alloy_primitives::Bytes> {
    let permit_data = match permit {
        None => alloy_primitives::Bytes::new(),
        Some(p) => {
            let (v, r, s) = crate::exact::evm::split_signature(&p.signature).ok()?;
            alloy_sol_types::SolValue::abi_encode_params(&(
                p.amount,
                p.deadline,
                U256::from(v),
                r,
                s,
            ))
            .into()
        }
    };
    Some(
        alloy_sol_types::SolValue::abi_encode_params(&(
            nonce,
            deadline,
            alloy_primitives::Bytes::copy_from_slice(signature),
            permit_data,
        ))
        .into(),
    )
}

#[cfg(test)]
mod tests;
