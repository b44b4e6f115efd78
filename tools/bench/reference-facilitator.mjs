// The official TypeScript x402 facilitator, served over HTTP: `@x402/core`'s `x402Facilitator`
// with `@x402/evm`'s `ExactEvmScheme` (x402 v2) and `ExactEvmSchemeV1` (v1), on one signer key.
// `x402-bench` and its tests point at it to measure a facilitator that is not ours.
//
// Configuration (environment; the key never goes on a command line):
//   REFERENCE_RPC_URL       node to read and settle on
//   REFERENCE_PRIVATE_KEY   the facilitator's signer key (0x…), pays the gas
//   REFERENCE_CHAIN_ID      chain id of that node (default 84532)
//   REFERENCE_NETWORK       CAIP-2 id served for v2 (default eip155:<chain id>)
//   REFERENCE_V1_NETWORK    v1 network name served for v1 (default base-sepolia)
//   REFERENCE_NONCE_MANAGER "0" to send without viem's nonce manager (the example's default);
//                           on by default, or concurrent settles on one key collide
// Listens on 127.0.0.1, a free port, and prints one JSON line once ready: {"url", "signer"}.
// The routes follow the reference example (examples/typescript/facilitator): POST /verify,
// POST /settle, GET /supported; a thrown error is a 500 with {"error"}.
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import { createWalletClient, http, nonceManager, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";

const rpcUrl = process.env.REFERENCE_RPC_URL;
const key = process.env.REFERENCE_PRIVATE_KEY;
if (!rpcUrl || !key) {
  console.error("REFERENCE_RPC_URL and REFERENCE_PRIVATE_KEY are required");
  process.exit(2);
}
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

const facilitator = new x402Facilitator()
  .register(network, new ExactEvmScheme(signer))
  .registerV1(v1Network, new ExactEvmSchemeV1(signer));

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
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}`, signer: account.address }));
});
server.keepAliveTimeout = 65_000;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
