//! Deposits: a deposit payload's call through its collector (ERC-3009 or Permit2), judged
//! against the channel's state and simulated by the sender; and the channel's return to the
//! voucher before a deposit that did not land.

use alloy::primitives::{Address, Bytes, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use x402::batch_settlement::checks::{self, CheckedVoucher};
use x402::batch_settlement::{IX402BatchSettlement, BATCH_SETTLEMENT};
use x402::Reason;

use super::store::{self, Channel};
use super::{unavailable, BatchSettlement};
use crate::error::ServiceResult;
use crate::facilitator::NetworkRuntime;
use crate::methods::{MethodContext, Phase, SettleCall};

impl BatchSettlement {
    /// A deposit's call: `deposit(config, amount, collector, collectorData)` through the
    /// ERC-3009 or the Permit2 collector, judged against the channel's state and simulated by
    /// the sender.
    pub(super) async fn judge_deposit(
        &self,
        ctx: &MethodContext<'_>,
        v: &CheckedVoucher,
        from: Address,
        phase: Phase,
    ) -> ServiceResult<Result<SettleCall, Reason>> {
        let Some(rt) = ctx.runtime else {
            return Ok(Err(Reason::InvalidNetwork));
        };
        let (c, verdict) = self.judge_state(ctx, rt, v).await?;
        // This very deposit's voucher, accepted when its row was claimed before (the row is
        // claimed again: nothing was sent), is judged against the voucher accepted before it.
        let own = c.deposit_row.is_some()
            && c.accepted == v.max_claimable
            && c.accepted_signature.as_deref() == Some(v.signature.to_string().as_str());
        let verdict = if own {
            let floor = c.prior_accepted.unwrap_or(0);
            checks::check_against_state(v, c.chain.balance, c.chain.total_claimed, floor)
        } else {
            verdict
        };
        if let Err(reason) = verdict {
            return Ok(Err(reason));
        }
        self.deposit_call(rt, v, from, phase).await
    }

    /// The deposit's call as `from` would send it: the payer's token balance (and, for a
    /// Permit2 deposit with no EIP-2612 permit, its allowance to Permit2) and the sender's
    /// `eth_estimateGas` in one round trip.
    pub(super) async fn deposit_call(
        &self,
        rt: &NetworkRuntime,
        v: &CheckedVoucher,
        from: Address,
        phase: Phase,
    ) -> ServiceResult<Result<SettleCall, Reason>> {
        let Some(d) = &v.deposit else {
            return Ok(Err(Reason::BatchSettlementPayloadType));
        };
        let data: Bytes = IX402BatchSettlement::depositCall {
            config: v.config.clone(),
            amount: d.amount,
            collector: d.collector,
            collectorData: d.collector_data.clone(),
        }
        .abi_encode()
        .into();
        let tx = TransactionRequest::default()
            .from(from)
            .to(BATCH_SETTLEMENT)
            .input(TransactionInput::new(data.clone()));
        let mut batch = alloy::rpc::client::BatchRequest::new(rt.provider.client());
        let estimate = batch
            .add_call::<_, U64>("eth_estimateGas", &(tx, "latest"))
            .map_err(unavailable)?;
        let balance = batch
            .add_call::<_, Bytes>(
                "eth_call",
                &(
                    TransactionRequest::default()
                        .to(v.config.token)
                        .input(TransactionInput::new(
                            x402::exact::evm::IEIP3009::balanceOfCall {
                                account: v.config.payer,
                            }
                            .abi_encode()
                            .into(),
                        )),
                    "latest",
                ),
            )
            .map_err(unavailable)?;
        // A Permit2 deposit with no EIP-2612 permit: the payer's allowance to Permit2.
        let allowance = if d.needs_permit2_allowance {
            let call = x402::permit2::abi::IERC20::allowanceCall {
                owner: v.config.payer,
                spender: x402::permit2::PERMIT2,
            };
            let tx = TransactionRequest::default()
                .to(v.config.token)
                .input(TransactionInput::new(call.abi_encode().into()));
            Some(
                batch
                    .add_call::<_, Bytes>("eth_call", &(tx, "latest"))
                    .map_err(unavailable)?,
            )
        } else {
            None
        };
        batch.send().await.map_err(unavailable)?;
        if let Some(allowance) = allowance {
            let allowance =
                U256::try_from_be_slice(&allowance.await.map_err(unavailable)?).unwrap_or_default();
            if allowance < U256::from(d.amount) {
                return Ok(Err(Reason::BatchSettlementPermit2AllowanceRequired));
            }
        }
        let balance =
            U256::try_from_be_slice(&balance.await.map_err(unavailable)?).unwrap_or_default();
        if balance < U256::from(d.amount) {
            return Ok(Err(Reason::BatchSettlementInsufficientBalance));
        }
        let gas = match estimate.await {
            Ok(gas) => gas.to::<u64>(),
            Err(_) => return Ok(Err(Reason::BatchSettlementDepositSimulationFailed)),
        };
        let gas_limit = match phase {
            Phase::Verify => None,
            Phase::Settle => match rt.fees.gas_limit_for(gas) {
                Some(limit) => Some(limit),
                None => return Ok(Err(Reason::SettlementGasExceedsLimit)),
            },
        };
        Ok(Ok(SettleCall {
            to: BATCH_SETTLEMENT,
            data,
            gas_limit,
        }))
    }
}

/// The deposit whose voucher is the channel's accepted one, once its ledger row is resolved:
/// mined (the voucher stays), or failed or forgotten (the channel returns to the voucher before
/// it). `true`: resolved now.
pub(super) async fn resolve_deposit(ctx: &MethodContext<'_>, c: &Channel) -> ServiceResult<bool> {
    let Some(row) = c.deposit_row else {
        return Ok(false);
    };
    let status = crate::ledger::find_by_id(ctx.db, row)
        .await?
        .map(|r| crate::ledger::Status::parse(&r.status));
    let mined = match status {
        // Refused before anything was sent, and forgotten.
        None => false,
        Some(Some(s)) if s.is_success() => true,
        Some(Some(crate::ledger::Status::Failed)) => false,
        // Claimed or sent, not mined yet.
        Some(_) => return Ok(false),
    };
    store::resolve_deposit(ctx.db, c.id, row, mined, ctx.now()).await?;
    Ok(true)
}
