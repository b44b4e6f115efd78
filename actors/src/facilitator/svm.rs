//! verify for payments on SVM networks (`crate::methods::svm`): the request's checks, the
//! transaction's, "already settled" from the ledger (keyed by the transaction's message), then
//! the simulation signed by our fee payer. Nothing here sends anything.

use std::sync::Arc;

use alloy::primitives::U256;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{Facilitator, Transfer};
use crate::error::ServiceResult;
use crate::ledger::{self, Key, Status};
use crate::methods::svm::{self as method, Refusal};
use crate::metrics::{Operation, X402Event, CONFIRMED, REVERTED};
use crate::svm::SvmRuntime;

/// The verdict on an SVM payment (`/verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmVerifyAnswer {
    pub is_valid: bool,
    pub invalid_reason: Option<Reason>,
    /// What the chain said, when the simulation refused it.
    pub invalid_message: Option<String>,
    /// The buyer (base58), once known.
    pub payer: Option<String>,
}

impl SvmVerifyAnswer {
    fn refused(r: Refusal) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(r.reason),
            invalid_message: r.message,
            payer: r.payer.map(|p| p.to_string()),
        }
    }
}

impl Facilitator {
    /// The served SVM network a request names (v1 name or CAIP-2 id).
    pub fn svm_runtime(&self, network: &str) -> Option<&Arc<SvmRuntime>> {
        let n = x402::svm::parse_svm_network(network)?;
        self.inner
            .config
            .svm
            .iter()
            .find(|rt| std::ptr::eq(rt.network, n))
    }

    /// Every served SVM network.
    pub fn svm_runtimes(&self) -> &[Arc<SvmRuntime>] {
        &self.inner.config.svm
    }

    /// Verify a payment on an SVM network. `Err` is a failure to ask the chain.
    pub async fn verify_svm(&self, req: &PaymentRequest) -> ServiceResult<SvmVerifyAnswer> {
        let rt = self.svm_runtime(&req.network);
        let svm = match method::check_request(req, rt.map(Arc::as_ref)) {
            Ok(svm) => svm,
            Err(reason) => return Ok(SvmVerifyAnswer::refused(reason.into())),
        };
        let rt = rt.expect("check_request needs the runtime");
        let (tx, verified) = match method::check_transaction(rt, svm).await? {
            Ok(v) => v,
            Err(refusal) => return Ok(SvmVerifyAnswer::refused(refusal)),
        };
        let payer = Some(verified.payer);
        let key = method::ledger_key(rt.network.v1_name, &verified);
        if self.svm_payment_taken(&key).await? {
            return Ok(SvmVerifyAnswer::refused(Refusal {
                reason: Reason::DuplicateSettlement,
                message: None,
                payer,
            }));
        }
        Ok(match method::simulate(rt, &tx, &verified).await? {
            Ok(_) => SvmVerifyAnswer {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer: payer.map(|p| p.to_string()),
            },
            Err(refusal) => SvmVerifyAnswer::refused(refusal),
        })
    }

    /// Has a settle of this payment begun on any instance (a ledger row that sent or is
    /// sending)? A row that failed without sending does not count.
    async fn svm_payment_taken(&self, key: &Key) -> ServiceResult<bool> {
        Ok(ledger::find(&self.inner.db, key)
            .await?
            .is_some_and(|row| row.status != Status::Failed || row.tx_hash.is_some()))
    }
}

/// The outcome of an SVM settle (`/settle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmSettleAnswer {
    pub success: bool,
    pub error_reason: Option<Reason>,
    pub error_message: Option<String>,
    /// The transaction's signature (base58), once one was sent.
    pub transaction: Option<String>,
    pub payer: Option<String>,
    pub amount: u64,
    /// The slot it landed in.
    pub slot: Option<u64>,
    /// This call sent the transaction (else: a repeat answered from the ledger).
    pub mined_here: bool,
}

impl SvmSettleAnswer {
    fn refused(r: Refusal, amount: u64) -> Self {
        Self {
            success: false,
            error_reason: Some(r.reason),
            error_message: r.message,
            transaction: None,
            payer: r.payer.map(|p| p.to_string()),
            amount,
            slot: None,
            mined_here: false,
        }
    }

    /// What a ledger row says of its settlement (a retry of the same idempotent request).
    fn of_row(row: &crate::facilitator::SettlementRow) -> Self {
        let (success, reason) = match row.status.as_str() {
            s if s == Status::Confirmed.as_str() => (true, None),
            s if s == Status::Failed.as_str() => (
                false,
                Some(
                    row.error_reason
                        .as_deref()
                        .and_then(Reason::parse)
                        .unwrap_or(Reason::TransactionFailed),
                ),
            ),
            _ => (false, Some(Reason::SettlementPending)),
        };
        Self {
            success,
            error_reason: reason,
            error_message: None,
            transaction: row.tx_hash.clone(),
            payer: Some(row.payer.clone()),
            amount: row.amount.parse().unwrap_or(0),
            slot: row.block_number.map(|b| b as u64),
            mined_here: false,
        }
    }
}

/// How often a sent transaction's status is read.
const STATUS_POLL: std::time::Duration = std::time::Duration::from_millis(400);

/// How often a settle waiting for its own transaction reads its status (the recent statuses
/// only: one call), and every how many reads it also asks whether the blockhash expired.
const CONFIRM_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const EXPIRY_EVERY: u32 = 10;

/// Where a sent transaction is.
enum Landing {
    Landed(u64),
    FailedOnChain(u64, String),
    /// Its blockhash expired and the node never saw it: it can never land.
    Expired,
    /// Not known yet (still within its blockhash's life, or the RPC did not answer).
    Unknown,
}

impl Facilitator {
    /// The outcome of another settle of this payment, as its row says, waiting up to `wait`
    /// while nothing is known yet (then `settlement_pending`).
    async fn svm_outcome_of(
        &self,
        key: &Key,
        wait: std::time::Duration,
    ) -> ServiceResult<SvmSettleAnswer> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let row = ledger::find(&self.inner.db, key).await?;
            let answer = row.as_ref().map(SvmSettleAnswer::of_row);
            match answer {
                Some(a) if a.error_reason != Some(Reason::SettlementPending) => return Ok(a),
                _ if tokio::time::Instant::now() >= deadline => {
                    return Ok(answer.unwrap_or(SvmSettleAnswer {
                        success: false,
                        error_reason: Some(Reason::SettlementPending),
                        error_message: None,
                        transaction: None,
                        payer: None,
                        amount: 0,
                        slot: None,
                        mined_here: false,
                    }))
                }
                _ => tokio::time::sleep(STATUS_POLL).await,
            }
        }
    }

    /// Settle a payment on an SVM network: exactly one settle of a transaction message ever
    /// answers `success: true`, on every instance of the database (the ledger's unique key is
    /// the message's hash); a copy, concurrent or later, is `duplicate_settlement`, except a
    /// retry of the same idempotent request, which gets the first one's outcome.
    pub async fn settle_svm(
        &self,
        req: &PaymentRequest,
        caller: Option<super::Caller>,
    ) -> ServiceResult<SvmSettleAnswer> {
        let amount = req.svm.as_ref().and_then(|s| s.amount).unwrap_or(0);
        let rt = self.svm_runtime(&req.network).cloned();
        let svm = match method::check_request(req, rt.as_deref()) {
            Ok(svm) => svm.clone(),
            Err(reason) => return Ok(SvmSettleAnswer::refused(reason.into(), amount)),
        };
        let rt = rt.expect("check_request needs the runtime");
        let (tx, verified) = match method::check_transaction(&rt, &svm).await? {
            Ok(v) => v,
            Err(refusal) => return Ok(SvmSettleAnswer::refused(refusal, amount)),
        };
        let caller = caller.unwrap_or_default();
        let this = self.clone();
        let req = req.clone();
        // The leader runs to its end even if the HTTP request that started it goes away.
        tokio::spawn(async move {
            this.settle_svm_claimed(&rt, &req, tx, verified, &caller)
                .await
        })
        .await?
    }

    async fn settle_svm_claimed(
        &self,
        rt: &Arc<SvmRuntime>,
        req: &PaymentRequest,
        tx: solana_transaction::versioned::VersionedTransaction,
        verified: x402::exact::svm::Verified,
        caller: &super::Caller,
    ) -> ServiceResult<SvmSettleAnswer> {
        let payer = Some(verified.payer);
        let amount = verified.amount;
        let failed = |reason: Reason, message: Option<String>| {
            SvmSettleAnswer::refused(
                Refusal {
                    reason,
                    message,
                    payer,
                },
                amount,
            )
        };
        let key = method::ledger_key(rt.network.v1_name, &verified);
        let client_id = (!caller.client_id.is_empty()).then(|| caller.client_id.clone());
        let svm = req.svm.as_ref().expect("an SVM request");
        let new = ledger::NewSettlement {
            key: key.clone(),
            pay_to: svm.pay_to.clone(),
            amount: amount.to_string(),
            valid_after: 0,
            valid_before: 0,
            x402_version: req.x402_version as i16,
            request_hash: req.request_hash,
            payment_id: req.payment_id.clone(),
            payload: serde_json::json!({
                "transaction": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &svm.transaction,
                ),
            }),
            client_id: client_id.clone(),
            idempotency_key: caller.idempotency_key.clone(),
            instance_id: self.inner.fleet.id().to_owned(),
        };
        let claim = match self.claim_row(&new, caller).await? {
            Ok(claim) => claim,
            Err(row) => {
                // Another settle's: a retry of the same idempotent request reads its outcome
                // (waiting while it is in flight); any other copy is a duplicate.
                if caller.resumes(row.client_id.as_deref(), row.idempotency_key.as_deref()) {
                    return self.svm_outcome_of(&key, rt.confirm_timeout).await;
                }
                return Ok(failed(Reason::DuplicateSettlement, None));
            }
        };
        let id = claim.row().id;
        let transfer = Transfer::of(claim.row());
        let claim = self.admit(claim, caller).await?;
        // Simulated right before sending, signed as it will be sent.
        let judged = match method::simulate(rt, &tx, &verified).await {
            Ok(Ok(judged)) => judged,
            Ok(Err(refusal)) => {
                claim.refuse(refusal.reason.as_str()).await?;
                return Ok(SvmSettleAnswer::refused(refusal, amount));
            }
            Err(e) => {
                claim.abandon().await?;
                return Err(e);
            }
        };
        let signature = judged.signature.clone();
        ledger::mark_svm_submitted(
            &self.inner.db,
            id,
            &signature,
            &verified.fee_payer.to_string(),
            &judged.signed_base64,
            verified.fee_lamports,
        )
        .await?;
        claim.commit();
        let pending = |message: Option<String>| SvmSettleAnswer {
            success: false,
            error_reason: Some(Reason::SettlementPending),
            error_message: message,
            transaction: Some(signature.clone()),
            payer: payer.map(|p| p.to_string()),
            amount,
            slot: None,
            mined_here: false,
        };
        // Sent with preflight: a transaction the node would not execute is refused unsent.
        match rt.rpc.send(&judged.signed_base64).await {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => {
                // Refused before broadcast, unless it is already known (a node may answer a
                // repeat with an error): its status says.
                if matches!(
                    self.svm_landing(rt, &judged.signature, &judged.blockhash)
                        .await,
                    Landing::Unknown | Landing::Expired
                ) {
                    ledger::unmark_svm_submitted(
                        &self.inner.db,
                        id,
                        Reason::TransactionSimulationFailed.as_str(),
                    )
                    .await?;
                    return Ok(failed(Reason::TransactionSimulationFailed, Some(why)));
                }
            }
            // No answer: it may have been broadcast. Its row names it; the watch finds out.
            Err(e) => {
                self.watch_svm(rt.clone(), id, judged, verified.fee_lamports, transfer);
                return Ok(pending(Some(e.to_string())));
            }
        }
        let deadline = tokio::time::Instant::now() + rt.confirm_timeout;
        let mut polls = 0u32;
        loop {
            polls = polls.wrapping_add(1);
            let landing = if polls.is_multiple_of(EXPIRY_EVERY) {
                self.svm_landing(rt, &judged.signature, &judged.blockhash)
                    .await
            } else {
                match rt.recent_signature_status(&judged.signature).await {
                    Ok(Some(s)) => landing_of(s),
                    _ => Landing::Unknown,
                }
            };
            let fee = verified.fee_lamports;
            match landing {
                Landing::Landed(slot) => {
                    self.record_landing(id, Landing::Landed(slot), fee, &transfer)
                        .await?;
                    return Ok(SvmSettleAnswer {
                        success: true,
                        error_reason: None,
                        error_message: None,
                        transaction: Some(signature),
                        payer: payer.map(|p| p.to_string()),
                        amount,
                        slot: Some(slot),
                        mined_here: true,
                    });
                }
                Landing::FailedOnChain(slot, why) => {
                    let landing = Landing::FailedOnChain(slot, why.clone());
                    self.record_landing(id, landing, fee, &transfer).await?;
                    let mut answer = failed(Reason::TransactionFailed, Some(why));
                    answer.transaction = Some(signature);
                    answer.slot = Some(slot);
                    return Ok(answer);
                }
                Landing::Expired => {
                    self.record_landing(id, Landing::Expired, fee, &transfer)
                        .await?;
                    let mut answer = failed(Reason::TransactionFailed, None);
                    answer.transaction = Some(signature);
                    return Ok(answer);
                }
                Landing::Unknown => {}
            }
            if tokio::time::Instant::now() >= deadline {
                self.watch_svm(rt.clone(), id, judged, verified.fee_lamports, transfer);
                return Ok(pending(None));
            }
            tokio::time::sleep(CONFIRM_POLL).await;
        }
    }

    /// Where a sent transaction is: its status, else whether its blockhash can still carry it
    /// (read after the status, and the status read again, so that "expired" is never said of a
    /// transaction that landed meanwhile).
    async fn svm_landing(&self, rt: &SvmRuntime, signature: &str, blockhash: &str) -> Landing {
        match rt.rpc.signature_status(signature).await {
            Ok(Some(s)) => return landing_of(s),
            Ok(None) => {}
            Err(_) => return Landing::Unknown,
        }
        match rt.rpc.blockhash_valid(blockhash).await {
            Ok(false) => match rt.rpc.signature_status(signature).await {
                Ok(Some(s)) => landing_of(s),
                Ok(None) => Landing::Expired,
                Err(_) => Landing::Unknown,
            },
            _ => Landing::Unknown,
        }
    }

    /// Follow a transaction that answered `settlement_pending` until it lands or its blockhash
    /// expires (never "failed" while it can still land), within the background watch bound.
    fn watch_svm(
        &self,
        rt: Arc<SvmRuntime>,
        id: i64,
        judged: method::Judged,
        fee: u64,
        transfer: Transfer,
    ) {
        if self.inner.config.background_watch.is_zero() {
            return;
        }
        let this = self.clone();
        let until = tokio::time::Instant::now() + self.inner.config.background_watch;
        tokio::spawn(async move {
            while tokio::time::Instant::now() < until {
                let landing = this
                    .svm_landing(&rt, &judged.signature, &judged.blockhash)
                    .await;
                match this.record_landing(id, landing, fee, &transfer).await {
                    Ok(false) => {}
                    Ok(true) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "SVM settlement outcome not recorded");
                        return;
                    }
                }
                tokio::time::sleep(STATUS_POLL).await;
            }
        });
    }
}

impl Facilitator {
    /// Record where a sent transaction is, when that is known: `Ok(true)` once the row is
    /// resolved (by this call or another), `Ok(false)` while nothing is known yet. As for EVM
    /// (`resolve_mined`), the one call that resolves the row also accounts for the transfer in
    /// the metrics, whichever path got there first (the settle itself, the background watch,
    /// a status read or reconciliation): a transaction that landed is a `Transfer` event,
    /// `confirmed` with the amount moved or `reverted` with none, its fee in lamports in
    /// `fee_wei`. One that expired unlanded moved nothing and cost nothing: no event.
    async fn record_landing(
        &self,
        id: i64,
        landing: Landing,
        fee: u64,
        transfer: &Transfer,
    ) -> ServiceResult<bool> {
        let failed = Some(Reason::TransactionFailed.as_str());
        let (landed, error) = match landing {
            Landing::Landed(slot) => (Some((slot, fee)), None),
            Landing::FailedOnChain(slot, _) => (Some((slot, fee)), failed),
            Landing::Expired => (None, failed),
            Landing::Unknown => return Ok(false),
        };
        let moved = ledger::resolve_svm(&self.inner.db, id, landed, error).await?;
        if moved && landed.is_some() {
            let success = error.is_none();
            self.inner.metrics.record_x402(X402Event {
                day: chrono::Utc::now().date_naive(),
                client_id: transfer.client_id.clone().unwrap_or_default(),
                network: transfer.network.clone(),
                asset: transfer.asset.clone(),
                operation: Operation::Transfer,
                outcome: if success { CONFIRMED } else { REVERTED }.to_owned(),
                amount: if success { transfer.amount } else { U256::ZERO },
                // Compute units are not read back (that would be one more RPC call).
                gas_used: 0,
                fee_wei: U256::from(fee),
                latency: std::time::Duration::ZERO,
            });
        }
        Ok(true)
    }

    /// Reconciliation of the SVM networks' unresolved rows (at start-up and periodically, as
    /// for EVM): a sent transaction (its signature and signed bytes are on the row) is looked
    /// up and resolved when it landed or provably expired; a claim that sent nothing and was
    /// abandoned fails, so that the payment may be settled again.
    pub(super) async fn reconcile_svm(&self) -> ServiceResult<usize> {
        let mut resolved = 0;
        for rt in &self.inner.config.svm {
            for row in ledger::unresolved(&self.inner.db, rt.network.v1_name).await? {
                let Some((signature, blockhash, fee)) = sent(&row) else {
                    if (row.tx_hash.is_none() || row.raw_tx.is_none()) && ledger::abandoned(&row) {
                        ledger::mark_failed_unsent(
                            &self.inner.db,
                            row.id,
                            Reason::UnexpectedSettleError.as_str(),
                        )
                        .await?;
                        resolved += 1;
                    }
                    continue;
                };
                let landing = self.svm_landing(rt, signature, &blockhash).await;
                if self
                    .record_landing(row.id, landing, fee, &Transfer::of(&row))
                    .await?
                {
                    resolved += 1;
                }
            }
        }
        Ok(resolved)
    }

    /// An SVM row as `GET /settlements/{signature}` shows it: a sent transaction still
    /// `submitted` is looked up first, and the row read again once that resolved it.
    pub(super) async fn fresh_svm(
        &self,
        rt: &SvmRuntime,
        row: crate::facilitator::SettlementRow,
    ) -> ServiceResult<crate::facilitator::SettlementRow> {
        if Status::parse(&row.status) != Some(Status::Submitted) {
            return Ok(row);
        }
        let Some((signature, blockhash, fee)) = sent(&row) else {
            return Ok(row);
        };
        let landing = self.svm_landing(rt, signature, &blockhash).await;
        if !self
            .record_landing(row.id, landing, fee, &Transfer::of(&row))
            .await?
        {
            return Ok(row);
        }
        ledger::find_by_id(&self.inner.db, row.id)
            .await?
            .ok_or(crate::error::ServiceError::NotFound("settlement"))
    }
}

/// A sent SVM row's signature, its transaction's blockhash and the fee it was judged to cost
/// (`None`: nothing was sent, or its signed bytes do not decode).
fn sent(row: &crate::facilitator::SettlementRow) -> Option<(&str, String, u64)> {
    let (signature, raw) = (row.tx_hash.as_deref()?, row.raw_tx.as_deref()?);
    let fee = row
        .fee_wei
        .as_deref()
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    Some((signature, signed_blockhash(raw)?, fee))
}

/// What a transaction's status says: failed, landed (`confirmed` or deeper), or not yet.
fn landing_of(s: crate::svm::SignatureStatus) -> Landing {
    match s.err {
        Some(err) => Landing::FailedOnChain(s.slot, err),
        None if matches!(
            s.confirmation_status.as_deref(),
            Some("confirmed") | Some("finalized")
        ) =>
        {
            Landing::Landed(s.slot)
        }
        None => Landing::Unknown,
    }
}

/// The recent blockhash of a signed transaction as the ledger keeps it (base64).
fn signed_blockhash(raw: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let tx = x402::exact::svm::decode(&bytes).ok()?;
    Some(tx.message.recent_blockhash().to_string())
}
