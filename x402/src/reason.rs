//! The reason strings of the x402 spec and its reference facilitators: every protocol-level
//! "no" this crate (or the facilitator around it) gives has exactly one of these.

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($variant:ident => $s:literal, $msg:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Reason {
            $(#[serde(rename = $s)] $variant,)*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $s,)* }
            }

            /// A short human explanation (v2 `invalidMessage` / `errorMessage`).
            pub fn message(self) -> &'static str {
                match self { $(Reason::$variant => $msg,)* }
            }

            pub fn parse(s: &str) -> Option<Reason> {
                match s { $($s => Some(Reason::$variant),)* _ => None }
            }
        }
    };
}

reasons! {
    InsufficientFunds => "insufficient_funds", "the payer's balance is below the authorized value";
    InvalidExactEvmPayloadSignature => "invalid_exact_evm_payload_signature", "the signature does not authorize this transfer for the payer";
    InvalidExactEvmPayloadRecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch", "the authorization pays someone other than payTo";
    InvalidExactEvmPayloadAuthorizationValidBefore => "invalid_exact_evm_payload_authorization_valid_before", "the authorization expires too soon (or has expired)";
    InvalidExactEvmPayloadAuthorizationValidAfter => "invalid_exact_evm_payload_authorization_valid_after", "the authorization is not valid yet";
    InvalidExactEvmPayloadAuthorizationValue => "invalid_exact_evm_payload_authorization_value", "the authorized value does not match the required amount";
    InvalidNetwork => "invalid_network", "the network is unknown, not served here, or differs between payload and requirements";
    InvalidScheme => "invalid_scheme", "only the exact scheme is supported";
    InvalidX402Version => "invalid_x402_version", "unsupported x402Version";
    InvalidPayload => "invalid_payload", "the payment payload is invalid";
    InvalidPaymentRequirements => "invalid_payment_requirements", "the payment requirements are invalid or not accepted here";
    InvalidExactEvmNonceAlreadyUsed => "invalid_exact_evm_nonce_already_used", "this authorization has already been used";
    InvalidExactEvmTokenNameMismatch => "invalid_exact_evm_token_name_mismatch", "the EIP-712 name/version do not match the token";
    InvalidExactEvmPayloadUndeployedSmartWallet => "invalid_exact_evm_payload_undeployed_smart_wallet", "the payer has no code and the signature is a smart wallet's, without ERC-6492 deployment data";
    Eip6492FactoryNotAllowed => "eip6492_factory_not_allowed", "the payer is an undeployed smart wallet (ERC-6492) whose factory this network does not deploy from";
    SmartWalletDeploymentFailed => "smart_wallet_deployment_failed", "the ERC-6492 wallet deployment cannot be sent within this network's gas limit";
    InvalidTransactionState => "invalid_transaction_state", "the transfer reverted on chain";
    UnexpectedVerifyError => "unexpected_verify_error", "verification failed unexpectedly";
    UnexpectedSettleError => "unexpected_settle_error", "settlement failed unexpectedly";
    DuplicateSettlement => "duplicate_settlement", "this payment was already settled";
    SettlementPending => "settlement_pending", "the transaction was broadcast and is not mined yet; query it by its hash";
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(
                serde_json::to_string(r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Reason::parse("nope"), None);
    }
}
