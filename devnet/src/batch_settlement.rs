//! The x402 `batch-settlement` contracts on the devnet: `x402BatchSettlement` and its two
//! deposit collectors at their canonical addresses, and Permit2 (which the Permit2 collector
//! calls) at its own. No package ships the contracts' bytecode, so these are ours, written from
//! the spec and the ABI of npm `@x402/evm` 2.27.0 (`contracts/batch-settlement/*.sol`, compiled
//! by `build.mjs` into the committed `artifacts.json`), placed with `anvil_setCode`: the
//! official client and server find them where they look.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::aliases::U40;
use alloy::primitives::{address, Address, Bytes, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolStruct};
use x402::batch_settlement::wire::Erc3009Deposit;
use x402::batch_settlement::IX402BatchSettlement as C;
use x402::batch_settlement::{
    channel_id, claim_batch_digest, erc3009_collector_data, erc3009_deposit_nonce, refund_digest,
    voucher_digest, ChannelConfig, ReceiveWithAuthorization,
};
pub use x402::batch_settlement::{
    IX402BatchSettlement, BATCH_SETTLEMENT, ERC3009_DEPOSIT_COLLECTOR, PERMIT2_DEPOSIT_COLLECTOR,
};

use crate::{ensure_success, rpc, Devnet, DevnetError, SafeWallet};

/// Uniswap's Permit2, the same address on every chain.
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");

const ARTIFACTS: &str = include_str!("../contracts/batch-settlement/artifacts.json");

fn runtime(name: &str) -> Result<Bytes, DevnetError> {
    let bad = |m: &str| DevnetError::Artifact(format!("batch-settlement {name}"), m.to_owned());
    let json: serde_json::Value =
        serde_json::from_str(ARTIFACTS).map_err(|e| bad(&e.to_string()))?;
    json[name]
        .as_str()
        .ok_or_else(|| bad("missing"))?
        .parse()
        .map_err(|e: alloy::hex::FromHexError| bad(&e.to_string()))
}

/// A channel's on-chain state: `channels(id)`, `pendingWithdrawals(id)`, `refundNonce(id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelState {
    pub balance: u128,
    pub total_claimed: u128,
    pub withdraw_amount: u128,
    pub withdraw_requested_at: u64,
    pub refund_nonce: U256,
}

/// 32 unpredictable bytes (a fresh key's hash).
pub fn random_b256() -> B256 {
    alloy::primitives::keccak256(PrivateKeySigner::random().to_bytes())
}

/// `key`'s ECDSA signature of `digest` (r ‖ s ‖ v).
pub fn sign(key: &PrivateKeySigner, digest: B256) -> Bytes {
    Bytes::from(key.sign_hash_sync(&digest).unwrap().as_bytes().to_vec())
}

/// A channel of the devnet's USDC, its keys made here, and what its parties sign (with alloy,
/// not with the code under test).
pub struct Channel {
    pub config: ChannelConfig,
    pub id: B256,
    /// The payer's key (a contract payer's: its wallet's owner).
    pub payer: PrivateKeySigner,
    pub payer_authorizer: PrivateKeySigner,
    pub receiver_authorizer: PrivateKeySigner,
    /// A contract-wallet payer (`payerAuthorizer` zero): it signs by ERC-1271.
    pub wallet: Option<SafeWallet>,
}

impl Channel {
    pub fn new(devnet: &Devnet, payer: PrivateKeySigner, receiver: Address) -> Self {
        Self::delegated(devnet, payer, receiver, PrivateKeySigner::random())
    }

    /// A channel whose `receiverAuthorizer` is `receiver_authorizer` (a facilitator's, when the
    /// merchant delegates it).
    pub fn delegated(
        devnet: &Devnet,
        payer: PrivateKeySigner,
        receiver: Address,
        receiver_authorizer: PrivateKeySigner,
    ) -> Self {
        let payer_authorizer = PrivateKeySigner::random();
        let config = ChannelConfig {
            payer: payer.address(),
            payerAuthorizer: payer_authorizer.address(),
            receiver,
            receiverAuthorizer: receiver_authorizer.address(),
            token: devnet.usdc,
            withdrawDelay: U40::from(900u64),
            salt: random_b256(),
        };
        let id = channel_id(&config, devnet.chain_id);
        Self {
            config,
            id,
            payer,
            payer_authorizer,
            receiver_authorizer,
            wallet: None,
        }
    }

    /// A channel paid by `wallet`, a Safe (`payerAuthorizer` zero): its vouchers and deposit
    /// authorizations are the wallet's ERC-1271 signatures, by its owner.
    pub fn smart_wallet(
        devnet: &Devnet,
        wallet: SafeWallet,
        receiver: Address,
        receiver_authorizer: PrivateKeySigner,
    ) -> Self {
        let mut ch = Self::delegated(devnet, wallet.owner.clone(), receiver, receiver_authorizer);
        ch.config.payer = wallet.address;
        ch.config.payerAuthorizer = Address::ZERO;
        ch.id = channel_id(&ch.config, devnet.chain_id);
        ch.wallet = Some(wallet);
        ch
    }

    /// `digest` signed for the payer's side: by its wallet (ERC-1271) for a contract payer,
    /// else by `key`.
    pub(crate) fn payer_signature(
        &self,
        devnet: &Devnet,
        key: &PrivateKeySigner,
        digest: B256,
    ) -> Bytes {
        match &self.wallet {
            Some(w) => w.sign(devnet.chain_id, digest),
            None => sign(key, digest),
        }
    }

    /// The payer's ERC-3009 authorization of a deposit of `amount` through the collector, as a
    /// client sends it (`deposit.authorization.erc3009Authorization`).
    pub fn deposit_authorization(&self, devnet: &Devnet, amount: u128) -> Erc3009Deposit {
        let salt = random_b256();
        let valid_before = U256::from(4_000_000_000u64);
        let auth = ReceiveWithAuthorization {
            from: self.config.payer,
            to: ERC3009_DEPOSIT_COLLECTOR,
            value: U256::from(amount),
            validAfter: U256::ZERO,
            validBefore: valid_before,
            nonce: erc3009_deposit_nonce(self.id, salt),
        };
        let domain = x402::exact::evm::domain("USDC", "2", devnet.chain_id, devnet.usdc);
        Erc3009Deposit {
            valid_after: U256::ZERO,
            valid_before,
            salt,
            signature: self.payer_signature(devnet, &self.payer, auth.eip712_signing_hash(&domain)),
        }
    }

    /// `deposit(...)` through the ERC-3009 collector, the payer's authorization signed here.
    pub fn deposit_call(&self, devnet: &Devnet, amount: u128) -> C::depositCall {
        let a = self.deposit_authorization(devnet, amount);
        C::depositCall {
            config: self.config.clone(),
            amount,
            collector: ERC3009_DEPOSIT_COLLECTOR,
            collectorData: erc3009_collector_data(
                a.valid_after,
                a.valid_before,
                a.salt,
                &a.signature,
            ),
        }
    }

    /// The payerAuthorizer's signature of a voucher of ceiling `max` (a contract payer's own).
    pub fn voucher_signature(&self, devnet: &Devnet, max: u128) -> Bytes {
        let digest = voucher_digest(self.id, max, devnet.chain_id);
        self.payer_signature(devnet, &self.payer_authorizer, digest)
    }

    pub fn voucher(&self, devnet: &Devnet, max: u128, claimed: u128) -> C::VoucherClaim {
        C::VoucherClaim {
            voucher: C::VoucherData {
                channel: self.config.clone(),
                maxClaimableAmount: max,
            },
            signature: self.voucher_signature(devnet, max),
            totalClaimed: claimed,
        }
    }

    /// The receiverAuthorizer's signature of a refund of `amount` at refund nonce `nonce`.
    pub fn refund_signature(&self, devnet: &Devnet, nonce: u64, amount: u128) -> Bytes {
        sign(
            &self.receiver_authorizer,
            refund_digest(self.id, U256::from(nonce), amount, devnet.chain_id),
        )
    }

    pub fn claim_call(
        &self,
        devnet: &Devnet,
        rows: Vec<C::VoucherClaim>,
    ) -> C::claimWithSignatureCall {
        let digest = claim_batch_digest(&rows, devnet.chain_id);
        C::claimWithSignatureCall {
            voucherClaims: rows,
            authorizerSignature: sign(&self.receiver_authorizer, digest),
        }
    }
}

impl Devnet {
    /// Place the contracts (and Permit2, if the chain has none) at their canonical addresses.
    pub async fn install_batch_settlement(&self) -> Result<(), DevnetError> {
        let p = self.provider();
        let mut codes = vec![
            (BATCH_SETTLEMENT, "batchSettlementRuntime"),
            (ERC3009_DEPOSIT_COLLECTOR, "erc3009CollectorRuntime"),
            (PERMIT2_DEPOSIT_COLLECTOR, "permit2CollectorRuntime"),
        ];
        if p.get_code_at(PERMIT2).await.map_err(rpc)?.is_empty() {
            codes.push((PERMIT2, "permit2Runtime"));
        }
        for (at, name) in codes {
            p.raw_request::<_, ()>("anvil_setCode".into(), (at, runtime(name)?))
                .await
                .map_err(rpc)?;
        }
        Ok(())
    }

    /// `eth_call` of `call` on `to`, decoded.
    pub async fn read<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, DevnetError> {
        let out = self
            .provider()
            .call(
                TransactionRequest::default()
                    .with_to(to)
                    .with_input(call.abi_encode()),
            )
            .await
            .map_err(rpc)?;
        C::abi_decode_returns(&out).map_err(rpc)
    }

    /// Send `call` to `to` from `from` (funded with ETH here) and wait for its receipt; a
    /// revert is an error naming `C`.
    pub async fn send_as<C: SolCall>(
        &self,
        from: &PrivateKeySigner,
        to: Address,
        call: C,
    ) -> Result<TransactionReceipt, DevnetError> {
        let receipt = self.try_send_as(from, to, call).await?;
        ensure_success(&receipt, C::SIGNATURE)?;
        Ok(receipt)
    }

    /// As [`Devnet::send_as`], a reverted transaction returned as its receipt (gas estimation is
    /// skipped so that a revert is mined, not refused).
    pub async fn try_send_as<C: SolCall>(
        &self,
        from: &PrivateKeySigner,
        to: Address,
        call: C,
    ) -> Result<TransactionReceipt, DevnetError> {
        let wei = U256::from(10u128.pow(21));
        if self
            .provider()
            .get_balance(from.address())
            .await
            .map_err(rpc)?
            < wei
        {
            self.set_eth_balance(from.address(), wei).await?;
        }
        let url = self.rpc_url.parse().map_err(rpc)?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(from.clone()))
            .connect_http(url);
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode())
            .with_gas_limit(3_000_000);
        provider
            .send_transaction(tx)
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)
    }

    /// The channel `id` as the contract has it.
    pub async fn channel_state(&self, id: B256) -> Result<ChannelState, DevnetError> {
        let ch = self
            .read(
                BATCH_SETTLEMENT,
                IX402BatchSettlement::channelsCall { channelId: id },
            )
            .await?;
        let w = self
            .read(
                BATCH_SETTLEMENT,
                IX402BatchSettlement::pendingWithdrawalsCall { channelId: id },
            )
            .await?;
        let refund_nonce = self
            .read(
                BATCH_SETTLEMENT,
                IX402BatchSettlement::refundNonceCall { channelId: id },
            )
            .await?;
        Ok(ChannelState {
            balance: ch.balance,
            total_claimed: ch.totalClaimed,
            withdraw_amount: w.amount,
            withdraw_requested_at: w.initiatedAt.to::<u64>(),
            refund_nonce,
        })
    }

    /// Move the chain's clock `secs` forward and mine a block.
    pub async fn advance_time(&self, secs: u64) -> Result<(), DevnetError> {
        self.provider()
            .raw_request::<_, i64>("evm_increaseTime".into(), (secs,))
            .await
            .map_err(rpc)?;
        self.mine().await
    }
}
