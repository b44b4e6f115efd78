//! The send path of a claimed, judged payment, chosen once per settle: sent directly by one of
//! our signers, joined to the network's batch, or queued for another instance's signer (the
//! fleet). Whichever it is, the claim is committed once something may be out, and released
//! (its credit given back) when nothing was sent.

use std::sync::Arc;

use alloy::primitives::{Address, Bytes};
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{ClaimedPayment, Facilitator, NetworkRuntime, Sent, SettleAnswer, Transfer};
use crate::error::{ServiceError, ServiceResult};
use crate::settlement::batch::{Approach, Batcher};
use crate::settlement::{Broadcast, BroadcastError};

/// How a settlement transaction leaves this instance.
pub(super) enum SendPath {
    /// Broadcast by `sender` (or the router's pick); `queueable`: when no signer is here after
    /// all, queue it for the fleet instead.
    Direct {
        sender: Option<Address>,
        queueable: bool,
    },
    /// In the network's next batch (the settle's guard as on its way to it).
    Batched(Batcher, Option<Approach>),
    /// Queued for an instance that holds a signer lease of the network.
    Fleet,
}

/// A claimed payment's call, ready to go.
pub(super) struct Outgoing<'a> {
    pub rt: &'a Arc<NetworkRuntime>,
    pub req: &'a PaymentRequest,
    pub to: Address,
    pub data: Bytes,
    pub gas_limit: u64,
    /// Simulated (not cleared by the state mirror).
    pub simulated: bool,
    pub client_id: Option<&'a str>,
}

impl Outgoing<'_> {
    pub(super) fn payer(&self) -> Option<Address> {
        Some(self.req.payload.authorization.from)
    }

    pub(super) fn failed(&self, reason: Reason) -> SettleAnswer {
        SettleAnswer::failed(reason, self.payer(), self.req.payload.authorization.value)
    }

    /// Why nothing can be sent here, for the caller.
    pub(super) fn no_signer(&self, facilitator: &Facilitator, why: String) -> ServiceError {
        let rt = self.rt;
        ServiceError::NoSigner(
            facilitator
                .cannot_send(rt)
                .unwrap_or_else(|| format!("network {}: {why}", rt.entry.info.v1_name)),
        )
    }
}

impl Facilitator {
    /// Send a claimed payment along `path` and answer with its outcome.
    pub(super) async fn send(
        &self,
        path: SendPath,
        out: &Outgoing<'_>,
        claim: ClaimedPayment,
    ) -> ServiceResult<SettleAnswer> {
        let (sender, queueable) = match path {
            SendPath::Fleet => return self.settle_through_the_fleet(out, claim).await,
            SendPath::Batched(batcher, approach) => {
                return self.settle_batched(out, &batcher, approach, claim).await
            }
            SendPath::Direct { sender, queueable } => (sender, queueable),
        };
        let rt = out.rt;
        let id = claim.row().id;
        let broadcast = rt
            .router
            .broadcast_from(
                sender,
                Broadcast::new(id, out.to, out.data.clone(), out.gas_limit),
            )
            .await;
        let sent = match broadcast {
            Ok(b) => Sent::Known(b, out.data.clone()),
            Err(BroadcastError::NoSigner(why)) if queueable => {
                tracing::debug!(%why, "no signer here after all; queueing for the fleet");
                return self.settle_through_the_fleet(out, claim).await;
            }
            Err(BroadcastError::NoSigner(why)) => {
                claim.abandon().await?;
                return Err(out.no_signer(self, why));
            }
            Err(BroadcastError::Unknown { tx_hash, error }) => {
                tracing::warn!(%tx_hash, %error, "broadcast outcome unknown; waiting for the chain");
                Sent::Unknown(tx_hash)
            }
            Err(BroadcastError::NotSent(error)) => {
                tracing::error!(network = rt.entry.info.v1_name, %error, "settlement not broadcast");
                claim.abandon().await?;
                return Ok(out.failed(Reason::UnexpectedSettleError));
            }
        };
        let auth = &out.req.payload.authorization;
        let transfer = Transfer {
            client_id: out.client_id.map(str::to_owned),
            network: claim.row().network.clone(),
            asset: claim.row().asset.clone(),
            amount: auth.value,
            payer: auth.from,
            nonce: auth.nonce,
            calls: Some(1),
        };
        claim.commit();
        self.await_outcome(rt, id, sent, out.to, transfer, out.payer())
            .await
    }
}
