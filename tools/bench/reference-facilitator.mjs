// The official TypeScript x402 facilitator, served over HTTP: `@x402/core`'s `x402Facilitator`
// with `@x402/evm`'s `ExactEvmScheme` (x402 v2) and `ExactEvmSchemeV1` (v1) on one signer key,
// and/or `@x402/svm`'s `ExactSvmScheme` (x402 v2, Solana) on one fee payer.
// `x402-bench` and its tests point at it to measure a facilitator that is not ours.
//
// Configuration (environment; keys never go on a command line). EVM, when REFERENCE_RPC_URL
// is set:
//   REFERENCE_RPC_URL       node to read and settle on
//   REFERENCE_PRIVATE_KEY   the facilitator's signer key (0x…), pays the gas
//   REFERENCE_CHAIN_ID      chain id of that node (default 84532)
//   REFERENCE_NETWORK       CAIP-2 id served for v2 (default eip155:<chain id>)
//   REFERENCE_V1_NETWORK    v1 network name served for v1 (default base-sepolia)
//   REFERENCE_NONCE_MANAGER "0" to send without viem's nonce manager (the example's default);
//                           on by default, or concurrent settles on one key collide
//   REFERENCE_BATCH_SETTLEMENT "1" to also serve `batch-settlement` (payment channels, v2) with
//                           `@x402/evm`'s `BatchSettlementEvmScheme` on the same signer, without
//                           an authorizer key (servers sign their own claims)
// Solana, when REFERENCE_SVM_RPC_URL is set:
//   REFERENCE_SVM_RPC_URL       the cluster's JSON-RPC
//   REFERENCE_SVM_FEE_PAYER_KEY the fee payer's keypair, base58 of its 64 bytes
//   REFERENCE_SVM_NETWORK       CAIP-2 id served (default Solana devnet's: @x402/svm knows only
//                               mainnet, devnet and testnet)
// Listens on 127.0.0.1, a free port, and prints one JSON line once ready: {"url", "signer",
// "feePayer"}. The routes follow the reference example (examples/typescript/facilitator):
// POST /verify, POST /settle, GET /supported; a thrown error is a 500 with {"error"}.
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/facilitator";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { ExactSvmScheme } from "@x402/svm/exact/facilitator";
import { createKeyPairSignerFromBytes, createSolanaRpc, devnet, getBase58Encoder } from "@solana/kit";
import { createWalletClient, http, nonceManager, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";

const rpcUrl = process.env.REFERENCE_RPC_URL;
const key = process.env.REFERENCE_PRIVATE_KEY;
const svmRpcUrl = process.env.REFERENCE_SVM_RPC_URL;
const svmKey = process.env.REFERENCE_SVM_FEE_PAYER_KEY;
if (!(rpcUrl && key) && !(svmRpcUrl && svmKey)) {
  console.error(
    "REFERENCE_RPC_URL and REFERENCE_PRIVATE_KEY, or REFERENCE_SVM_RPC_URL and REFERENCE_SVM_FEE_PAYER_KEY, are required",
  );
  process.exit(2);
}

const facilitator = new x402Facilitator();
const ready = {};

if (rpcUrl && key) {
  const chainId = Number(process.env.REFERENCE_CHAIN_ID ?? "84532");
  const network = process.env.REFERENCE_NETWORK ?? `eip155:${chainId}`;
  const v1Network = process.env.REFERENCE_V1_NETWORK ?? "base-sepolia";
  const useNonceManager = process.env.REFERENCE_NONCE_MANAGER !== "0";

  // base-sepolia's definition (it names Multicall3 at its canonical address), on our node.
  const chain = { ...baseSepolia, id: chainId, rpcUrls: { default: { http: [rpcUrl] } } };
  const account = privateKeyToAccount(key, useNonceManager ? { nonceManager } : {});
  const client = createWalletClient({ account, chain, transport: http(rpcUrl) }).extend(
    publicActions,
  );

  const signer = toFacilitatorEvmSigner({
    address: account.address,
    getCode: (args) => client.getCode(args),
    readContract: (args) => client.readContract({ ...args, args: args.args || [] }),
    verifyTypedData: (args) => client.verifyTypedData(args),
    writeContract: (args) => client.writeContract({ ...args, args: args.args || [] }),
    sendTransaction: (args) => client.sendTransaction(args),
    waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
  });
  facilitator
    .register(network, new ExactEvmScheme(signer))
    .registerV1(v1Network, new ExactEvmSchemeV1(signer));
  if (process.env.REFERENCE_BATCH_SETTLEMENT === "1") {
    facilitator.register(network, new BatchSettlementEvmScheme(signer));
  }
  ready.signer = account.address;
}

if (svmRpcUrl && svmKey) {
  const network = process.env.REFERENCE_SVM_NETWORK ?? "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
  const keypair = await createKeyPairSignerFromBytes(getBase58Encoder().encode(svmKey));
  // One RPC client for the cluster, given per network (the signer's documented option; a bare
  // client is not recognised as one: its proxy answers no `in` test, so it would be read as a
  // network map).
  const signer = toFacilitatorSvmSigner(keypair, {
    [network]: createSolanaRpc(devnet(svmRpcUrl)),
  });
  facilitator.register(network, new ExactSvmScheme(signer));
  ready.feePayer = keypair.address;
}

const app = express();
app.use(express.json({ limit: "1mb" }));

function route(call) {
  return async (req, res) => {
    const { paymentPayload, paymentRequirements } = req.body ?? {};
    if (!paymentPayload || !paymentRequirements) {
      return res.status(400).json({ error: "Missing paymentPayload or paymentRequirements" });
    }
    try {
      res.json(await call(paymentPayload, paymentRequirements));
    } catch (error) {
      res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
    }
  };
}

app.post("/verify", route((p, r) => facilitator.verify(p, r)));
app.post("/settle", route((p, r) => facilitator.settle(p, r)));
app.get("/supported", (_req, res) => res.json(facilitator.getSupported()));

const server = app.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}`, ...ready }));
});
server.keepAliveTimeout = 65_000;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
