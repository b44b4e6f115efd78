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
    InvalidExactEvmPayloadAuthorizationValue => "invalid_exact_evm_payload_authorization_value", "the authorized value does not match the required amount, or the payment moves nothing worth a settlement (0, below the asset's minimum, or to the payer itself)";
    InvalidNetwork => "invalid_network", "the network is unknown, not served here, or differs between payload and requirements";
    InvalidScheme => "invalid_scheme", "the scheme is not served (exact, and upto through Permit2)";
    InvalidX402Version => "invalid_x402_version", "unsupported x402Version";
    InvalidPayload => "invalid_payload", "the payment payload is invalid";
    InvalidPaymentRequirements => "invalid_payment_requirements", "the payment requirements are invalid or not accepted here";
    InvalidExactEvmNonceAlreadyUsed => "invalid_exact_evm_nonce_already_used", "this authorization has already been used";
    InvalidExactEvmTokenNameMismatch => "invalid_exact_evm_token_name_mismatch", "the EIP-712 name/version do not match the token";
    InvalidExactEvmPayloadUndeployedSmartWallet => "invalid_exact_evm_payload_undeployed_smart_wallet", "the payer has no code and the signature is a smart wallet's, without ERC-6492 deployment data";
    Eip6492FactoryNotAllowed => "eip6492_factory_not_allowed", "the payer is an undeployed smart wallet (ERC-6492) whose factory this network does not deploy from";
    SmartWalletDeploymentFailed => "smart_wallet_deployment_failed", "the ERC-6492 wallet deployment cannot be sent within this network's gas limit";
    SettlementGasExceedsLimit => "settlement_gas_exceeds_limit", "the settlement transaction would need more gas than this network allows (max_gas_per_settlement)";
    InvalidTransactionState => "invalid_transaction_state", "the transfer reverted on chain";
    UnexpectedVerifyError => "unexpected_verify_error", "verification failed unexpectedly";
    UnexpectedSettleError => "unexpected_settle_error", "settlement failed unexpectedly";
    DuplicateSettlement => "duplicate_settlement", "this payment was already settled";
    SettlementPending => "settlement_pending", "the transaction was broadcast and is not mined yet; query it by its hash";
    InvalidPermit2Spender => "invalid_permit2_spender", "the Permit2 spender is not the x402 proxy of the scheme";
    InvalidPermit2RecipientMismatch => "invalid_permit2_recipient_mismatch", "the Permit2 witness pays someone other than payTo";
    Permit2DeadlineExpired => "permit2_deadline_expired", "the Permit2 deadline has passed (or is too close)";
    Permit2NotYetValid => "permit2_not_yet_valid", "the Permit2 witness validAfter is in the future";
    Permit2AmountMismatch => "permit2_amount_mismatch", "the permitted amount is not the required amount";
    Permit2InvalidAmount => "permit2_invalid_amount", "the amount moves nothing worth a settlement (0, below the asset's minimum, or to the payer itself)";
    Permit2TokenMismatch => "permit2_token_mismatch", "the permitted token is not the required asset";
    InvalidPermit2Signature => "invalid_permit2_signature", "the Permit2 signature does not authorize this transfer for the payer";
    Permit2AllowanceRequired => "permit2_allowance_required", "the payer has not approved Permit2 for this amount (approve it, or sign an eip2612GasSponsoring permit)";
    Permit2InsufficientBalance => "permit2_insufficient_balance", "the payer's balance is below the amount";
    Permit2InvalidNonce => "permit2_invalid_nonce", "this Permit2 nonce has already been used";
    Permit2ProxyNotDeployed => "permit2_proxy_not_deployed", "the x402 Permit2 proxy is not deployed on this network";
    Permit2SimulationFailed => "permit2_simulation_failed", "the Permit2 settlement would revert";
    Permit2612AmountMismatch => "permit2_2612_amount_mismatch", "the sponsored EIP-2612 permit is not for the permitted amount";
    UptoFacilitatorMismatch => "upto_facilitator_mismatch", "the upto witness names another facilitator";
    UptoSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount", "the amount to settle is more than the buyer permitted";
    InvalidEip2612ExtensionFormat => "invalid_eip2612_extension_format", "the eip2612GasSponsoring extension is malformed";
    Eip2612FromMismatch => "eip2612_from_mismatch", "the sponsored permit is not the payer's";
    Eip2612AssetMismatch => "eip2612_asset_mismatch", "the sponsored permit is for another token";
    Eip2612SpenderNotPermit2 => "eip2612_spender_not_permit2", "the sponsored permit's spender is not Permit2";
    Eip2612DeadlineExpired => "eip2612_deadline_expired", "the sponsored permit has expired (or expires too soon)";
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
