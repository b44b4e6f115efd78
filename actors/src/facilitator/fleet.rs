//! The facilitator as one of a fleet on one database (`crate::fleet`): it keeps its signer
//! leases (taking its share, renewing, giving extras back), keeps the signers' balances, sends
//! the settles other instances queue for the leases it holds, and adopts the unfinished ledger
//! rows of instances that died.
//!
//! A settle reaches whichever instance the load balancer picked. If that instance holds a
//! signer lease of the network, it sends the transaction itself; if not, it queues the claimed
//! row (`ledger::queue`) and follows it: a lease holder takes it (`ledger::take_queued`, `FOR
//! UPDATE SKIP LOCKED`), sends it under its lease, and the answer comes when the row resolves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;

use super::SettlementRow as Row;
use super::{
    claim, ClaimedPayment, Facilitator, NetworkRuntime, Outgoing, RowRef, Sent, SettleAnswer,
    Transfer,
};
use crate::error::{ServiceError, ServiceResult};
use crate::fleet::share;
use crate::ledger;
use crate::methods::eip3009::{self, smart_wallet::PaymentCall};
use crate::settlement::{Broadcast, BroadcastError};

/// How often a lease holder looks for queued settles while none come.
const DISPATCH_IDLE: Duration = Duration::from_millis(50);
/// How many queued settles one holder takes at a time.
const DISPATCH_BATCH: u64 = 64;

impl Facilitator {
    /// Why no settle of this network can be sent by anyone right now, if that is known here:
    /// no signer configured (and no fleet to ask), or no signer that can pay for gas.
    pub(super) fn cannot_send(&self, rt: &NetworkRuntime) -> Option<String> {
        let network = rt.entry.info.v1_name;
        if rt.router.is_empty() {
            return (!self.inner.config.fleet)
                .then(|| format!("no signer key is configured for network {network}"));
        }
        // Every signer's balance is read (leased here or not: they are on chain for all to
        // see), and none can pay.
        let states: Vec<_> = rt.router.states().collect();
        let all_read = states.iter().all(|(_, s)| s.balance_wei().is_some());
        if all_read && states.iter().all(|(_, s)| !s.is_funded()) {
            let addresses: Vec<String> = states.iter().map(|(a, _)| a.to_checksum(None)).collect();
            return Some(format!(
                "no signer of network {network} can pay for gas; fund one of {}",
                addresses.join(", ")
            ));
        }
        None
    }

    /// Hand a claimed, simulated settle to a lease holder of the network and answer when its
    /// row resolves. The queued row is the fleet's from here: whoever unqueues it unsent gives
    /// the credit back.
    pub(super) async fn settle_through_the_fleet(
        &self,
        out: &Outgoing<'_>,
        claim: ClaimedPayment,
    ) -> ServiceResult<SettleAnswer> {
        let db = &self.inner.db;
        let rt = out.rt;
        let id = claim.row().id;
        ledger::queue(db, id, out.to, &out.data).await?;
        let credit = claim.into_charge();
        let network = rt.entry.info.v1_name;
        let pickup = Instant::now() + self.inner.config.queue_pickup;
        loop {
            let now = ledger::find_by_id(db, id)
                .await?
                .ok_or_else(|| ServiceError::LedgerRowGone(format!("id {id}")))?;
            if now.queued_at.is_none() {
                break;
            }
            if Instant::now() >= pickup {
                if ledger::unqueue(db, id, x402::Reason::UnexpectedSettleError.as_str()).await? {
                    claim::refund(db, credit.as_ref()).await;
                    return Err(ServiceError::NoSigner(format!(
                        "network {network}: no instance holding a signer lease took the settlement"
                    )));
                }
                break; // taken just now
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let amount = out.req.payload.authorization.value;
        let answer = self
            .answer_from_row(
                rt,
                RowRef::Id(id),
                out.payer(),
                amount,
                true,
                Instant::now() + rt.receipt_timeout,
            )
            .await?;
        if !answer.success
            && answer.transaction.is_none()
            && answer.error_reason != Some(x402::Reason::SettlementPending)
        {
            claim::refund(db, credit.as_ref()).await;
        }
        Ok(answer)
    }

    /// Send a settle another instance queued, under one of our leases, and see it through.
    async fn send_queued(self, rt: Arc<NetworkRuntime>, row: Row) {
        let call = row
            .call_to
            .as_deref()
            .and_then(|a| a.parse::<Address>().ok())
            .zip(
                row.calldata
                    .as_deref()
                    .and_then(|c| c.parse::<Bytes>().ok()),
            );
        let Some((to, calldata)) = call else {
            tracing::error!(id = row.id, "queued settlement without its call");
            let _ = self.release_unsent(row.id).await;
            return;
        };
        let Some(sender) = rt.router.next_sender() else {
            // Our lease went meanwhile: back in the queue for whoever holds one now.
            let _ = ledger::queue(&self.inner.db, row.id, to, &calldata).await;
            return;
        };
        // Estimated again here, as the signer that sends it and with the fees it is signed
        // with: the queuing instance simulated it as one of its own signers, a while ago.
        let gas_limit = match self.estimate_queued(&rt, sender, to, &calldata).await {
            Ok(Ok(limit)) => limit,
            Ok(Err(reason)) => {
                tracing::info!(id = row.id, %reason, "queued settlement refused before sending");
                let _ = ledger::mark_failed_unsent(&self.inner.db, row.id, reason.as_str()).await;
                return;
            }
            Err(e) => {
                tracing::warn!(id = row.id, error = %e, "queued settlement not estimated");
                let _ = self.release_unsent(row.id).await;
                return;
            }
        };
        let sent = rt
            .router
            .broadcast_from(
                Some(sender),
                Broadcast::new(row.id, to, calldata.clone(), gas_limit),
            )
            .await;
        let sent = match sent {
            Ok(b) => Sent::Known(b, calldata),
            Err(BroadcastError::Unknown { tx_hash, .. }) => Sent::Unknown(tx_hash),
            Err(BroadcastError::NoSigner(_)) => {
                // Our lease went meanwhile: back in the queue for whoever holds one now.
                let _ = ledger::queue(&self.inner.db, row.id, to, &calldata).await;
                return;
            }
            Err(BroadcastError::NotSent(error)) => {
                tracing::error!(id = row.id, %error, "queued settlement not broadcast");
                let _ = self.release_unsent(row.id).await;
                return;
            }
        };
        // One payment, one plain transaction.
        let transfer = Transfer {
            calls: Some(1),
            ..Transfer::of(&row)
        };
        let payer = row.payer.parse().ok();
        // The receiving instance answers its client; this resolves the row (and replaces the
        // transaction if it stays unmined), then keeps watching if it must.
        if let Err(e) = self
            .await_outcome(&rt, row.id, sent, to, transfer, payer)
            .await
        {
            tracing::warn!(id = row.id, error = %e, "queued settlement not followed to its end");
        }
    }

    /// The gas limit of a queued call sent by `sender` (its estimate plus the margin), or why
    /// it is refused: it would revert now, or it needs more than `max_gas_per_settlement`.
    async fn estimate_queued(
        &self,
        rt: &NetworkRuntime,
        sender: Address,
        to: Address,
        calldata: &Bytes,
    ) -> ServiceResult<Result<u64, x402::Reason>> {
        let call = PaymentCall::direct(to, calldata.clone());
        let (_, estimate) = eip3009::smart_wallet::estimate_as_sent(rt, sender, &call).await?;
        Ok(match estimate {
            Ok(gas) => rt
                .fees
                .gas_limit_for(gas)
                .ok_or_else(|| eip3009::over_cap(rt, &call, gas)),
            Err(_) => Err(x402::Reason::InvalidTransactionState),
        })
    }

    /// Take and send what other instances queued for this network, while we hold a lease.
    async fn dispatch(self, rt: Arc<NetworkRuntime>) {
        let network = rt.entry.info.v1_name;
        loop {
            if !rt.router.has_available() {
                tokio::time::sleep(DISPATCH_IDLE).await;
                continue;
            }
            match ledger::take_queued(
                &self.inner.db,
                network,
                self.inner.fleet.id(),
                DISPATCH_BATCH,
            )
            .await
            {
                Ok(rows) if rows.is_empty() => tokio::time::sleep(DISPATCH_IDLE).await,
                Ok(rows) => {
                    for row in rows {
                        tokio::spawn(self.clone().send_queued(rt.clone(), row));
                    }
                }
                Err(e) => {
                    tracing::warn!(network, error = %e, "queued settlements not read");
                    tokio::time::sleep(DISPATCH_IDLE * 10).await;
                }
            }
        }
    }

    /// Read every signer's balance and whether it covers a settlement's worst-case fee.
    async fn read_funds(&self, rt: &NetworkRuntime) {
        let network = rt.entry.info.v1_name;
        let fee = match rt.provider.estimate_eip1559_fees().await {
            Ok(f) => f.max_fee_per_gas.min(rt.fees.max_fee_per_gas_cap),
            Err(e) => {
                tracing::debug!(network, error = %e, "fee estimate for the funds check failed");
                return;
            }
        };
        let need = U256::from(rt.fees.max_gas_per_settlement) * U256::from(fee);
        for (address, state) in rt.router.states() {
            match rt.provider.get_balance(address).await {
                Ok(balance) => {
                    let was_funded = state.is_funded() && state.balance_wei().is_some();
                    state.set_balance(balance, need);
                    if balance < rt.min_signer_balance {
                        tracing::warn!(
                            network,
                            signer = %address,
                            balance_wei = %balance,
                            floor_wei = %rt.min_signer_balance,
                            "signer balance below the floor: fund it"
                        );
                    }
                    if was_funded && !state.is_funded() {
                        tracing::warn!(network, signer = %address, "signer cannot pay for gas any more: it gets no new settlements");
                    }
                }
                Err(e) => {
                    tracing::debug!(network, signer = %address, error = %e, "balance read failed")
                }
            }
        }
    }

    /// One round of lease keeping: heartbeat, then per network renew what we hold, give back
    /// what exceeds our share, and take free or expired leases up to it; then adopt the rows
    /// of dead instances.
    pub async fn keep_leases_once(&self) -> ServiceResult<()> {
        let fleet = &self.inner.fleet;
        fleet.heartbeat().await?;
        let live = fleet.live_instances().await?;
        for rt in self.inner.networks.values() {
            let network = rt.entry.info.v1_name;
            let states: Vec<_> = rt.router.states().map(|(a, s)| (a, s.clone())).collect();
            let mine = share(states.len(), live.len());
            // Renew.
            for (address, state) in &states {
                let epoch = state.epoch();
                if epoch != 0 && !fleet.renew(network, *address, epoch).await? {
                    tracing::warn!(network, signer = %address, "signer lease lost");
                    state.set_epoch(0);
                }
            }
            // Give back what exceeds our share: stop new work first, release once idle.
            let mut held: Vec<_> = states.iter().filter(|(_, s)| s.epoch() != 0).collect();
            while held.len() > mine {
                let (address, state) = held.pop().expect("non-empty");
                state.set_draining(true);
                if state.idle() {
                    fleet.release(network, *address, state.epoch()).await?;
                    state.set_epoch(0);
                    tracing::info!(network, signer = %address, "signer lease given back");
                }
            }
            for (_, state) in &held {
                state.set_draining(false);
            }
            // Take up to our share, starting at a place of our own so that instances do not
            // all race for the same key.
            let mut count = held.len();
            let offset = fleet
                .id()
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            for i in 0..states.len() {
                if count >= mine {
                    break;
                }
                let (address, state) = &states[(offset + i) % states.len()];
                if state.epoch() != 0 {
                    continue;
                }
                if let Some(epoch) = fleet.acquire(network, *address).await? {
                    state.set_epoch(epoch);
                    count += 1;
                    tracing::info!(network, signer = %address, epoch, "signer lease taken");
                    self.take_over(rt, *address).await;
                }
            }
            self.adopt_orphans(rt, &live).await?;
        }
        fleet.forget_dead().await?;
        Ok(())
    }

    /// A lease just taken: the previous holder's transactions in flight are watched now (and
    /// re-sent as they are if the node no longer knows them), not at the next sweep.
    async fn take_over(&self, rt: &Arc<NetworkRuntime>, signer: Address) {
        let rows = match ledger::in_flight_of(&self.inner.db, rt.entry.info.v1_name, signer).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "in-flight rows of a taken-over signer not read");
                return;
            }
        };
        for row in rows {
            self.follow_sent(rt, &row).await;
        }
    }

    /// A submitted row someone else sent: resolve it from the chain, re-broadcast its very
    /// bytes if the node lost them, and watch it.
    async fn follow_sent(&self, rt: &Arc<NetworkRuntime>, row: &Row) {
        let Some(hash) = row.tx_hash.as_deref().and_then(|h| h.parse().ok()) else {
            return;
        };
        match rt.provider.get_transaction_receipt(hash).await {
            Ok(Some(receipt)) => {
                let (mined, transfer) =
                    self.mined_of(rt, row.id, &receipt, Transfer::of(row)).await;
                if let Err(e) = self.resolve_mined(row.id, hash, &mined, transfer).await {
                    tracing::warn!(id = row.id, error = %e, "mined settlement not recorded");
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(id = row.id, error = %e, "receipt lookup failed");
                return;
            }
        }
        let known = matches!(rt.provider.get_transaction_by_hash(hash).await, Ok(Some(_)));
        if !known {
            let raw = match ledger::raw_tx_of(&self.inner.db, row).await {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::debug!(id = row.id, error = %e, "signed transaction not read");
                    None
                }
            };
            if let Some(raw) = raw {
                match rt.provider.send_raw_transaction(&raw).await {
                    Ok(_) => {
                        tracing::info!(id = row.id, %hash, "re-sent a transaction the node had lost")
                    }
                    Err(e) => tracing::debug!(id = row.id, %hash, error = %e, "re-send refused"),
                }
            }
        }
        self.watch_in_background(rt, row.id, vec![hash], Transfer::of(row));
    }

    /// Rows left unfinished by instances that are gone: nothing sent means the claim is
    /// released (a retry may settle it); something sent is followed to its end.
    async fn adopt_orphans(&self, rt: &Arc<NetworkRuntime>, live: &[String]) -> ServiceResult<()> {
        let db = &self.inner.db;
        let me = self.inner.fleet.id();
        for row in ledger::orphans(db, rt.entry.info.v1_name, live).await? {
            let from = row.instance_id.clone().unwrap_or_default();
            if !ledger::adopt(db, row.id, &from, me).await? {
                continue; // another instance adopted it
            }
            if row.tx_hash.is_none() {
                if row.queued_at.is_none() {
                    self.release_unsent(row.id).await?;
                    tracing::info!(id = row.id, instance = %from, "released the claim of a dead instance");
                }
                // A queued row stays queued: a holder sends it, its receiver waits.
                continue;
            }
            self.follow_sent(rt, &row).await;
        }
        Ok(())
    }

    /// Start the fleet's background work: lease keeping, balance reads, and (with other
    /// instances on the database) sending their queued settles.
    pub fn start_fleet_work(&self) {
        let every = (self.inner.fleet.ttl() / 3).max(Duration::from_millis(200));
        let keeper = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = keeper.keep_leases_once().await {
                    tracing::warn!(error = %e, "lease keeping failed this round");
                }
            }
        });
        let funds = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(funds.inner.config.funds_poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for rt in funds.inner.networks.values() {
                    funds.read_funds(rt).await;
                }
            }
        });
        self.start_finality_watch(Duration::from_secs(1));
        if self.inner.config.fleet {
            for rt in self.inner.networks.values() {
                if !rt.router.is_empty() {
                    tokio::spawn(self.clone().dispatch(rt.clone()));
                }
            }
        }
    }

    /// A clean stop: leases given back at once, so the others take over without waiting.
    pub async fn leave_fleet(&self) {
        if let Err(e) = self.inner.fleet.leave().await {
            tracing::warn!(error = %e, "leases not given back on stop");
        }
    }
}
