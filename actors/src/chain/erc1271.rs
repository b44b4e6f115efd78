//! ERC-1271 (https://eips.ethereum.org/EIPS/eip-1271): a contract wallet says whether a
//! signature of a hash is its own, `isValidSignature(hash, signature)` answering the magic
//! value `0x1626ba7e`. Asked with one `eth_call` through the network's bounded provider, and
//! judged as OpenZeppelin's `SignatureChecker.isValidERC1271SignatureNow` judges it (what the
//! contracts that rely on the answer run): at least 32 bytes returned, their first word the
//! magic value; a wallet may revert: "no". An address without code is judged by ECDSA, as
//! OpenZeppelin 5's `SignatureChecker.isValidSignatureNow` does.

use alloy::primitives::{fixed_bytes, Address, Bytes, FixedBytes, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol;
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};

sol! {
    interface IERC1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4 magicValue);
    }
}

/// What `isValidSignature` returns for a valid signature (its own selector).
pub const MAGIC_VALUE: FixedBytes<4> = fixed_bytes!("0x1626ba7e");

/// Whether `output` (what `isValidSignature` returned) is the magic value, word-aligned.
pub fn is_magic(output: &[u8]) -> bool {
    let mut word = [0u8; 32];
    word[..4].copy_from_slice(MAGIC_VALUE.as_slice());
    output.len() >= 32 && output[..32] == word
}

/// Whether `signature` is `signer`'s for `hash` at the latest block, as OpenZeppelin 5's
/// `SignatureChecker.isValidSignatureNow` judges it on chain: a signer without code by ECDSA
/// (its key recovered from the signature), one with code by its `isValidSignature` answering
/// the magic value (any other answer or a revert: no). The code and the wallet's answer are
/// asked in one batch (one round trip). `Err` when the chain gave no answer (the caller's RPC
/// failure, never "valid").
pub async fn is_valid_signature_now<P: Provider>(
    provider: &P,
    signer: Address,
    hash: B256,
    signature: &Bytes,
) -> Result<bool, RpcError<TransportErrorKind>> {
    let data = IERC1271::isValidSignatureCall {
        hash,
        signature: signature.clone(),
    }
    .abi_encode();
    let tx = TransactionRequest::default()
        .to(signer)
        .input(TransactionInput::new(data.into()));
    let mut batch = alloy::rpc::client::BatchRequest::new(provider.client());
    let code = batch.add_call::<_, Bytes>("eth_getCode", &(signer, "latest"))?;
    let answer = batch.add_call::<_, Bytes>("eth_call", &(tx, "latest"))?;
    batch.send().await?;
    if code.await?.is_empty() {
        return Ok(x402::exact::evm::recover_signer(hash, signature).is_ok_and(|a| a == signer));
    }
    match answer.await {
        Ok(output) => Ok(is_magic(&output)),
        Err(RpcError::ErrorResp(e)) if e.message.contains("revert") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_word_aligned_magic_value_is_valid() {
        let mut word = [0u8; 32];
        word[..4].copy_from_slice(&[0x16, 0x26, 0xba, 0x7e]);
        assert!(is_magic(&word));
        let mut longer = word.to_vec();
        longer.extend_from_slice(&[0; 32]);
        assert!(is_magic(&longer));
        // No code (an empty answer), the bare 4 bytes, dirty padding, another value.
        assert!(!is_magic(&[]));
        assert!(!is_magic(&word[..4]));
        let mut dirty = word;
        dirty[31] = 1;
        assert!(!is_magic(&dirty));
        let mut other = word;
        other[0] = 0xff;
        assert!(!is_magic(&other));
    }
}
