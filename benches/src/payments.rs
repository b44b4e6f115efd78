//! The payments a run sends: EIP-3009 `transferWithAuthorization` signed by the buyers as a
//! wallet does (EIP-712 typed data over the token's domain), wrapped in x402 v1 or v2 facilitator
//! request bodies. All of them are signed before the clock starts.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{eip712_domain, SolStruct};
use serde_json::{json, Value};
// EIP-3009's typed message, from the protocol crate (usable by clients, no I/O).
use x402::exact::evm::TransferWithAuthorization;

use super::engine::PaymentId;

/// Where the money goes and in what: fixed for a run.
#[derive(Debug, Clone)]
pub struct Terms {
    pub chain_id: u64,
    pub v1_network: Option<String>,
    pub caip2: String,
    pub asset: Address,
    pub asset_name: String,
    pub asset_version: String,
    pub pay_to: Address,
    pub amount: U256,
    pub x402_version: u8,
    pub valid_after: u64,
    pub valid_before: u64,
}

/// One signed payment and the body that carries it.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: PaymentId,
    pub body: Value,
}

impl Terms {
    fn sign(&self, signer: &PrivateKeySigner, nonce: B256) -> anyhow::Result<String> {
        let domain = eip712_domain! {
            name: self.asset_name.clone(),
            version: self.asset_version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.asset,
        };
        let message = TransferWithAuthorization {
            from: signer.address(),
            to: self.pay_to,
            value: self.amount,
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce,
        };
        let signature = signer.sign_hash_sync(&message.eip712_signing_hash(&domain))?;
        Ok(format!("0x{}", alloy::hex::encode(signature.as_bytes())))
    }

    fn body(&self, from: Address, nonce: B256, signature: String) -> anyhow::Result<Value> {
        let payload = json!({
            "signature": signature,
            "authorization": {
                "from": from.to_checksum(None),
                "to": self.pay_to.to_checksum(None),
                "value": self.amount.to_string(),
                "validAfter": self.valid_after.to_string(),
                "validBefore": self.valid_before.to_string(),
                "nonce": nonce.to_string(),
            }
        });
        let extra = json!({ "name": self.asset_name, "version": self.asset_version });
        Ok(match self.x402_version {
            1 => {
                let network = self.v1_network.as_deref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "network {} has no x402 v1 name: use --x402-version 2",
                        self.caip2
                    )
                })?;
                json!({
                    "x402Version": 1,
                    "paymentPayload": {
                        "x402Version": 1,
                        "scheme": "exact",
                        "network": network,
                        "payload": payload,
                    },
                    "paymentRequirements": {
                        "scheme": "exact",
                        "network": network,
                        "maxAmountRequired": self.amount.to_string(),
                        "resource": "http://127.0.0.1/bench",
                        "description": "x402-bench",
                        "mimeType": "application/json",
                        "payTo": self.pay_to.to_checksum(None),
                        "maxTimeoutSeconds": 60,
                        "asset": self.asset.to_checksum(None),
                        "extra": extra,
                    }
                })
            }
            _ => {
                let requirements = json!({
                    "scheme": "exact",
                    "network": self.caip2,
                    "amount": self.amount.to_string(),
                    "asset": self.asset.to_checksum(None),
                    "payTo": self.pay_to.to_checksum(None),
                    "maxTimeoutSeconds": 60,
                    "extra": extra,
                });
                v2_body(requirements, payload)
            }
        })
    }

    /// `count` payments with fresh random nonces, spread round robin over `payers`.
    pub fn sign_all(
        &self,
        payers: &[PrivateKeySigner],
        count: usize,
    ) -> anyhow::Result<Vec<Payment>> {
        (0..count)
            .map(|i| {
                let signer = &payers[i % payers.len()];
                let nonce = B256::from(rand::random::<[u8; 32]>());
                let signature = self.sign(signer, nonce)?;
                Ok(Payment {
                    id: PaymentId::Evm {
                        payer: signer.address(),
                        nonce,
                    },
                    body: self.body(signer.address(), nonce, signature)?,
                })
            })
            .collect()
    }
}

/// An x402 v2 `/verify` and `/settle` body: `payload` accepting `requirements`, as a resource
/// server sends it.
pub fn v2_body(requirements: Value, payload: Value) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": { "url": "http://127.0.0.1/bench", "description": "x402-bench", "mimeType": "application/json" },
            "accepted": requirements,
            "payload": payload,
        },
        "paymentRequirements": requirements,
    })
}
