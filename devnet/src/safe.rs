//! Smart-wallet payers on the devnet: Safe 1.4.1 (`@safe-global/safe-contracts`, the audited
//! artifacts as published; no home-made wallet). A Safe answers ERC-1271 through its
//! `CompatibilityFallbackHandler`: a signature is its owners' ECDSA signatures over the
//! `SafeMessage(bytes message)` EIP-712 hash (domain: chain id + the Safe), with
//! `message = abi.encode(digest)`. `SafeProxyFactory.createProxyWithNonce` deploys one with
//! CREATE2, so its address is known before it exists: the counterfactual wallet of ERC-6492.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol;
use alloy::sol_types::{eip712_domain, SolCall, SolStruct, SolValue};

use crate::{bytecode, rpc, tools_dir, Devnet, DevnetError};

sol! {
    interface ISafe {
        function setup(address[] owners, uint256 threshold, address to, bytes data, address fallbackHandler, address paymentToken, uint256 payment, address paymentReceiver);
    }

    interface ISafeProxyFactory {
        function createProxyWithNonce(address singleton, bytes initializer, uint256 saltNonce) returns (address proxy);
    }

    struct SafeMessage {
        bytes message;
    }
}

/// ERC-6492's magic suffix.
const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// The Safe singleton, its proxy factory and its ERC-1271 fallback handler.
#[derive(Debug, Clone, Copy)]
pub struct SafeContracts {
    pub singleton: Address,
    pub factory: Address,
    pub fallback_handler: Address,
}

/// A one-owner Safe, deployed or not yet.
#[derive(Debug, Clone)]
pub struct SafeWallet {
    pub address: Address,
    pub owner: PrivateKeySigner,
    pub factory: Address,
    /// `createProxyWithNonce(…)`: what deploys it (ERC-6492's factory calldata).
    pub factory_calldata: Bytes,
}

impl SafeWallet {
    /// The owner's signature of `digest` as the Safe's ERC-1271 accepts it (65 bytes).
    pub fn sign(&self, chain_id: u64, digest: B256) -> Bytes {
        self.sign_as(&self.owner, chain_id, digest)
    }

    /// The same, signed by `key` (a wrong signer, for a refusal).
    pub fn sign_as(&self, key: &PrivateKeySigner, chain_id: u64, digest: B256) -> Bytes {
        let domain = eip712_domain! {
            chain_id: chain_id,
            verifying_contract: self.address,
        };
        let hash = SafeMessage {
            message: digest.abi_encode().into(),
        }
        .eip712_signing_hash(&domain);
        let sig = key.sign_hash_sync(&hash).expect("sign");
        Bytes::from(sig.as_bytes().to_vec())
    }

    /// `signature` wrapped per ERC-6492 with this wallet's deployment.
    pub fn erc6492(&self, signature: Bytes) -> Bytes {
        let mut out = (self.factory, self.factory_calldata.clone(), signature).abi_encode_params();
        out.extend_from_slice(&ERC6492_MAGIC);
        out.into()
    }
}

fn safe_artifacts() -> Result<std::path::PathBuf, DevnetError> {
    let p = tools_dir()?.join("node_modules/@safe-global/safe-contracts/build/artifacts/contracts");
    if p.is_dir() {
        Ok(p)
    } else {
        Err(DevnetError::ToolsMissing(p.display().to_string()))
    }
}

impl Devnet {
    /// Deploy Safe 1.4.1's singleton, proxy factory and fallback handler.
    pub async fn deploy_safe_contracts(&self) -> Result<SafeContracts, DevnetError> {
        let dir = safe_artifacts()?;
        let deploy = |rel: &'static str| {
            let code = bytecode(&dir, rel, &[]);
            async move { self.deploy_code(code?, rel).await }
        };
        let singleton = deploy("Safe.sol/Safe.json").await?;
        let factory = deploy("proxies/SafeProxyFactory.sol/SafeProxyFactory.json").await?;
        let fallback_handler =
            deploy("handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json")
                .await?;
        Ok(SafeContracts {
            singleton,
            factory,
            fallback_handler,
        })
    }

    /// A one-owner Safe of `owner` (salt `salt`), not deployed: its address is what the factory
    /// would return.
    pub async fn counterfactual_safe(
        &self,
        contracts: &SafeContracts,
        owner: PrivateKeySigner,
        salt: u64,
    ) -> Result<SafeWallet, DevnetError> {
        let initializer = ISafe::setupCall {
            owners: vec![owner.address()],
            threshold: U256::from(1),
            to: Address::ZERO,
            data: Bytes::new(),
            fallbackHandler: contracts.fallback_handler,
            paymentToken: Address::ZERO,
            payment: U256::ZERO,
            paymentReceiver: Address::ZERO,
        }
        .abi_encode();
        let factory_calldata: Bytes = ISafeProxyFactory::createProxyWithNonceCall {
            singleton: contracts.singleton,
            initializer: initializer.into(),
            saltNonce: U256::from(salt),
        }
        .abi_encode()
        .into();
        let tx = TransactionRequest::default()
            .to(contracts.factory)
            .with_input(factory_calldata.clone());
        let out = self.provider.call(tx).await.map_err(rpc)?;
        let address =
            ISafeProxyFactory::createProxyWithNonceCall::abi_decode_returns(&out).map_err(rpc)?;
        Ok(SafeWallet {
            address,
            owner,
            factory: contracts.factory,
            factory_calldata,
        })
    }

    /// Deploy `wallet` through its factory.
    pub async fn deploy_safe(&self, wallet: &SafeWallet) -> Result<(), DevnetError> {
        let tx = TransactionRequest::default()
            .to(wallet.factory)
            .with_input(wallet.factory_calldata.clone());
        self.send(tx, "createProxyWithNonce").await?;
        if self.code_at(wallet.address).await?.is_empty() {
            return Err(DevnetError::Reverted("Safe not deployed".into()));
        }
        Ok(())
    }

    /// The code at `who` (empty for an EOA or a wallet not deployed).
    pub async fn code_at(&self, who: Address) -> Result<Bytes, DevnetError> {
        self.provider.get_code_at(who).await.map_err(rpc)
    }
}
