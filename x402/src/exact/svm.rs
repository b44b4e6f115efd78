//! The `exact` scheme on SVM networks (`specs/schemes/exact/scheme_exact_svm.md`): the buyer
//! sends a transaction it signed, with our fee payer as its first account; the facilitator
//! checks it, adds the fee payer's signature and sends it.
//!
//! Everything here is pure. [`decode`] reads the bytes (legacy and v0 messages), [`verify`]
//! runs the spec's checks in the reference facilitator's order (`@x402/svm`), each failing
//! with its reason string, over the transaction's accounts with any address lookup tables
//! already resolved by the caller ([`LoadedAddresses`]). What is left for the chain (balances,
//! the source account, the blockhash) is the simulation's, with signature verification.

use sha2::{Digest, Sha256};
use solana_message::VersionedMessage;
use solana_pubkey::Pubkey;
use solana_transaction::versioned::VersionedTransaction;

use crate::proto::SvmRequest;
use crate::svm::{self, pubkey};
use crate::Reason;

/// The spec's cap on the compute unit price: 5 lamports per compute unit.
pub const MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS: u64 = 5_000_000;
/// The compute unit limit a payment may ask for (a TransferChecked costs ~700 CU with Token,
/// ~2,600 with Token-2022; the official client asks for 20,000).
pub const DEFAULT_MAX_COMPUTE_UNIT_LIMIT: u32 = 200_000;
/// The base fee of one signature.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
/// The most a settlement may cost its fee payer by default, lamports: two signatures and a
/// priority fee of up to 0.001 SOL.
pub const DEFAULT_MAX_LAMPORTS_PER_SETTLEMENT: u64 = 2 * LAMPORTS_PER_SIGNATURE + 1_000_000;
/// The longest serialized transaction a cluster accepts (packet data size).
pub const MAX_TRANSACTION_BYTES: usize = 1232;

const SET_COMPUTE_UNIT_LIMIT: u8 = 2;
const SET_COMPUTE_UNIT_PRICE: u8 = 3;
const TRANSFER_CHECKED: u8 = 12;

/// What a network's operator allows a settlement to cost (the "no gas for nothing" rule, in
/// lamports) and the least it must move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_compute_unit_price: u64,
    pub max_compute_unit_limit: u32,
    /// Signatures plus the priority fee (limit × price), lamports.
    pub max_lamports_per_settlement: u64,
    /// The asset's economic floor (`min_amount`), atomic units; 0 is refused anyway.
    pub min_amount: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_compute_unit_price: MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
            max_compute_unit_limit: DEFAULT_MAX_COMPUTE_UNIT_LIMIT,
            max_lamports_per_settlement: DEFAULT_MAX_LAMPORTS_PER_SETTLEMENT,
            min_amount: 0,
        }
    }
}

/// The addresses a v0 message loads from its lookup tables, in the message's order: every
/// table's writable indexes, then every table's readonly ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedAddresses {
    pub writable: Vec<Pubkey>,
    pub readonly: Vec<Pubkey>,
}

/// A payment the checks accepted: what settling it moves and costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The transfer's authority: the buyer, who signed.
    pub payer: Pubkey,
    pub fee_payer: Pubkey,
    pub source: Pubkey,
    pub destination: Pubkey,
    pub mint: Pubkey,
    pub token_program: Pubkey,
    pub amount: u64,
    pub decimals: u8,
    pub compute_unit_limit: u32,
    pub compute_unit_price: u64,
    /// What the fee payer pays if it lands: signatures and priority fee, lamports.
    pub fee_lamports: u64,
    /// SHA-256 of the message: the payment's identity (a copy signed again is the same).
    pub message_hash: [u8; 32],
}

/// A transaction of the payload: bincode of a legacy or v0 transaction, nothing after it,
/// well-formed (`sanitize`). Anything else is `..._could_not_be_decoded`.
pub fn decode(bytes: &[u8]) -> Result<VersionedTransaction, Reason> {
    let bad = Reason::InvalidExactSvmPayloadTransactionCouldNotBeDecoded;
    if bytes.is_empty() || bytes.len() > MAX_TRANSACTION_BYTES {
        return Err(bad);
    }
    let tx: VersionedTransaction = bincode::deserialize(bytes).map_err(|_| bad)?;
    if matches!(tx.message, VersionedMessage::V1(_)) {
        return Err(bad);
    }
    // bincode ignores trailing bytes; a payload with some is not the transaction it shows.
    if bincode::serialize(&tx).ok().as_deref() != Some(bytes) {
        return Err(bad);
    }
    tx.sanitize().map_err(|_| bad)?;
    Ok(tx)
}

/// SHA-256 of the transaction's message bytes (what its signatures sign).
pub fn message_hash(tx: &VersionedTransaction) -> [u8; 32] {
    Sha256::digest(tx.message.serialize()).into()
}

/// The fee payer a request names (`extra.feePayer`), if it is one of `ours`.
pub fn requested_fee_payer(req: &SvmRequest, ours: &[Pubkey]) -> Result<Pubkey, Reason> {
    let named = req
        .fee_payer
        .as_deref()
        .ok_or(Reason::InvalidExactSvmPayloadMissingFeePayer)?;
    svm::parse_pubkey(named)
        .filter(|p| ours.contains(p))
        .ok_or(Reason::FeePayerNotManagedByFacilitator)
}

/// Every check of the spec that needs no chain, in the reference's order. `loaded` holds the
/// addresses of the message's lookup tables (empty for a legacy message or one without
/// lookups); an account index it does not cover is refused as undecodable.
pub fn verify(
    tx: &VersionedTransaction,
    loaded: &LoadedAddresses,
    req: &SvmRequest,
    ours: &[Pubkey],
    limits: &Limits,
) -> Result<Verified, Reason> {
    let fee_payer = requested_fee_payer(req, ours)?;
    let message = &tx.message;
    let statics = message.static_account_keys();
    // The account that pays the fees is the first; it must be the fee payer named.
    if statics.first() != Some(&fee_payer) {
        return Err(Reason::FeePayerNotManagedByFacilitator);
    }
    let key = |index: u8| -> Result<Pubkey, Reason> {
        let i = index as usize;
        let (w, r) = (&loaded.writable, &loaded.readonly);
        let found = match i.checked_sub(statics.len()) {
            None => statics.get(i),
            Some(j) if j < w.len() => w.get(j),
            Some(j) => r.get(j - w.len()),
        };
        found
            .copied()
            .ok_or(Reason::InvalidExactSvmPayloadTransactionCouldNotBeDecoded)
    };
    let ixs = message.instructions();
    if !(3..=6).contains(&ixs.len()) {
        return Err(Reason::InvalidExactSvmPayloadTransactionInstructionsLength);
    }
    let program = |ix: &solana_message::compiled_instruction::CompiledInstruction| {
        statics.get(ix.program_id_index as usize).copied()
    };
    let compute_budget = pubkey(svm::COMPUTE_BUDGET_PROGRAM);

    // 1. SetComputeUnitLimit (u32), within our cap.
    let limit_ix = &ixs[0];
    let compute_unit_limit = match limit_ix.data.as_slice() {
        [SET_COMPUTE_UNIT_LIMIT, rest @ ..] if program(limit_ix) == Some(compute_budget) => {
            <[u8; 4]>::try_from(rest).map(u32::from_le_bytes).ok()
        }
        _ => None,
    }
    .ok_or(Reason::InvalidExactSvmPayloadComputeLimitInstruction)?;
    // 2. SetComputeUnitPrice (u64 micro-lamports), within the spec's cap (and ours).
    let price_ix = &ixs[1];
    let compute_unit_price = match price_ix.data.as_slice() {
        [SET_COMPUTE_UNIT_PRICE, rest @ ..] if program(price_ix) == Some(compute_budget) => {
            <[u8; 8]>::try_from(rest).map(u64::from_le_bytes).ok()
        }
        _ => None,
    }
    .ok_or(Reason::InvalidExactSvmPayloadComputePriceInstruction)?;
    if compute_unit_price
        > limits
            .max_compute_unit_price
            .min(MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS)
    {
        return Err(Reason::InvalidExactSvmPayloadComputePriceTooHigh);
    }
    if compute_unit_limit > limits.max_compute_unit_limit {
        return Err(Reason::InvalidExactSvmPayloadComputeLimitTooHigh);
    }

    // 3. TransferChecked of Token or Token-2022: source, mint, destination, authority.
    let transfer_ix = &ixs[2];
    let token_program = program(transfer_ix)
        .filter(|p| *p == pubkey(svm::TOKEN_PROGRAM) || *p == pubkey(svm::TOKEN_2022_PROGRAM))
        .ok_or(Reason::InvalidExactSvmPayloadNoTransferInstruction)?;
    let (amount, decimals) = match transfer_ix.data.as_slice() {
        [TRANSFER_CHECKED, rest @ ..] if rest.len() == 9 => (
            u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
            rest[8],
        ),
        _ => return Err(Reason::InvalidExactSvmPayloadNoTransferInstruction),
    };
    let [source, mint, destination, authority] = match transfer_ix.accounts.as_slice() {
        [a, b, c, d, ..] => [key(*a)?, key(*b)?, key(*c)?, key(*d)?],
        _ => return Err(Reason::InvalidExactSvmPayloadNoTransferInstruction),
    };
    // Our fee payers never move funds: not the authority, not the source, nor any account of
    // any instruction (a lookup table's included).
    if ours.contains(&authority) || ours.contains(&source) {
        return Err(Reason::InvalidExactSvmPayloadFeePayerTransferringFunds);
    }
    for ix in ixs {
        for index in &ix.accounts {
            if ours.contains(&key(*index)?) {
                return Err(Reason::InvalidExactSvmPayloadFeePayerTransferringFunds);
            }
        }
    }
    let asset = svm::parse_pubkey(&req.asset).ok_or(Reason::InvalidExactSvmPayloadMintMismatch)?;
    if mint != asset {
        return Err(Reason::InvalidExactSvmPayloadMintMismatch);
    }
    let pay_to =
        svm::parse_pubkey(&req.pay_to).ok_or(Reason::InvalidExactSvmPayloadRecipientMismatch)?;
    if destination != svm::associated_token_address(&pay_to, &mint, &token_program) {
        return Err(Reason::InvalidExactSvmPayloadRecipientMismatch);
    }
    // Exactly the amount; and worth a settlement: not 0, not below the asset's floor, not the
    // payer paying itself.
    if req.amount != Some(amount)
        || amount == 0
        || amount < limits.min_amount
        || authority == pay_to
    {
        return Err(Reason::InvalidExactSvmPayloadAmountMismatch);
    }

    // 4. Optional: Memo or Lighthouse.
    let memo_program = pubkey(svm::MEMO_PROGRAM);
    let lighthouse = pubkey(svm::LIGHTHOUSE_PROGRAM);
    let unknown = [
        Reason::InvalidExactSvmPayloadUnknownFourthInstruction,
        Reason::InvalidExactSvmPayloadUnknownFifthInstruction,
        Reason::InvalidExactSvmPayloadUnknownSixthInstruction,
    ];
    let mut memos = Vec::new();
    for (i, ix) in ixs[3..].iter().enumerate() {
        match program(ix) {
            Some(p) if p == memo_program => memos.push(ix.data.as_slice()),
            Some(p) if p == lighthouse => {}
            _ => return Err(unknown[i]),
        }
    }
    if let Some(memo) = &req.memo {
        if memos.len() != 1 {
            return Err(Reason::InvalidExactSvmPayloadMemoCount);
        }
        if memos[0] != memo.as_bytes() {
            return Err(Reason::InvalidExactSvmPayloadMemoMismatch);
        }
    }

    // 5. Signers: the fee payer and the buyer, no one else; the buyer's signature verifies.
    let header = message.header();
    if header.num_required_signatures > 2 {
        return Err(Reason::InvalidExactSvmPayloadExcessiveSigners);
    }
    let message_bytes = message.serialize();
    let buyer_signed = header.num_required_signatures == 2
        && statics.get(1) == Some(&authority)
        && tx
            .signatures
            .get(1)
            .is_some_and(|s| s.verify(authority.as_ref(), &message_bytes));
    if !buyer_signed {
        return Err(Reason::InvalidExactSvmPayloadSignatureInvalid);
    }

    // 6. What the fee payer pays if it lands, within the network's bound.
    let priority = (u128::from(compute_unit_limit) * u128::from(compute_unit_price))
        .div_ceil(1_000_000) as u64;
    let fee_lamports =
        LAMPORTS_PER_SIGNATURE * u64::from(header.num_required_signatures) + priority;
    if fee_lamports > limits.max_lamports_per_settlement {
        return Err(Reason::InvalidExactSvmPayloadFeeTooHigh);
    }

    Ok(Verified {
        payer: authority,
        fee_payer,
        source,
        destination,
        mint,
        token_program,
        amount,
        decimals,
        compute_unit_limit,
        compute_unit_price,
        fee_lamports,
        message_hash: Sha256::digest(&message_bytes).into(),
    })
}

/// The addresses a message's lookup tables name, read from the tables' account data (an
/// address lookup table: a 56-byte header, then 32-byte addresses). `tables[i]` is the data of
/// the message's `i`th lookup's table (`None`: the account does not exist). An index past a
/// table's end, or a missing table, is refused as undecodable.
pub fn resolve_lookups(
    tx: &VersionedTransaction,
    tables: &[Option<Vec<u8>>],
) -> Result<LoadedAddresses, Reason> {
    let bad = Reason::InvalidExactSvmPayloadTransactionCouldNotBeDecoded;
    let lookups = tx.message.address_table_lookups().unwrap_or_default();
    if lookups.len() != tables.len() {
        return Err(bad);
    }
    const HEADER: usize = 56;
    let mut loaded = LoadedAddresses::default();
    let entry = |data: &[u8], i: u8| -> Option<Pubkey> {
        let at = HEADER + 32 * i as usize;
        let bytes: [u8; 32] = data.get(at..at + 32)?.try_into().ok()?;
        Some(Pubkey::from(bytes))
    };
    for (lookup, table) in lookups.iter().zip(tables) {
        let data = table.as_deref().filter(|d| d.len() >= HEADER).ok_or(bad)?;
        for i in &lookup.writable_indexes {
            loaded.writable.push(entry(data, *i).ok_or(bad)?);
        }
    }
    for (lookup, table) in lookups.iter().zip(tables) {
        let data = table.as_deref().ok_or(bad)?;
        for i in &lookup.readonly_indexes {
            loaded.readonly.push(entry(data, *i).ok_or(bad)?);
        }
    }
    Ok(loaded)
}

/// The transaction with the fee payer's signature in its first slot, as sent.
pub fn with_fee_payer_signature(
    tx: &VersionedTransaction,
    signature: solana_signature::Signature,
) -> VersionedTransaction {
    let mut signed = tx.clone();
    if let Some(slot) = signed.signatures.first_mut() {
        *slot = signature;
    }
    signed
}

#[cfg(test)]
mod tests;
