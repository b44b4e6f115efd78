//! Permit2 deposits into a payment channel (`batch-settlement`): the payer's
//! `PermitWitnessTransferFrom` to the Permit2 deposit collector with the channel as witness,
//! its one-time `approve(Permit2)` of the devnet's USDC, and an EIP-2612 permit of Permit2 (the
//! `eip2612GasSponsoring` extension), all signed here with alloy.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolStruct;
use serde_json::{json, Value};
use x402::batch_settlement::permit2_deposit_digest;
use x402::batch_settlement::wire::{DepositWitness, Permit2Deposit};
use x402::permit2::TokenPermissions;

use crate::batch_settlement::{random_b256, sign, Channel, PERMIT2, PERMIT2_DEPOSIT_COLLECTOR};
use crate::{Devnet, DevnetError};

alloy::sol! {
    interface IApprove {
        function approve(address spender, uint256 amount) returns (bool);
        function allowance(address owner, address spender) view returns (uint256);
        function nonces(address owner) view returns (uint256);
    }

    /// EIP-2612's typed data (FiatTokenV2_2's `permit`).
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

impl Channel {
    /// The payer's Permit2 authorization of a deposit of `amount` (a fresh random nonce, the
    /// given `deadline`), signed by the payer (a contract payer: its wallet, ERC-1271) for the
    /// permit as given: `edit` may change it first (a bad payment).
    pub fn permit2_deposit_with(
        &self,
        devnet: &Devnet,
        amount: u128,
        deadline: u64,
        edit: impl FnOnce(&mut Permit2Deposit),
    ) -> Permit2Deposit {
        let mut p = self.permit2_deposit_signed_by(devnet, &self.payer, amount, deadline, edit);
        let digest = permit2_deposit_digest(&p, devnet.chain_id);
        p.signature = self.payer_signature(devnet, &self.payer, digest);
        p
    }

    /// As [`Channel::permit2_deposit_with`], signed by `key` with bare ECDSA (the payer's key,
    /// or a stranger's).
    pub fn permit2_deposit_signed_by(
        &self,
        devnet: &Devnet,
        key: &PrivateKeySigner,
        amount: u128,
        deadline: u64,
        edit: impl FnOnce(&mut Permit2Deposit),
    ) -> Permit2Deposit {
        let mut p = Permit2Deposit {
            from: self.config.payer,
            permitted: TokenPermissions {
                token: self.config.token,
                amount: U256::from(amount),
            },
            spender: PERMIT2_DEPOSIT_COLLECTOR,
            nonce: U256::from_be_bytes(random_b256().0),
            deadline: U256::from(deadline),
            witness: DepositWitness {
                channel_id: self.id,
            },
            signature: Bytes::new(),
        };
        edit(&mut p);
        p.signature = sign(key, permit2_deposit_digest(&p, devnet.chain_id));
        p
    }

    /// A `deposit` payload of `amount` through the Permit2 collector carrying a voucher of
    /// ceiling `max`, as the official client builds it.
    pub fn permit2_deposit_payload(&self, devnet: &Devnet, p: &Permit2Deposit, max: u128) -> Value {
        json!({
            "type": "deposit",
            "channelConfig": self.config_json(),
            "voucher": self.voucher_json(devnet, max),
            "deposit": {
                "amount": p.permitted.amount.to_string(),
                "authorization": { "permit2Authorization": p },
            },
        })
    }

    /// The payer's `approve(Permit2, amount)` of the devnet's USDC, sent by the payer.
    pub async fn approve_permit2(&self, devnet: &Devnet, amount: U256) -> Result<(), DevnetError> {
        devnet.approve_permit2(&self.payer, amount).await
    }

    /// The payer's allowance of the devnet's USDC to Permit2.
    pub async fn permit2_allowance(&self, devnet: &Devnet) -> Result<U256, DevnetError> {
        devnet.permit2_allowance(self.config.payer).await
    }

    /// The `eip2612GasSponsoring` extension: the payer's EIP-2612 permit of `value` of the
    /// devnet's USDC to Permit2 (domain "USDC", version "2"), at its current permit nonce.
    pub async fn eip2612_extension(
        &self,
        devnet: &Devnet,
        value: u128,
        deadline: u64,
    ) -> Result<Value, DevnetError> {
        let owner = self.config.payer;
        let nonce = devnet
            .read(devnet.usdc, IApprove::noncesCall { owner })
            .await?;
        let permit = Permit {
            owner,
            spender: PERMIT2,
            value: U256::from(value),
            nonce,
            deadline: U256::from(deadline),
        };
        let domain = x402::exact::evm::domain("USDC", "2", devnet.chain_id, devnet.usdc);
        let signature = sign(&self.payer, permit.eip712_signing_hash(&domain));
        Ok(json!({ "eip2612GasSponsoring": { "info": {
            "from": owner.to_checksum(None),
            "asset": devnet.usdc.to_checksum(None),
            "spender": PERMIT2.to_checksum(None),
            "amount": value.to_string(),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "signature": signature.to_string(),
            "version": "1",
        }}}))
    }
}

impl Devnet {
    /// `owner`'s `approve(Permit2, amount)` of the devnet's USDC, sent by `owner`.
    pub async fn approve_permit2(
        &self,
        owner: &PrivateKeySigner,
        amount: U256,
    ) -> Result<(), DevnetError> {
        let call = IApprove::approveCall {
            spender: PERMIT2,
            amount,
        };
        self.send_as(owner, self.usdc, call).await?;
        Ok(())
    }

    /// `owner`'s allowance of the devnet's USDC to Permit2.
    pub async fn permit2_allowance(&self, owner: Address) -> Result<U256, DevnetError> {
        let call = IApprove::allowanceCall {
            owner,
            spender: PERMIT2,
        };
        self.read(self.usdc, call).await
    }
}

impl Devnet {
    /// `owner`, a contract (a Safe), approves Permit2 for `amount` of the devnet's USDC: sent
    /// as the contract by anvil's impersonation, standing in for the wallet's own transaction.
    pub async fn approve_permit2_as_contract(
        &self,
        owner: Address,
        amount: U256,
    ) -> Result<(), DevnetError> {
        use alloy::network::TransactionBuilder;
        use alloy::providers::{Provider, ProviderBuilder};
        use alloy::rpc::types::TransactionRequest;
        use alloy::sol_types::SolCall;
        // No wallet: the node signs for the impersonated account (`eth_sendTransaction`).
        let p = ProviderBuilder::new().connect_http(self.rpc_url.parse().map_err(crate::rpc)?);
        self.set_eth_balance(owner, U256::from(10u128.pow(20)))
            .await?;
        p.raw_request::<_, ()>("anvil_impersonateAccount".into(), (owner,))
            .await
            .map_err(crate::rpc)?;
        let call = IApprove::approveCall {
            spender: PERMIT2,
            amount,
        };
        let tx = TransactionRequest::default()
            .with_from(owner)
            .with_to(self.usdc)
            .with_input(call.abi_encode());
        let receipt = p
            .send_transaction(tx)
            .await
            .map_err(crate::rpc)?
            .get_receipt()
            .await
            .map_err(crate::rpc);
        p.raw_request::<_, ()>("anvil_stopImpersonatingAccount".into(), (owner,))
            .await
            .map_err(crate::rpc)?;
        crate::ensure_success(&receipt?, "approve")
    }
}
