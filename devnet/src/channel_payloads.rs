//! What a resource server sends a facilitator for a payment channel (`batch-settlement`, x402
//! v2): the requirements and each payload type's JSON (deposit, voucher, claim, sweep), built
//! from a [`Channel`] whose parties sign here with alloy. Shared by the API tests and the bench.

use alloy::primitives::Address;
use serde_json::{json, Value};

use crate::batch_settlement::Channel;
use crate::Devnet;

impl Channel {
    /// The payment requirements of a request priced `amount`, paid to the channel's receiver.
    pub fn requirements_json(&self, devnet: &Devnet, amount: u64) -> Value {
        json!({
            "scheme": "batch-settlement",
            "network": format!("eip155:{}", devnet.chain_id),
            "amount": amount.to_string(),
            "asset": devnet.usdc.to_checksum(None),
            "payTo": self.config.receiver.to_checksum(None),
            "maxTimeoutSeconds": 3600,
            "extra": {
                "receiverAuthorizer": self.config.receiverAuthorizer.to_checksum(None),
                "withdrawDelay": self.config.withdrawDelay.to::<u64>(),
                "name": "USDC",
                "version": "2",
            },
        })
    }

    /// `channelConfig` as the wire has it.
    pub fn config_json(&self) -> Value {
        let c = &self.config;
        json!({
            "payer": c.payer.to_checksum(None),
            "payerAuthorizer": c.payerAuthorizer.to_checksum(None),
            "receiver": c.receiver.to_checksum(None),
            "receiverAuthorizer": c.receiverAuthorizer.to_checksum(None),
            "token": c.token.to_checksum(None),
            "withdrawDelay": c.withdrawDelay.to::<u64>(),
            "salt": c.salt.to_string(),
        })
    }

    /// A voucher of ceiling `max`, signed by the payerAuthorizer.
    pub fn voucher_json(&self, devnet: &Devnet, max: u128) -> Value {
        json!({
            "channelId": self.id.to_string(),
            "maxClaimableAmount": max.to_string(),
            "signature": self.voucher_signature(devnet, max).to_string(),
        })
    }

    /// A `voucher` payload of ceiling `max`.
    pub fn voucher_payload(&self, devnet: &Devnet, max: u128) -> Value {
        json!({
            "type": "voucher",
            "channelConfig": self.config_json(),
            "voucher": self.voucher_json(devnet, max),
        })
    }

    /// A `deposit` payload of `amount` through the ERC-3009 collector, carrying a voucher of
    /// ceiling `max`.
    pub fn deposit_payload(&self, devnet: &Devnet, amount: u128, max: u128) -> Value {
        let auth = self.deposit_authorization(devnet, amount);
        json!({
            "type": "deposit",
            "channelConfig": self.config_json(),
            "voucher": self.voucher_json(devnet, max),
            "deposit": {
                "amount": amount.to_string(),
                "authorization": { "erc3009Authorization": auth },
            },
        })
    }

    /// One row of a claim: the voucher of ceiling `max`, claimed in full.
    pub fn claim_row_json(&self, devnet: &Devnet, max: u128) -> Value {
        json!({
            "voucher": { "channel": self.config_json(), "maxClaimableAmount": max.to_string() },
            "signature": self.voucher_signature(devnet, max).to_string(),
            "totalClaimed": max.to_string(),
        })
    }
}

/// A `claim` payload of each channel up to its ceiling, in one `claimWithSignature` signed by
/// the first channel's receiverAuthorizer (the channels must share it).
pub fn claim_payload(devnet: &Devnet, claims: &[(&Channel, u128)]) -> Value {
    let Some((first, _)) = claims.first() else {
        return json!({ "type": "claim", "claims": [] });
    };
    let rows = claims
        .iter()
        .map(|(ch, max)| ch.voucher(devnet, *max, *max))
        .collect();
    let call = first.claim_call(devnet, rows);
    json!({
        "type": "claim",
        "claims": claims.iter().map(|(ch, max)| ch.claim_row_json(devnet, *max)).collect::<Vec<_>>(),
        "claimAuthorizerSignature": call.authorizerSignature.to_string(),
    })
}

/// A `settle` payload: sweep what `receiver` has claimed in `token` to it.
pub fn sweep_payload(receiver: Address, token: Address) -> Value {
    json!({
        "type": "settle",
        "receiver": receiver.to_checksum(None),
        "token": token.to_checksum(None),
    })
}
