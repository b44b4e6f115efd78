//! The devnet is real: Circle's token answers as USDC does, and EIP-3009 moves money.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::SignerSync;
use alloy::sol;
use alloy::sol_types::{eip712_domain, SolCall, SolStruct};
use devnet::{Devnet, DevnetOptions, IFiatToken};

sol! {
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
    function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
}

#[tokio::test]
async fn usdc_is_circles_token_and_eip3009_moves_exactly_the_value() {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let token = IFiatToken::new(devnet.usdc, devnet.provider());
    assert_eq!(token.name().call().await.unwrap(), "USDC");
    assert_eq!(token.version().call().await.unwrap(), "2");
    let domain = eip712_domain! {
        name: "USDC",
        version: "2",
        chain_id: 84532,
        verifying_contract: devnet.usdc,
    };
    assert_eq!(
        token.DOMAIN_SEPARATOR().call().await.unwrap(),
        domain.separator()
    );
    assert_eq!(devnet.provider().get_chain_id().await.unwrap(), 84532);
    for p in &devnet.payers {
        assert_eq!(
            devnet.usdc_balance(p.address()).await.unwrap(),
            U256::from(1_000_000_000_000u64)
        );
    }

    // A buyer's signed authorization, submitted by a facilitator key.
    let payer = &devnet.payers[0];
    let to = Address::repeat_byte(0x77);
    let nonce = B256::repeat_byte(9);
    let msg = TransferWithAuthorization {
        from: payer.address(),
        to,
        value: U256::from(1_234_567),
        validAfter: U256::ZERO,
        validBefore: U256::from(u64::MAX),
        nonce,
    };
    let sig = payer
        .sign_hash_sync(&msg.eip712_signing_hash(&domain))
        .unwrap();
    let call = transferWithAuthorizationCall {
        from: msg.from,
        to,
        value: msg.value,
        validAfter: msg.validAfter,
        validBefore: msg.validBefore,
        nonce,
        v: 27 + sig.v() as u8,
        r: sig.r().into(),
        s: sig.s().into(),
    };
    let submitter = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(
            devnet.facilitator_keys[0].clone(),
        ))
        .connect_http(devnet.rpc_url.parse().unwrap());
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(devnet.usdc)
        .input(call.abi_encode().into());
    let receipt = submitter
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(
        devnet.usdc_balance(to).await.unwrap(),
        U256::from(1_234_567)
    );
    assert!(devnet
        .authorization_state(payer.address(), nonce)
        .await
        .unwrap());

    // A second token with base mainnet's domain name.
    let other = devnet.deploy_usdc("USD Coin").await.unwrap();
    assert_eq!(
        IFiatToken::new(other, devnet.provider())
            .name()
            .call()
            .await
            .unwrap(),
        "USD Coin"
    );

    let pid = devnet.pid().unwrap();
    devnet.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "anvil is gone"
    );
}

sol! {
    #[sol(rpc)]
    interface IMulticall3 {
        struct Call3 { address target; bool allowFailure; bytes callData; }
        struct Result { bool success; bytes returnData; }
        function aggregate3(Call3[] calls) payable returns (Result[] returnData);
        function getChainId() view returns (uint256 chainid);
    }
}

#[tokio::test]
async fn multicall3_answers_at_its_canonical_address() {
    let devnet = Devnet::start(DevnetOptions {
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let multicall = IMulticall3::new(devnet::MULTICALL3, devnet.provider());
    assert_eq!(
        multicall.getChainId().call().await.unwrap(),
        U256::from(devnet.chain_id)
    );
    // One batched read of the token, as the reference facilitator's diagnosis does.
    let payer = devnet.payers[0].address();
    let calls = vec![IMulticall3::Call3 {
        target: devnet.usdc,
        allowFailure: false,
        callData: IFiatToken::balanceOfCall { account: payer }
            .abi_encode()
            .into(),
    }];
    let results = multicall.aggregate3(calls).call().await.unwrap();
    assert!(results[0].success);
    let balance = U256::from_be_slice(&results[0].returnData);
    assert_eq!(balance, devnet.usdc_balance(payer).await.unwrap());
    devnet.stop().await;
}
