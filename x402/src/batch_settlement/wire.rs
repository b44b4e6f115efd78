//! The scheme's payloads on the wire (`paymentPayload.payload`, discriminated by `type`) and
//! the requirements' `extra` it reads, as `@x402/evm` 2.27.0's `types.ts` has them.

use alloy_primitives::aliases::U40;
use alloy_primitives::{Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};

use super::{ChannelConfig, IX402BatchSettlement};

/// Amounts of the scheme are `uint128`: decimal strings on the wire (numbers accepted).
pub(crate) mod dec128 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s)
                if !s.is_empty() && s.len() <= 39 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse()
                    .map_err(|_| D::Error::custom(format!("`{s}` does not fit a uint128")))
            }
            serde_json::Value::Number(n) if n.is_u64() => Ok(u128::from(n.as_u64().unwrap_or(0))),
            other => Err(D::Error::custom(format!(
                "expected a decimal uint128, got {other}"
            ))),
        }
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] u128);
            Option::<Wrap>::deserialize(d).map(|w| w.map(|w| w.0))
        }
    }
}

/// `channelConfig` on the wire (`withdrawDelay` a number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireChannelConfig {
    pub payer: Address,
    pub payer_authorizer: Address,
    pub receiver: Address,
    pub receiver_authorizer: Address,
    pub token: Address,
    pub withdraw_delay: u64,
    pub salt: B256,
}

impl WireChannelConfig {
    /// The contract's struct; `None` when `withdrawDelay` does not fit its `uint40`.
    pub fn to_config(&self) -> Option<ChannelConfig> {
        (self.withdraw_delay < (1u64 << 40)).then(|| ChannelConfig {
            payer: self.payer,
            payerAuthorizer: self.payer_authorizer,
            receiver: self.receiver,
            receiverAuthorizer: self.receiver_authorizer,
            token: self.token,
            withdrawDelay: U40::from(self.withdraw_delay),
            salt: self.salt,
        })
    }
}

/// `voucher` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireVoucher {
    pub channel_id: B256,
    #[serde(with = "dec128")]
    pub max_claimable_amount: u128,
    pub signature: Bytes,
}

/// `deposit.authorization.erc3009Authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erc3009Deposit {
    #[serde(with = "crate::proto::decimal")]
    pub valid_after: U256,
    #[serde(with = "crate::proto::decimal")]
    pub valid_before: U256,
    pub salt: B256,
    pub signature: Bytes,
}

/// `deposit.authorization.permit2Authorization.witness`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositWitness {
    pub channel_id: B256,
}

/// `deposit.authorization.permit2Authorization`: Permit2's `PermitWitnessTransferFrom` with the
/// Permit2 collector as spender and the channel as witness, and the payer's signature of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Deposit {
    pub from: Address,
    pub permitted: crate::permit2::TokenPermissions,
    pub spender: Address,
    #[serde(with = "crate::permit2::uint")]
    pub nonce: U256,
    #[serde(with = "crate::permit2::uint")]
    pub deadline: U256,
    pub witness: DepositWitness,
    pub signature: Bytes,
}

/// `deposit.authorization`: one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositAuthorization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erc3009_authorization: Option<Erc3009Deposit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit2_authorization: Option<Box<Permit2Deposit>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    #[serde(with = "dec128")]
    pub amount: u128,
    pub authorization: DepositAuthorization,
}

/// One claim row on the wire (`claims[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireClaim {
    pub voucher: WireClaimVoucher,
    pub signature: Bytes,
    #[serde(with = "dec128")]
    pub total_claimed: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireClaimVoucher {
    pub channel: WireChannelConfig,
    #[serde(with = "dec128")]
    pub max_claimable_amount: u128,
}

impl WireClaim {
    /// The contract's row; `None` when the config's `withdrawDelay` does not fit.
    pub fn to_claim(&self) -> Option<IX402BatchSettlement::VoucherClaim> {
        Some(IX402BatchSettlement::VoucherClaim {
            voucher: IX402BatchSettlement::VoucherData {
                channel: self.voucher.channel.to_config()?,
                maxClaimableAmount: self.voucher.max_claimable_amount,
            },
            signature: self.signature.clone(),
            totalClaimed: self.total_claimed,
        })
    }
}

/// `paymentPayload.payload` of `batch-settlement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ChannelPayload {
    /// Open or top up a channel, with the first voucher on it.
    Deposit {
        channel_config: WireChannelConfig,
        voucher: WireVoucher,
        deposit: Deposit,
    },
    /// A cumulative voucher on a funded channel.
    Voucher {
        channel_config: WireChannelConfig,
        voucher: WireVoucher,
    },
    /// A cooperative refund (the resource server completes it before `/settle`).
    Refund {
        channel_config: WireChannelConfig,
        voucher: WireVoucher,
        #[serde(
            default,
            with = "dec128::option",
            skip_serializing_if = "Option::is_none"
        )]
        amount: Option<u128>,
        #[serde(
            default,
            with = "dec128::option",
            skip_serializing_if = "Option::is_none"
        )]
        refund_nonce: Option<u128>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claims: Option<Vec<WireClaim>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund_authorizer_signature: Option<Bytes>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim_authorizer_signature: Option<Bytes>,
    },
    /// Server-authored: claim vouchers of many channels (`claimWithSignature`).
    Claim {
        claims: Vec<WireClaim>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim_authorizer_signature: Option<Bytes>,
    },
    /// Server-authored: sweep what `receiver` claimed in `token` (`settle`).
    Settle { receiver: Address, token: Address },
}

impl ChannelPayload {
    /// The wire name of the payload's type.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelPayload::Deposit { .. } => "deposit",
            ChannelPayload::Voucher { .. } => "voucher",
            ChannelPayload::Refund { .. } => "refund",
            ChannelPayload::Claim { .. } => "claim",
            ChannelPayload::Settle { .. } => "settle",
        }
    }

    /// The channel and voucher of a client payload (deposit, voucher, refund).
    pub fn channel_voucher(&self) -> Option<(&WireChannelConfig, &WireVoucher)> {
        match self {
            ChannelPayload::Deposit {
                channel_config,
                voucher,
                ..
            }
            | ChannelPayload::Voucher {
                channel_config,
                voucher,
            }
            | ChannelPayload::Refund {
                channel_config,
                voucher,
                ..
            } => Some((channel_config, voucher)),
            _ => None,
        }
    }
}

/// The requirements' `extra` the scheme reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelTerms {
    pub receiver_authorizer: Option<Address>,
    pub withdraw_delay: Option<u64>,
    /// `extra.assetTransferMethod` (`eip3009` or `permit2`): the deposit method asked for.
    pub asset_transfer_method: Option<String>,
}

impl ChannelTerms {
    pub fn from_requirements(requirements: &serde_json::Value) -> Self {
        let extra = requirements.get("extra");
        let get = |k: &str| extra.and_then(|e| e.get(k));
        Self {
            receiver_authorizer: get("receiverAuthorizer")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse().ok()),
            withdraw_delay: get("withdrawDelay").and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
            asset_transfer_method: get("assetTransferMethod")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// A `batch-settlement` request: the payload and the requirements' terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRequest {
    pub payload: ChannelPayload,
    pub terms: ChannelTerms,
    /// The payment's `extensions.eip2612GasSponsoring.info` (a Permit2 deposit's EIP-2612 permit
    /// of Permit2): `Some(Err)` when malformed.
    pub sponsoring: Option<Result<crate::permit2::Eip2612Permit, String>>,
}

/// The channel snapshot every answer carries (`extra` of `/verify`, `extra.channelState` of
/// `/settle`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSnapshot {
    pub channel_id: B256,
    #[serde(with = "dec128")]
    pub balance: u128,
    #[serde(with = "dec128")]
    pub total_claimed: u128,
    pub withdraw_requested_at: u64,
    #[serde(with = "crate::proto::decimal")]
    pub refund_nonce: U256,
}

impl ChannelRequest {
    /// The EIP-3009-shaped view the ledger, the in-flight map and the answers key on: the
    /// payer, the receiver, the amount (a deposit's, a refund's, else the voucher's ceiling),
    /// and a nonce
    /// naming this payment: a deposit's ERC-3009 nonce, or its Permit2 nonce as 32 bytes (as the
    /// `exact` Permit2 rows: one Permit2 nonce of a payer, one row), else the hash of the payload.
    pub fn exact_view(&self) -> crate::proto::ExactEvmPayload {
        use alloy_primitives::keccak256;
        let hash = || keccak256(serde_json::to_vec(&self.payload).unwrap_or_default());
        let (from, to, value, valid_before, nonce, signature) = match &self.payload {
            ChannelPayload::Deposit {
                channel_config,
                voucher,
                deposit,
            } => {
                let auth = &deposit.authorization;
                let (valid_before, nonce) =
                    match (&auth.erc3009_authorization, &auth.permit2_authorization) {
                        (Some(a), _) => (
                            a.valid_before,
                            super::erc3009_deposit_nonce(voucher.channel_id, a.salt),
                        ),
                        (None, Some(p)) => (p.deadline, B256::from(p.nonce)),
                        (None, None) => (U256::MAX, hash()),
                    };
                (
                    channel_config.payer,
                    channel_config.receiver,
                    U256::from(deposit.amount),
                    valid_before,
                    nonce,
                    voucher.signature.clone(),
                )
            }
            ChannelPayload::Voucher {
                channel_config,
                voucher,
            } => (
                channel_config.payer,
                channel_config.receiver,
                U256::from(voucher.max_claimable_amount),
                U256::MAX,
                hash(),
                voucher.signature.clone(),
            ),
            // The amount asked back (the answer says what the chain returned).
            ChannelPayload::Refund {
                channel_config,
                voucher,
                amount,
                ..
            } => (
                channel_config.payer,
                channel_config.receiver,
                U256::from(amount.unwrap_or(0)),
                U256::MAX,
                hash(),
                voucher.signature.clone(),
            ),
            ChannelPayload::Claim { claims, .. } => {
                let first = claims.first().map(|c| &c.voucher.channel);
                (
                    first.map_or(Address::ZERO, |c| c.payer),
                    first.map_or(Address::ZERO, |c| c.receiver),
                    U256::ZERO,
                    U256::MAX,
                    hash(),
                    Bytes::new(),
                )
            }
            ChannelPayload::Settle { receiver, .. } => (
                *receiver,
                *receiver,
                U256::ZERO,
                U256::MAX,
                hash(),
                Bytes::new(),
            ),
        };
        // A deposit's ERC-3009 window is the transfer's (a settle holds a deposit valid from
        // this very second until a block can carry it).
        let valid_after = match &self.payload {
            ChannelPayload::Deposit { deposit, .. } => deposit
                .authorization
                .erc3009_authorization
                .as_ref()
                .map_or(U256::ZERO, |a| a.valid_after),
            _ => U256::ZERO,
        };
        crate::proto::ExactEvmPayload {
            signature,
            authorization: crate::proto::Authorization {
                from,
                to,
                value,
                valid_after,
                valid_before,
                nonce,
            },
        }
    }
}
