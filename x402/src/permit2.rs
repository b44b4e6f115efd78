//! Permit2 payments: `exact` with `extra.assetTransferMethod: "permit2"`, the `upto` scheme,
//! and the `eip2612GasSponsoring` extension (x402 specs `scheme_exact_evm.md` §2,
//! `scheme_upto_evm.md`, `eip2612_gas_sponsoring.md`).
//!
//! The buyer signs Permit2's `PermitWitnessTransferFrom` (EIP-712 domain `Permit2`, no version)
//! with the x402 proxy as spender and a witness that binds the recipient (`to`), the start of
//! validity (`validAfter`) and, for `upto`, the facilitator allowed to settle. The facilitator
//! calls the proxy's `settle(…)` (or `settleWithPermit(…)` with a sponsored EIP-2612 permit for
//! Permit2); the proxy calls Permit2, which checks the signature, the deadline and the nonce.
//!
//! The checks here need no chain; each fails with one `Reason`.

use alloy_primitives::{address, Address, Bytes, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

use crate::exact::evm::{
    below_floor, classify_signature, recover_signer, signature_size_ok, split_signature,
    SignatureKind, DEFAULT_MAX_SIGNATURE_BYTES,
};
use crate::network::Network;
use crate::proto::PaymentRequest;
use crate::Reason;

/// The canonical Permit2 (same address on every chain).
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
/// `x402ExactPermit2Proxy` (CREATE2, same address on every chain).
pub const EXACT_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// `x402UptoPermit2Proxy`.
pub const UPTO_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
/// The extension key of a sponsored EIP-2612 permit for Permit2.
pub const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";
/// Seconds of slack on deadlines, as for EIP-3009's `validBefore`.
pub const DEADLINE_BUFFER_SECS: u64 = crate::exact::evm::VALID_BEFORE_BUFFER_SECS;

/// A uint256 on the wire: a decimal string, a 0x-hex string (the upto spec's examples use hex
/// nonces) or a JSON number.
pub(crate) mod uint {
    use alloy_primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let parsed = match &v {
            serde_json::Value::String(s) => match s.strip_prefix("0x") {
                Some(hex) if !hex.is_empty() && hex.len() <= 64 => {
                    U256::from_str_radix(hex, 16).ok()
                }
                Some(_) => None,
                None => crate::proto::parse_amount(s),
            },
            serde_json::Value::Number(n) => n.as_u64().map(U256::from),
            _ => None,
        };
        parsed.ok_or_else(|| D::Error::custom(format!("`{v}` is not a uint256")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPermissions {
    pub token: Address,
    #[serde(with = "uint")]
    pub amount: U256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Witness {
    pub to: Address,
    /// `upto` only: the facilitator allowed to settle (the proxy checks `msg.sender`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<Address>,
    #[serde(with = "uint")]
    pub valid_after: U256,
}

/// `payload.permit2Authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    pub from: Address,
    pub permitted: TokenPermissions,
    pub spender: Address,
    #[serde(with = "uint")]
    pub nonce: U256,
    #[serde(with = "uint")]
    pub deadline: U256,
    pub witness: Witness,
}

/// `paymentPayload.payload` of a Permit2 payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Payload {
    pub signature: Bytes,
    pub permit2_authorization: Permit2Authorization,
}

/// `extensions.eip2612GasSponsoring.info`: the buyer's EIP-2612 permit of Permit2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eip2612Permit {
    pub from: Address,
    pub asset: Address,
    pub spender: Address,
    #[serde(with = "uint")]
    pub amount: U256,
    #[serde(with = "uint")]
    pub nonce: U256,
    #[serde(with = "uint")]
    pub deadline: U256,
    pub signature: Bytes,
    #[serde(default)]
    pub version: String,
}

/// Which proxy settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `exact` with `assetTransferMethod: "permit2"`: the full permitted amount.
    Exact,
    /// `upto`: any amount up to the permitted one, settled by `witness.facilitator`.
    Upto,
}

impl Kind {
    pub fn proxy(self) -> Address {
        match self {
            Kind::Exact => EXACT_PROXY,
            Kind::Upto => UPTO_PROXY,
        }
    }
}

/// A Permit2 payment as the request carries it.
#[derive(Debug, Clone)]
pub struct Permit2Request {
    pub kind: Kind,
    pub payload: Permit2Payload,
    /// `Some(Ok)` when the payload carries the extension, `Some(Err)` when it is malformed.
    pub sponsoring: Option<Result<Eip2612Permit, String>>,
}

/// `/verify` judges the signed maximum; `/settle` of `upto` carries the amount to settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Verify,
    Settle,
}

/// What the caller knows of the world.
#[derive(Debug, Clone)]
pub struct Context {
    pub network: Option<&'static Network>,
    /// Tokens accepted on the network.
    pub assets: Vec<Address>,
    /// Our signers on the network (`upto`'s `witness.facilitator` must be one of them).
    pub signers: Vec<Address>,
    /// We advertise `eip2612GasSponsoring` on this network.
    pub sponsoring: bool,
    /// The least a payment in the request's asset may move, atomic units (0: anything above 0).
    pub min_amount: U256,
    /// The longest contract-wallet (ERC-1271) signature accepted, bytes.
    pub max_signature_bytes: usize,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            network: None,
            assets: Vec::new(),
            signers: Vec::new(),
            sponsoring: false,
            min_amount: U256::ZERO,
            max_signature_bytes: DEFAULT_MAX_SIGNATURE_BYTES,
        }
    }
}

/// What the off-chain checks established.
#[derive(Debug, Clone)]
pub struct Verified {
    pub payer: Address,
    /// The amount to move: the permitted one for `exact`, the requested one for `upto`.
    pub amount: U256,
    pub signing_hash: B256,
    /// The signature is not an EOA's for `from`: Permit2 (ERC-1271) decides on chain.
    pub needs_onchain_signature_check: bool,
    /// The sponsored permit to submit with the settlement.
    pub sponsoring: Option<Eip2612Permit>,
}

mod exact_typed {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

mod upto_typed {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// The proxies' entry points and the reads that name a failure.
pub mod abi {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
        struct ExactWitness { address to; uint256 validAfter; }
        struct UptoWitness { address to; address facilitator; uint256 validAfter; }
        struct EIP2612Permit { uint256 value; uint256 deadline; bytes32 r; bytes32 s; uint8 v; }

        interface IExactProxy {
            function settle(PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
            function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
            function PERMIT2() external view returns (address);
        }

        interface IUptoProxy {
            function settle(PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
            function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
        }

        interface IPermit2 {
            function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        }

        interface IERC20 {
            function balanceOf(address account) external view returns (uint256);
            function allowance(address owner, address spender) external view returns (uint256);
        }
    }
}

/// Permit2's EIP-712 domain: `{name: "Permit2", chainId, verifyingContract}`.
pub fn domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id)),
        Some(PERMIT2),
        None,
    )
}

/// The digest the buyer signs.
pub fn signing_hash(kind: Kind, a: &Permit2Authorization, chain_id: u64) -> B256 {
    let domain = domain(chain_id);
    match kind {
        Kind::Exact => exact_typed::PermitWitnessTransferFrom {
            permitted: exact_typed::TokenPermissions {
                token: a.permitted.token,
                amount: a.permitted.amount,
            },
            spender: a.spender,
            nonce: a.nonce,
            deadline: a.deadline,
            witness: exact_typed::Witness {
                to: a.witness.to,
                validAfter: a.witness.valid_after,
            },
        }
        .eip712_signing_hash(&domain),
        Kind::Upto => upto_typed::PermitWitnessTransferFrom {
            permitted: upto_typed::TokenPermissions {
                token: a.permitted.token,
                amount: a.permitted.amount,
            },
            spender: a.spender,
            nonce: a.nonce,
            deadline: a.deadline,
            witness: upto_typed::Witness {
                to: a.witness.to,
                facilitator: a.witness.facilitator.unwrap_or_default(),
                validAfter: a.witness.valid_after,
            },
        }
        .eip712_signing_hash(&domain),
    }
}

/// Permit2 nonces are unordered: bit `nonce & 0xff` of word `nonce >> 8` of `nonceBitmap(owner)`.
pub fn nonce_word_and_bit(nonce: U256) -> (U256, U256) {
    (
        nonce >> 8,
        U256::from(1) << (nonce & U256::from(0xff)).to::<usize>(),
    )
}

fn check_scheme(r: &PaymentRequest, kind: Kind) -> Result<(), Reason> {
    let scheme = match kind {
        Kind::Exact => "exact",
        Kind::Upto => "upto",
    };
    if r.x402_version == 2 && r.scheme == scheme && r.payload_scheme == scheme {
        Ok(())
    } else {
        Err(Reason::InvalidScheme)
    }
}

fn check_network(r: &PaymentRequest, ctx: &Context) -> Result<&'static Network, Reason> {
    let network = ctx.network.ok_or(Reason::InvalidNetwork)?;
    let same = |n: &str| crate::network::parse_network(n).map(|n| n.chain_id);
    if same(&r.network) != Some(network.chain_id)
        || same(&r.payload_network) != Some(network.chain_id)
    {
        return Err(Reason::InvalidNetwork);
    }
    if !r.accepted_matches {
        return Err(Reason::InvalidPaymentRequirements);
    }
    Ok(network)
}

/// The amount to move. `exact`: the permitted amount is the required one. `upto`: at verify
/// the permitted maximum is the required amount; at settle the required amount is what the
/// resource server settles, more than 0 and at most the maximum.
fn check_amount(r: &PaymentRequest, p: &Permit2Request, phase: Phase) -> Result<U256, Reason> {
    let permitted = p.payload.permit2_authorization.permitted.amount;
    match (p.kind, phase) {
        (Kind::Upto, Phase::Settle) => {
            if r.amount_required > permitted {
                Err(Reason::UptoSettlementExceedsAmount)
            } else {
                Ok(r.amount_required)
            }
        }
        _ if permitted == r.amount_required => Ok(permitted),
        _ => Err(Reason::Permit2AmountMismatch),
    }
}

/// The amount to move is worth a settlement: more than 0 (the proxies revert `InvalidAmount`
/// on 0, after the operator paid the gas) and at least the asset's minimum. For `upto` at
/// settle this is the amount used, which is at most the permitted one.
fn check_amount_floor(amount: U256, ctx: &Context) -> Result<(), Reason> {
    if below_floor(amount, ctx.min_amount) {
        Err(Reason::Permit2InvalidAmount)
    } else {
        Ok(())
    }
}

/// An owner paying itself moves nothing but the operator's gas.
fn check_not_self_payment(r: &PaymentRequest, a: &Permit2Authorization) -> Result<(), Reason> {
    if a.from == r.pay_to {
        Err(Reason::Permit2InvalidAmount)
    } else {
        Ok(())
    }
}

/// 65 bytes for an EOA, the configured cap for a contract wallet's (ERC-1271) signature.
fn check_signature_size(p: &Permit2Payload, ctx: &Context) -> Result<(), Reason> {
    if signature_size_ok(&p.signature, ctx.max_signature_bytes) {
        Ok(())
    } else {
        Err(Reason::InvalidPermit2Signature)
    }
}

fn check_signature(p: &Permit2Payload, hash: B256) -> Result<bool, Reason> {
    match classify_signature(&p.signature) {
        SignatureKind::Eoa65 | SignatureKind::Eoa64 => match recover_signer(hash, &p.signature) {
            Ok(signer) if signer == p.permit2_authorization.from => Ok(false),
            Ok(_) => Ok(true),
            Err(_) => Err(Reason::InvalidPermit2Signature),
        },
        SignatureKind::Erc6492 { .. } => Err(Reason::InvalidExactEvmPayloadUndeployedSmartWallet),
        SignatureKind::Other => Ok(true),
    }
}

/// The sponsored EIP-2612 permit: for this payer, token and amount, to Permit2, not expired.
fn check_sponsoring(
    p: &Permit2Request,
    ctx: &Context,
    now: u64,
) -> Result<Option<Eip2612Permit>, Reason> {
    let Some(sponsoring) = &p.sponsoring else {
        return Ok(None);
    };
    // Not advertised here: the payment is judged without it (it needs an allowance).
    if !ctx.sponsoring {
        return Ok(None);
    }
    let permit = sponsoring
        .as_ref()
        .map_err(|_| Reason::InvalidEip2612ExtensionFormat)?;
    let a = &p.payload.permit2_authorization;
    if permit.from != a.from {
        return Err(Reason::Eip2612FromMismatch);
    }
    if permit.asset != a.permitted.token {
        return Err(Reason::Eip2612AssetMismatch);
    }
    if permit.spender != PERMIT2 {
        return Err(Reason::Eip2612SpenderNotPermit2);
    }
    if permit.deadline < U256::from(now.saturating_add(DEADLINE_BUFFER_SECS)) {
        return Err(Reason::Eip2612DeadlineExpired);
    }
    if permit.amount != a.permitted.amount {
        return Err(Reason::Permit2612AmountMismatch);
    }
    if split_signature(&permit.signature).is_err() {
        return Err(Reason::InvalidEip2612ExtensionFormat);
    }
    Ok(Some(permit.clone()))
}

/// Every check that needs no chain, in the order of the reference facilitator.
pub fn verify_offchain(
    r: &PaymentRequest,
    p: &Permit2Request,
    ctx: &Context,
    now: u64,
    phase: Phase,
) -> Result<Verified, Reason> {
    check_scheme(r, p.kind)?;
    let network = check_network(r, ctx)?;
    if !r.payment_id_valid {
        return Err(Reason::InvalidPayload);
    }
    if !ctx.assets.contains(&r.asset) {
        return Err(Reason::InvalidPaymentRequirements);
    }
    check_signature_size(&p.payload, ctx)?;
    let a = &p.payload.permit2_authorization;
    if a.spender != p.kind.proxy() {
        return Err(Reason::InvalidPermit2Spender);
    }
    if a.witness.to != r.pay_to {
        return Err(Reason::InvalidPermit2RecipientMismatch);
    }
    if p.kind == Kind::Upto
        && !a
            .witness
            .facilitator
            .is_some_and(|f| ctx.signers.contains(&f))
    {
        return Err(Reason::UptoFacilitatorMismatch);
    }
    if a.deadline < U256::from(now.saturating_add(DEADLINE_BUFFER_SECS)) {
        return Err(Reason::Permit2DeadlineExpired);
    }
    if a.witness.valid_after > U256::from(now) {
        return Err(Reason::Permit2NotYetValid);
    }
    let amount = check_amount(r, p, phase)?;
    check_amount_floor(amount, ctx)?;
    check_not_self_payment(r, a)?;
    if a.permitted.token != r.asset {
        return Err(Reason::Permit2TokenMismatch);
    }
    let hash = signing_hash(p.kind, a, network.chain_id);
    let needs_onchain_signature_check = check_signature(&p.payload, hash)?;
    let sponsoring = check_sponsoring(p, ctx, now)?;
    Ok(Verified {
        payer: a.from,
        amount,
        signing_hash: hash,
        needs_onchain_signature_check,
        sponsoring,
    })
}

/// The proxy call that moves the money: `settle`, or `settleWithPermit` with a sponsored permit.
pub fn settle_calldata(p: &Permit2Request, v: &Verified) -> Bytes {
    use alloy_sol_types::SolCall;
    let a = &p.payload.permit2_authorization;
    let permit = abi::PermitTransferFrom {
        permitted: abi::TokenPermissions {
            token: a.permitted.token,
            amount: a.permitted.amount,
        },
        nonce: a.nonce,
        deadline: a.deadline,
    };
    let permit2612 = v.sponsoring.as_ref().map(|s| {
        let (v, r, s_) = split_signature(&s.signature).unwrap_or_default();
        abi::EIP2612Permit {
            value: s.amount,
            deadline: s.deadline,
            r,
            s: s_,
            v,
        }
    });
    let signature = p.payload.signature.clone();
    let owner = a.from;
    match p.kind {
        Kind::Exact => {
            let witness = abi::ExactWitness {
                to: a.witness.to,
                validAfter: a.witness.valid_after,
            };
            match permit2612 {
                None => abi::IExactProxy::settleCall {
                    permit,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
                Some(permit2612) => abi::IExactProxy::settleWithPermitCall {
                    permit2612,
                    permit,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
        Kind::Upto => {
            let witness = abi::UptoWitness {
                to: a.witness.to,
                facilitator: a.witness.facilitator.unwrap_or_default(),
                validAfter: a.witness.valid_after,
            };
            let amount = v.amount;
            match permit2612 {
                None => abi::IUptoProxy::settleCall {
                    permit,
                    amount,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
                Some(permit2612) => abi::IUptoProxy::settleWithPermitCall {
                    permit2612,
                    permit,
                    amount,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
    }
    .into()
}

#[cfg(test)]
mod tests;
