//! The `exact` scheme on SVM networks: the buyer's partially signed transaction
//! (`x402::exact::svm`), judged against one served cluster ([`SvmRuntime`]).
//!
//! A payment of this family is never an EVM call (no `SettleCall`, no nonce, no receipt), so
//! it does not go through `PaymentMethod::judge`: the facilitator sends a request whose
//! network is of [`Family::Svm`](super::Family) to its SVM path (`facilitator/svm.rs`), which
//! asks this module. Checks, in order: scheme, network, requirements; the transaction
//! decoded; its lookup tables resolved (one `getMultipleAccounts`) or refused; every rule of
//! the spec (`x402::exact::svm::verify`); then the transaction signed by our fee payer and
//! simulated with signature verification. Nothing refused is ever sent.

use base64::Engine;
use solana_pubkey::Pubkey;
use solana_transaction::versioned::VersionedTransaction;
use x402::exact::svm::{self as exact, LoadedAddresses, Verified};
use x402::proto::{PaymentRequest, SvmRequest};
use x402::Reason;

use crate::error::ServiceResult;
use crate::ledger::Key;
use crate::svm::SvmRuntime;

/// The address lookup table program: a lookup table is an account it owns.
const ADDRESS_LOOKUP_TABLE_PROGRAM: &str = "AddressLookupTab1e1111111111111111111111111";

/// A refusal, with what the chain said when the simulation refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: Option<String>,
    /// The buyer, once the transfer was read.
    pub payer: Option<Pubkey>,
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Self {
            reason,
            message: None,
            payer: None,
        }
    }
}

/// A payment the checks and the simulation accepted, ready to send.
#[derive(Debug, Clone)]
pub struct Judged {
    pub verified: Verified,
    /// The transaction with our fee payer's signature, base64 (what is sent).
    pub signed_base64: String,
    /// Its signature (the fee payer's, the transaction's id), base58.
    pub signature: String,
    /// The message's recent blockhash, base58.
    pub blockhash: String,
}

/// The request's Solana side and the checks that need nothing but the request: scheme,
/// network (served here, the same in payload and requirements), `accepted` equal to the
/// requirements, the asset accepted here, a well-formed payment id.
pub fn check_request<'a>(
    req: &'a PaymentRequest,
    rt: Option<&SvmRuntime>,
) -> Result<&'a SvmRequest, Reason> {
    let svm = req.svm.as_ref().ok_or(Reason::InvalidNetwork)?;
    if req.scheme != "exact" || req.payload_scheme != "exact" {
        return Err(Reason::InvalidScheme);
    }
    let network = x402::svm::parse_svm_network(&req.network).ok_or(Reason::InvalidNetwork)?;
    let payload_network =
        x402::svm::parse_svm_network(&req.payload_network).ok_or(Reason::InvalidNetwork)?;
    let rt = rt.ok_or(Reason::InvalidNetwork)?;
    if !std::ptr::eq(network, payload_network) || !std::ptr::eq(network, rt.network) {
        return Err(Reason::InvalidNetwork);
    }
    if !req.accepted_matches || rt.asset(&svm.asset).is_none() {
        return Err(Reason::InvalidPaymentRequirements);
    }
    // A `payment-identifier` id that is not 16-128 of `[A-Za-z0-9_-]`, as on EVM.
    if !req.payment_id_valid {
        return Err(Reason::InvalidPayload);
    }
    Ok(svm)
}

/// The ledger key of an SVM payment: the network, the mint, the buyer and the SHA-256 of the
/// transaction's message. The signatures are not in it: a copy signed again (our fee payer's
/// slot filled, or empty) is the same payment.
pub fn ledger_key(network: &str, verified: &Verified) -> Key {
    Key {
        network: network.to_owned(),
        asset: verified.mint.to_string(),
        payer: verified.payer.to_string(),
        auth_nonce: format!("0x{}", hex::encode(verified.message_hash)),
    }
}

/// Every check that needs no simulation: the transaction decoded, its lookup tables resolved,
/// the spec's rules. `Err` is a failure to ask the chain (nothing was sent).
pub async fn check_transaction(
    rt: &SvmRuntime,
    svm: &SvmRequest,
) -> ServiceResult<Result<(VersionedTransaction, Verified), Refusal>> {
    let ours = rt.fee_payer_keys();
    // The fee payer first, as the reference does, then the bytes.
    if let Err(reason) = exact::requested_fee_payer(svm, &ours) {
        return Ok(Err(reason.into()));
    }
    let tx = match exact::decode(&svm.transaction) {
        Ok(tx) => tx,
        Err(reason) => return Ok(Err(reason.into())),
    };
    let loaded = match resolve_lookups(rt, &tx).await? {
        Ok(loaded) => loaded,
        Err(reason) => return Ok(Err(reason.into())),
    };
    let Some(asset) = rt.asset(&svm.asset) else {
        return Ok(Err(Reason::InvalidPaymentRequirements.into()));
    };
    Ok(
        exact::verify(&tx, &loaded, svm, &ours, &rt.limits_for(asset))
            .map(|v| (tx, v))
            .map_err(Refusal::from),
    )
}

/// The message's lookup tables, read in one call; a table that does not exist, is not a
/// lookup table, or lacks an index is refused as undecodable.
async fn resolve_lookups(
    rt: &SvmRuntime,
    tx: &VersionedTransaction,
) -> ServiceResult<Result<LoadedAddresses, Reason>> {
    let tables: Vec<Pubkey> = tx
        .message
        .address_table_lookups()
        .unwrap_or_default()
        .iter()
        .map(|l| l.account_key)
        .collect();
    if tables.is_empty() {
        return Ok(Ok(LoadedAddresses::default()));
    }
    let accounts = rt.rpc.multiple_accounts(&tables).await?;
    let data: Vec<Option<Vec<u8>>> = accounts
        .into_iter()
        .map(|a| {
            a.filter(|a| a.owner == ADDRESS_LOOKUP_TABLE_PROGRAM)
                .map(|a| a.data)
        })
        .collect();
    Ok(exact::resolve_lookups(tx, &data))
}

/// The transaction signed by our fee payer and simulated with signature verification.
pub async fn simulate(
    rt: &SvmRuntime,
    tx: &VersionedTransaction,
    verified: &Verified,
) -> ServiceResult<Result<Judged, Refusal>> {
    let Some(fee_payer) = rt.fee_payer(&verified.fee_payer) else {
        return Ok(Err(Reason::FeePayerNotManagedByFacilitator.into()));
    };
    let signature = fee_payer.sign(&tx.message.serialize());
    let signed = exact::with_fee_payer_signature(tx, signature);
    let bytes = bincode::serialize(&signed).map_err(|e| {
        crate::error::ServiceError::InvalidInput(format!("transaction re-encoding: {e}"))
    })?;
    let signed_base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    match rt.rpc.simulate(&signed_base64).await? {
        Ok(()) => Ok(Ok(Judged {
            verified: verified.clone(),
            signed_base64,
            signature: signature.to_string(),
            blockhash: tx.message.recent_blockhash().to_string(),
        })),
        Err(why) => Ok(Err(Refusal {
            reason: Reason::TransactionSimulationFailed,
            message: Some(why),
            payer: Some(verified.payer),
        })),
    }
}

/// Everything: the request, the transaction, the simulation.
pub async fn judge(rt: &SvmRuntime, svm: &SvmRequest) -> ServiceResult<Result<Judged, Refusal>> {
    let (tx, verified) = match check_transaction(rt, svm).await? {
        Ok(v) => v,
        Err(refusal) => return Ok(Err(refusal)),
    };
    simulate(rt, &tx, &verified).await
}
