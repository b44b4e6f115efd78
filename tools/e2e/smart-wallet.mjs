// x402 v2 end to end for a smart-wallet payer: the official `@x402/express` resource server and
// `@x402/fetch` + `@x402/evm` buyer, the buyer's signer being a Safe (ERC-1271). The signer is a
// viem account whose `signTypedData` answers as the Safe does: its owner signs the Safe's
// `SafeMessage(bytes message)` hash of the EIP-712 digest; for a Safe not deployed yet the
// signature is wrapped per ERC-6492 (viem's `serializeErc6492Signature`) with its factory call.
// Usage: node tools/e2e/smart-wallet.mjs state.json   (state: common.mjs's, plus `safe`:
// { address, ownerPrivateKey, factory?, factoryCalldata? })
import { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } from "@x402/fetch";
import { ExactEvmScheme as ExactEvmClient } from "@x402/evm/exact/client";
import { encodeAbiParameters, hashTypedData, serializeErc6492Signature } from "viem";
import { privateKeyToAccount, toAccount } from "viem/accounts";
import { PRICE, buy, loadState, main } from "./common.mjs";
import { serveV2, v2Network } from "./servers.mjs";

function safeAccount(state) {
  const { address, ownerPrivateKey, factory, factoryCalldata } = state.safe;
  const owner = privateKeyToAccount(ownerPrivateKey);
  const unsupported = async () => {
    throw new Error("a Safe signs typed data only here");
  };
  return toAccount({
    address,
    signMessage: unsupported,
    signTransaction: unsupported,
    async signTypedData(typedData) {
      const digest = hashTypedData(typedData);
      const safeHash = hashTypedData({
        domain: { chainId: state.chainId, verifyingContract: address },
        types: { SafeMessage: [{ name: "message", type: "bytes" }] },
        primaryType: "SafeMessage",
        message: { message: encodeAbiParameters([{ type: "bytes32" }], [digest]) },
      });
      const signature = await owner.sign({ hash: safeHash });
      return factory
        ? serializeErc6492Signature({ address: factory, data: factoryCalldata, signature })
        : signature;
    },
  });
}

main(async () => {
  const state = loadState();
  const network = v2Network(state);
  const server = await serveV2(state);
  try {
    const client = x402Client.fromConfig({
      schemes: [{ network, client: new ExactEvmClient(safeAccount(state)) }],
      spendControls: {
        allowedAssets: [{ network, asset: state.asset, maxAmountPerPayment: PRICE }],
      },
    });
    return await buy(wrapFetchWithPayment(fetch, client), server.url, "payment-response", decodePaymentResponseHeader);
  } finally {
    await server.close();
  }
});
