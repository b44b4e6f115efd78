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
    BatchSettlementChannelNotFound => "invalid_batch_settlement_evm_channel_not_found", "no channel with a positive balance has this id";
    BatchSettlementTokenMismatch => "invalid_batch_settlement_evm_token_mismatch", "the channel's token is not the required asset";
    BatchSettlementVoucherSignature => "invalid_batch_settlement_evm_voucher_signature", "the voucher is not signed by the channel's payerAuthorizer (or, with none, the payer)";
    BatchSettlementCumulativeExceedsBalance => "invalid_batch_settlement_evm_cumulative_exceeds_balance", "the voucher's maxClaimableAmount exceeds the channel's balance";
    BatchSettlementCumulativeBelowClaimed => "invalid_batch_settlement_evm_cumulative_below_claimed", "the voucher's maxClaimableAmount is not above what is claimed or already accepted (a replay)";
    BatchSettlementInsufficientBalance => "invalid_batch_settlement_evm_insufficient_balance", "the payer's token balance is below the deposit";
    BatchSettlementDepositTransactionFailed => "invalid_batch_settlement_evm_deposit_transaction_failed", "the deposit reverted on chain";
    BatchSettlementDepositSimulationFailed => "invalid_batch_settlement_evm_deposit_simulation_failed", "the deposit would revert";
    BatchSettlementNetworkMismatch => "invalid_batch_settlement_evm_network_mismatch", "the payload's network is not the requirements'";
    BatchSettlementScheme => "invalid_batch_settlement_evm_scheme", "the scheme is not batch-settlement";
    BatchSettlementMissingEip712Domain => "invalid_batch_settlement_evm_missing_eip712_domain", "the requirements lack the token's EIP-712 name and version";
    BatchSettlementValidBefore => "invalid_batch_settlement_evm_payload_authorization_valid_before", "the deposit authorization expires too soon (or has expired)";
    BatchSettlementValidAfter => "invalid_batch_settlement_evm_payload_authorization_valid_after", "the deposit authorization is not valid yet";
    BatchSettlementReceiveAuthorizationSignature => "invalid_batch_settlement_evm_receive_authorization_signature", "the deposit's ERC-3009 signature is not the payer's";
    BatchSettlementErc3009AuthorizationRequired => "invalid_batch_settlement_evm_erc3009_authorization_required", "the deposit carries neither an erc3009Authorization nor a permit2Authorization";
    BatchSettlementPayloadType => "invalid_batch_settlement_evm_payload_type", "the payload type is not valid for this operation";
    BatchSettlementWithdrawDelayOutOfRange => "invalid_batch_settlement_evm_withdraw_delay_out_of_range", "the withdraw delay is outside 15 minutes to 30 days";
    BatchSettlementChannelIdMismatch => "invalid_batch_settlement_evm_channel_id_mismatch", "the channel config does not hash to the channel id";
    BatchSettlementReceiverMismatch => "invalid_batch_settlement_evm_receiver_mismatch", "the channel's receiver is not payTo";
    BatchSettlementReceiverAuthorizerMismatch => "invalid_batch_settlement_evm_receiver_authorizer_mismatch", "the channel's receiverAuthorizer is not extra.receiverAuthorizer (or that is missing or zero)";
    BatchSettlementWithdrawDelayMismatch => "invalid_batch_settlement_evm_withdraw_delay_mismatch", "the channel's withdraw delay is not extra.withdrawDelay";
    BatchSettlementRpcReadFailed => "invalid_batch_settlement_evm_rpc_read_failed", "the channel's on-chain state could not be read";
    BatchSettlementDepositBelowMinDeposit => "invalid_batch_settlement_evm_deposit_below_min_deposit", "the deposit moves nothing worth a settlement (0 or below the asset's minimum)";
    BatchSettlementPermit2AuthorizationRequired => "invalid_batch_settlement_evm_permit2_authorization_required", "the deposit carries no permit2Authorization";
    BatchSettlementPermit2InvalidSpender => "invalid_batch_settlement_evm_permit2_invalid_spender", "the Permit2 deposit's spender is not the Permit2 deposit collector";
    BatchSettlementPermit2AmountMismatch => "invalid_batch_settlement_evm_permit2_amount_mismatch", "the Permit2 deposit's permitted amount is not the deposit amount";
    BatchSettlementPermit2DeadlineExpired => "invalid_batch_settlement_evm_permit2_deadline_expired", "the Permit2 deposit's deadline has passed (or is too close)";
    BatchSettlementPermit2InvalidSignature => "invalid_batch_settlement_evm_permit2_invalid_signature", "the Permit2 deposit is not signed by the channel's payer";
    BatchSettlementPermit2AllowanceRequired => "invalid_batch_settlement_evm_permit2_allowance_required", "the payer has not approved Permit2 for the deposit (approve it, or add an eip2612GasSponsoring permit)";
    BatchSettlementEip2612AmountMismatch => "invalid_batch_settlement_evm_eip2612_amount_mismatch", "the EIP-2612 permit of Permit2 is not for the deposit amount";
    BatchSettlementClaimPayload => "invalid_batch_settlement_evm_claim_payload", "the claim payload is malformed (no rows, or a row's withdraw delay out of range)";
    BatchSettlementClaimSimulationFailed => "invalid_batch_settlement_evm_claim_simulation_failed", "the claim would revert";
    BatchSettlementAuthorizerNotConfigured => "invalid_batch_settlement_evm_authorizer_not_configured", "the claim carries no claimAuthorizerSignature and this facilitator signs for no receiverAuthorizer";
    BatchSettlementChannelBusy => "invalid_batch_settlement_evm_channel_busy", "another deposit into this channel is not mined yet: retry once it is";
    BatchSettlementNothingToSettle => "invalid_batch_settlement_evm_nothing_to_settle", "the receiver has nothing claimed and unsettled in this token";
    BatchSettlementSettleSimulationFailed => "invalid_batch_settlement_evm_settle_simulation_failed", "the settle would revert";
    BatchSettlementRefundPayload => "invalid_batch_settlement_evm_refund_payload", "the refund is not complete: amount, refundNonce and claims are the resource server's to add, and when this facilitator signs it the claims must cover every voucher it accepted";
    BatchSettlementRefundNoBalance => "invalid_batch_settlement_evm_refund_no_balance", "nothing to refund: the channel holds no unclaimed escrow";
    BatchSettlementRefundAmountInvalid => "invalid_batch_settlement_evm_refund_amount_invalid", "the refund amount is zero or more than the channel's unclaimed escrow";
    BatchSettlementRefundSimulationFailed => "invalid_batch_settlement_evm_refund_simulation_failed", "the refund would revert (a stale refund nonce, or a signature not the receiverAuthorizer's)";
    BatchSettlementAuthorizerAddressMismatch => "invalid_batch_settlement_evm_authorizer_address_mismatch", "the channel's receiverAuthorizer is not this facilitator's";
    Eip2612DeadlineExpired => "eip2612_deadline_expired", "the sponsored permit has expired (or expires too soon)";
    InvalidExactSvmPayloadMissingFeePayer => "invalid_exact_svm_payload_missing_fee_payer", "the requirements name no extra.feePayer";
    FeePayerNotManagedByFacilitator => "fee_payer_not_managed_by_facilitator", "the fee payer (extra.feePayer, the transaction's first account) is not one of this facilitator's";
    InvalidExactSvmPayloadTransactionCouldNotBeDecoded => "invalid_exact_svm_payload_transaction_could_not_be_decoded", "the transaction is not a well-formed legacy or v0 Solana transaction (or its address lookup tables cannot be resolved)";
    InvalidExactSvmPayloadTransactionInstructionsLength => "invalid_exact_svm_payload_transaction_instructions_length", "the transaction must hold 3 to 6 instructions";
    InvalidExactSvmPayloadComputeLimitInstruction => "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction", "the first instruction must be SetComputeUnitLimit";
    InvalidExactSvmPayloadComputeLimitTooHigh => "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high", "the compute unit limit is above this facilitator's cap";
    InvalidExactSvmPayloadComputePriceInstruction => "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction", "the second instruction must be SetComputeUnitPrice";
    InvalidExactSvmPayloadComputePriceTooHigh => "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high", "the compute unit price is above this facilitator's cap";
    InvalidExactSvmPayloadNoTransferInstruction => "invalid_exact_svm_payload_no_transfer_instruction", "the third instruction must be a TransferChecked of the Token or Token-2022 program";
    InvalidExactSvmPayloadFeePayerTransferringFunds => "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds", "the fee payer appears in an instruction's accounts (as the transfer's authority or otherwise)";
    InvalidExactSvmPayloadMintMismatch => "invalid_exact_svm_payload_mint_mismatch", "the transfer moves another token than the required asset";
    InvalidExactSvmPayloadRecipientMismatch => "invalid_exact_svm_payload_recipient_mismatch", "the transfer's destination is not payTo's associated token account for the asset";
    InvalidExactSvmPayloadAmountMismatch => "invalid_exact_svm_payload_amount_mismatch", "the transfer's amount is not the required amount, or the payment moves nothing worth a settlement (0, below the asset's minimum, or to the payer itself)";
    InvalidExactSvmPayloadUnknownFourthInstruction => "invalid_exact_svm_payload_unknown_fourth_instruction", "the fourth instruction is neither Memo nor Lighthouse";
    InvalidExactSvmPayloadUnknownFifthInstruction => "invalid_exact_svm_payload_unknown_fifth_instruction", "the fifth instruction is neither Memo nor Lighthouse";
    InvalidExactSvmPayloadUnknownSixthInstruction => "invalid_exact_svm_payload_unknown_sixth_instruction", "the sixth instruction is neither Memo nor Lighthouse";
    InvalidExactSvmPayloadMemoCount => "invalid_exact_svm_payload_memo_count", "extra.memo is given: the transaction must hold exactly one memo";
    InvalidExactSvmPayloadMemoMismatch => "invalid_exact_svm_payload_memo_mismatch", "the memo differs from extra.memo";
    InvalidExactSvmPayloadExcessiveSigners => "invalid_exact_svm_payload_excessive_signers", "only the buyer (the transfer's authority) and the fee payer may sign";
    InvalidExactSvmPayloadSignatureInvalid => "invalid_exact_svm_payload_signature_invalid", "the buyer's signature does not verify over the transaction message";
    InvalidExactSvmPayloadFeeTooHigh => "invalid_exact_svm_payload_fee_too_high", "the transaction's fee (signatures and priority fee, lamports) is above this network's max_lamports_per_settlement";
    TransactionSimulationFailed => "transaction_simulation_failed", "the transaction fails in simulation (with signature verification)";
    TransactionFailed => "transaction_failed", "the transaction failed on chain, or its blockhash expired before it landed";
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
