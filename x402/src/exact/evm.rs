//! `exact` on EVM: EIP-3009 `transferWithAuthorization`, signed as EIP-712 typed data.
//!
//! The checks are small named functions run in the order the x402 `exact` scheme on EVM
//! (EIP-3009) lists a facilitator's verification steps, each failing with one `Reason`. Signatures are recovered with libsecp256k1 (the
//! `secp256k1` crate): ~5x faster than the pure-Rust path, and verify is the hot path.

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{sol, Eip712Domain, SolStruct, SolValue};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, SECP256K1};

use crate::network::{parse_network, Network};
use crate::proto::{AmountRule, Authorization, PaymentRequest};
use crate::Reason;

sol! {
    /// EIP-3009 typed data.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// The token calls a facilitator makes: `transferWithAuthorization` (selector 0xe3ee160e
    /// with v, r, s; 0xcf092995 with `bytes signature`, which FiatTokenV2_2 checks with
    /// ERC-1271 for contract wallets) and the reads that name a failed simulation.
    interface IEIP3009 {
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function name() external view returns (string);
        function version() external view returns (string);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
    }

    /// What else decides whether FiatTokenV2_2's `transferWithAuthorization` goes through
    /// (`whenNotPaused`, `notBlacklisted(from)`, `notBlacklisted(to)`), and the events that
    /// change any of it, or a balance, or a nonce: what a state mirror follows.
    interface IFiatTokenState {
        function paused() external view returns (bool);
        function isBlacklisted(address account) external view returns (bool);
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);
        event Blacklisted(address indexed account);
        event UnBlacklisted(address indexed account);
        event Pause();
        event Unpause();
        /// FiatTokenProxy: the implementation changed (the rules may have).
        event Upgraded(address implementation);
    }
}

/// Seconds of slack on `validBefore`: the transaction must still be valid when mined.
pub const VALID_BEFORE_BUFFER_SECS: u64 = 6;

/// An EOA's ECDSA signature, r ‖ s ‖ v: the longest signature that is not a contract's.
pub const EOA_SIGNATURE_BYTES: usize = 65;

/// The default cap of a contract wallet's signature (ERC-1271) or an ERC-6492 wrapper
/// (`verify.max_signature_bytes`): a Safe's signatures of several owners, a passkey's WebAuthn
/// assertion, or a counterfactual wallet's factory calldata fit well within it.
pub const DEFAULT_MAX_SIGNATURE_BYTES: usize = 4096;

/// ERC-6492 wrapped signatures end with this magic.
const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// secp256k1's n / 2: larger `s` values are malleable twins (EIP-2) and refused.
const HALF_N: U256 = U256::from_be_bytes([
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// The EIP-712 domain of a token: `{name, version, chainId, verifyingContract}`.
pub fn domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_owned().into()),
        Some(version.to_owned().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    )
}

/// The digest a buyer signs.
pub fn signing_hash(a: &Authorization, domain: &Eip712Domain) -> B256 {
    TransferWithAuthorization {
        from: a.from,
        to: a.to,
        value: a.value,
        validAfter: a.valid_after,
        validBefore: a.valid_before,
        nonce: a.nonce,
    }
    .eip712_signing_hash(domain)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureKind {
    /// r ‖ s ‖ v, v in {0, 1, 27, 28}.
    Eoa65,
    /// ERC-2098 compact: r ‖ yParity·2^255 + s.
    Eoa64,
    /// ERC-6492: (factory, calldata, inner signature) ‖ magic — a wallet not deployed yet.
    Erc6492 {
        factory: Address,
        factory_calldata: Bytes,
        inner: Bytes,
    },
    /// Anything else: a contract wallet's ERC-1271 signature.
    Other,
}

pub fn classify_signature(sig: &[u8]) -> SignatureKind {
    if sig.len() >= 32 && sig[sig.len() - 32..] == ERC6492_MAGIC {
        if let Ok((factory, calldata, inner)) =
            <(Address, Bytes, Bytes)>::abi_decode_params(&sig[..sig.len() - 32])
        {
            return SignatureKind::Erc6492 {
                factory,
                factory_calldata: calldata,
                inner,
            };
        }
        return SignatureKind::Other;
    }
    match sig.len() {
        65 => SignatureKind::Eoa65,
        64 => SignatureKind::Eoa64,
        _ => SignatureKind::Other,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("not an EOA signature (65 or 64 bytes)")]
    NotEoa,
    #[error("invalid recovery id")]
    RecoveryId,
    #[error("high s (EIP-2)")]
    HighS,
    #[error("signature does not recover")]
    Unrecoverable,
}

/// (v in {27, 28}, r, s) of a 65- or 64-byte signature, for the (v, r, s) call.
pub fn split_signature(sig: &[u8]) -> Result<(u8, B256, B256), SignatureError> {
    let (r, s, parity) = match sig.len() {
        65 => {
            let parity = match sig[64] {
                0 | 27 => 0,
                1 | 28 => 1,
                _ => return Err(SignatureError::RecoveryId),
            };
            (
                B256::from_slice(&sig[..32]),
                B256::from_slice(&sig[32..64]),
                parity,
            )
        }
        64 => {
            // ERC-2098: the top bit of the second word is yParity.
            let mut vs = [0u8; 32];
            vs.copy_from_slice(&sig[32..64]);
            let parity = vs[0] >> 7;
            vs[0] &= 0x7f;
            (B256::from_slice(&sig[..32]), B256::from(vs), parity)
        }
        _ => return Err(SignatureError::NotEoa),
    };
    if U256::from_be_bytes(s.0) > HALF_N {
        return Err(SignatureError::HighS);
    }
    Ok((27 + parity, r, s))
}

/// The address that signed `hash`.
pub fn recover_signer(hash: B256, sig: &[u8]) -> Result<Address, SignatureError> {
    let (v, r, s) = split_signature(sig)?;
    let id = RecoveryId::try_from(i32::from(v - 27)).map_err(|_| SignatureError::RecoveryId)?;
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(r.as_slice());
    rs[32..].copy_from_slice(s.as_slice());
    let sig =
        RecoverableSignature::from_compact(&rs, id).map_err(|_| SignatureError::Unrecoverable)?;
    let key = SECP256K1
        .recover_ecdsa(&Message::from_digest(hash.0), &sig)
        .map_err(|_| SignatureError::Unrecoverable)?;
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

/// An asset the caller accepts on the request's network, with its EIP-712 identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAsset {
    pub address: Address,
    pub eip712_name: String,
    pub eip712_version: String,
    /// The least a payment in it may move, atomic units (0: any amount above 0).
    pub min_amount: U256,
}

/// The caller's view of the world: is the network served, which assets does it take.
#[derive(Debug, Clone)]
pub struct VerifyContext {
    pub network_enabled: bool,
    pub assets: Vec<AllowedAsset>,
    /// The longest contract-wallet (ERC-1271) or ERC-6492 signature accepted, bytes.
    pub max_signature_bytes: usize,
}

impl Default for VerifyContext {
    fn default() -> Self {
        Self {
            network_enabled: false,
            assets: Vec::new(),
            max_signature_bytes: DEFAULT_MAX_SIGNATURE_BYTES,
        }
    }
}

/// What the off-chain checks established.
#[derive(Debug, Clone)]
pub struct OffchainVerified {
    pub payer: Address,
    pub network: &'static Network,
    pub domain: Eip712Domain,
    pub signing_hash: B256,
    /// The signature is not an EOA's for `from`: only the chain (ERC-1271 via the `bytes`
    /// overload) can tell whether it is valid.
    pub needs_onchain_signature_check: bool,
}

pub fn check_scheme(r: &PaymentRequest) -> Result<(), Reason> {
    if r.scheme == "exact" && r.payload_scheme == "exact" {
        Ok(())
    } else {
        Err(Reason::InvalidScheme)
    }
}

pub fn check_network(r: &PaymentRequest, ctx: &VerifyContext) -> Result<&'static Network, Reason> {
    let network = parse_network(&r.network).ok_or(Reason::InvalidNetwork)?;
    let payload_network = parse_network(&r.payload_network).ok_or(Reason::InvalidNetwork)?;
    if network.chain_id != payload_network.chain_id || !ctx.network_enabled {
        return Err(Reason::InvalidNetwork);
    }
    if !r.accepted_matches {
        return Err(Reason::InvalidPaymentRequirements);
    }
    Ok(network)
}

pub fn check_asset<'a>(
    r: &PaymentRequest,
    ctx: &'a VerifyContext,
) -> Result<&'a AllowedAsset, Reason> {
    ctx.assets
        .iter()
        .find(|a| a.address == r.asset)
        .ok_or(Reason::InvalidPaymentRequirements)
}

/// `extra.name`/`extra.version` must be the token's own (USDC is "USDC" on base-sepolia but
/// "USD Coin" on base: the commonest integration bug). Missing ones default to the token's.
pub fn check_domain(
    r: &PaymentRequest,
    asset: &AllowedAsset,
    network: &Network,
) -> Result<Eip712Domain, Reason> {
    let name = r.extra_name.as_deref().unwrap_or(&asset.eip712_name);
    let version = r.extra_version.as_deref().unwrap_or(&asset.eip712_version);
    if name != asset.eip712_name || version != asset.eip712_version {
        return Err(Reason::InvalidExactEvmTokenNameMismatch);
    }
    Ok(domain(name, version, network.chain_id, r.asset))
}

/// Ok(true) when the chain must still judge the signature (contract wallets).
pub fn check_signature(r: &PaymentRequest, hash: B256) -> Result<bool, Reason> {
    let sig = &r.payload.signature;
    match classify_signature(sig) {
        SignatureKind::Eoa65 | SignatureKind::Eoa64 => match recover_signer(hash, sig) {
            Ok(signer) if signer == r.payload.authorization.from => Ok(false),
            // Could be a contract wallet whose ERC-1271 accepts it: the chain decides.
            Ok(_) => Ok(true),
            Err(_) => Err(Reason::InvalidExactEvmPayloadSignature),
        },
        // A counterfactual wallet: whether it is deployed by now, and whether its factory may
        // be used (`erc6492_allowed_factories`), only the chain and the network's policy say.
        SignatureKind::Erc6492 { .. } | SignatureKind::Other => Ok(true),
    }
}

/// A signature no longer than its kind allows: 65 bytes for an EOA, `max_wrapped` for a
/// contract wallet's (ERC-1271) or an ERC-6492 wrapper. Judged before any other work: a longer
/// one would be hashed, sent to the node in every simulation, and kept in the ledger.
pub fn signature_size_ok(sig: &[u8], max_wrapped: usize) -> bool {
    sig.len() <= EOA_SIGNATURE_BYTES.max(max_wrapped)
}

pub fn check_signature_size(r: &PaymentRequest, max_wrapped: usize) -> Result<(), Reason> {
    if signature_size_ok(&r.payload.signature, max_wrapped) {
        Ok(())
    } else {
        Err(Reason::InvalidExactEvmPayloadSignature)
    }
}

/// The economic floor: the operator pays every settlement's gas, so an amount of 0, or below
/// the asset's configured minimum, is not worth one. 0 is refused whatever the minimum.
pub fn below_floor(amount: U256, min_amount: U256) -> bool {
    amount.is_zero() || amount < min_amount
}

/// Both the authorized value and the amount the requirements ask are at or above the floor
/// (a v1 payment may authorize more than asked; requirements asking nothing are refused too).
pub fn check_value_floor(r: &PaymentRequest, asset: &AllowedAsset) -> Result<(), Reason> {
    let value = r.payload.authorization.value;
    if below_floor(value, asset.min_amount) || below_floor(r.amount_required, asset.min_amount) {
        Err(Reason::InvalidExactEvmPayloadAuthorizationValue)
    } else {
        Ok(())
    }
}

/// A payer paying itself moves nothing but the operator's gas.
pub fn check_not_self_payment(r: &PaymentRequest) -> Result<(), Reason> {
    if r.payload.authorization.from == r.pay_to {
        Err(Reason::InvalidExactEvmPayloadAuthorizationValue)
    } else {
        Ok(())
    }
}

pub fn check_recipient(r: &PaymentRequest) -> Result<(), Reason> {
    if r.payload.authorization.to == r.pay_to {
        Ok(())
    } else {
        Err(Reason::InvalidExactEvmPayloadRecipientMismatch)
    }
}

pub fn check_time(a: &Authorization, now: u64) -> Result<(), Reason> {
    if a.valid_before < U256::from(now.saturating_add(VALID_BEFORE_BUFFER_SECS)) {
        return Err(Reason::InvalidExactEvmPayloadAuthorizationValidBefore);
    }
    if a.valid_after > U256::from(now) {
        return Err(Reason::InvalidExactEvmPayloadAuthorizationValidAfter);
    }
    Ok(())
}

pub fn check_amount(r: &PaymentRequest) -> Result<(), Reason> {
    let value = r.payload.authorization.value;
    let ok = match r.amount_rule {
        AmountRule::AtLeast => value >= r.amount_required,
        AmountRule::Exactly => value == r.amount_required,
    };
    if ok {
        Ok(())
    } else {
        Err(Reason::InvalidExactEvmPayloadAuthorizationValue)
    }
}

/// Every check that needs no chain, in the spec's order.
pub fn verify_offchain(
    r: &PaymentRequest,
    ctx: &VerifyContext,
    now: u64,
) -> Result<OffchainVerified, Reason> {
    check_scheme(r)?;
    let network = check_network(r, ctx)?;
    if !r.payment_id_valid {
        return Err(Reason::InvalidPayload);
    }
    let asset = check_asset(r, ctx)?;
    // Nothing that costs work or leaves a trace before these: a payment worth nothing, or
    // carrying an oversized signature, is refused here, with no RPC call and no ledger row.
    check_signature_size(r, ctx.max_signature_bytes)?;
    check_value_floor(r, asset)?;
    check_not_self_payment(r)?;
    let domain = check_domain(r, asset, network)?;
    let hash = signing_hash(&r.payload.authorization, &domain);
    let needs_onchain_signature_check = check_signature(r, hash)?;
    check_recipient(r)?;
    check_time(&r.payload.authorization, now)?;
    check_amount(r)?;
    Ok(OffchainVerified {
        payer: r.payload.authorization.from,
        network,
        domain,
        signing_hash: hash,
        needs_onchain_signature_check,
    })
}

#[cfg(test)]
mod tests;
