// x402 v2 on Solana end to end with the official clients: an `@x402/express` resource server
// (`@x402/svm` exact server) whose `HTTPFacilitatorClient` points at our facilitator, and an
// `@x402/fetch` + `@x402/svm` buyer, on the local cluster (served as Solana devnet).
//
// Usage: node tools/e2e/svm.mjs state.json [pay|replay] [copies=10] [payer=0]
//   pay:    one paid request (200, settled), the payee's token account rises by the price, then
//           the same payment header again is not served and the balance does not move again.
//   replay: one payment header on `copies` concurrent requests: exactly one is served, the payee
//           is paid once.
// The state file is `dev-state.json` (x402-dev) or one a test writes: facilitatorUrl, clientId,
// clientToken and a `solana` section { rpcUrl, network, mint, tokenProgram, payTo, payers:
// [{ secretKey }] } (secret keys: base58 of the 64-byte keypair).
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { x402Client, wrapFetchWithPayment, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactSvmScheme as ExactSvmServer } from "@x402/svm/exact/server";
import { ExactSvmScheme as ExactSvmClient } from "@x402/svm/exact/client";
import { toClientSvmSigner } from "@x402/svm";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { findAssociatedTokenPda } from "@solana-program/token";
import { PRICE, clientKeyHeaders, listen, loadState, main } from "./common.mjs";
import { v2PaymentHeaders } from "./servers.mjs";

export const CONTENT_SVM = "paid content (svm)";

// An `@x402/express` resource server selling GET /paid for PRICE of the cluster's mint.
export async function serveSvm(state) {
  const sol = state.solana;
  const facilitator = new HTTPFacilitatorClient({
    url: state.facilitatorUrl,
    createAuthHeaders: clientKeyHeaders(state),
  });
  const resourceServer = new x402ResourceServer(facilitator).register(
    sol.network,
    new ExactSvmServer(),
  );
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /paid": {
          accepts: {
            scheme: "exact",
            payTo: sol.payTo,
            network: sol.network,
            price: { amount: PRICE, asset: sol.mint },
          },
          description: CONTENT_SVM,
        },
      },
      resourceServer,
    ),
  );
  app.get("/paid", (_req, res) => res.json({ content: CONTENT_SVM }));
  return listen(app);
}

// The official buyer, signing with dev payer `payer`; chain reads go to the local cluster.
// The local mint is not one of the client's default assets: allow it, capped at the price.
export async function clientSvm(state, payer = 0) {
  const sol = state.solana;
  const key = sol.payers[payer] ?? sol.payers[0];
  const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(key.secretKey));
  return x402Client.fromConfig({
    schemes: [
      {
        network: sol.network,
        client: new ExactSvmClient(toClientSvmSigner(signer), { rpcUrl: sol.rpcUrl }),
      },
    ],
    spendControls: {
      allowedAssets: [{ network: sol.network, asset: sol.mint, maxAmountPerPayment: PRICE }],
    },
  });
}

async function rpc(url, method, params) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

// The payee's balance of the mint (atomic units, BigInt; 0 without a token account).
export async function payeeBalance(state) {
  const sol = state.solana;
  const [ata] = await findAssociatedTokenPda({
    mint: sol.mint,
    owner: sol.payTo,
    tokenProgram: sol.tokenProgram,
  });
  const info = await rpc(sol.rpcUrl, "getAccountInfo", [
    ata,
    { encoding: "jsonParsed", commitment: "confirmed" },
  ]);
  return BigInt(info?.value?.data?.parsed?.info?.tokenAmount?.amount ?? 0);
}

// One payment for `${url}/paid`, as the official buyer would send it (PAYMENT-SIGNATURE).
export async function svmPaymentHeaders(state, url, payer = 0) {
  const res = await fetch(`${url}/paid`);
  if (res.status !== 402) throw new Error(`expected 402, got ${res.status}`);
  return v2PaymentHeaders(res, await clientSvm(state, payer));
}

async function pay(state, server, payer) {
  const before = await payeeBalance(state);
  // The official fetch wrapper pays; the recording fetch under it keeps the header it sent.
  let paidHeaders = null;
  const recording = async (input, init) => {
    const req = new Request(input, init);
    const sig = req.headers.get("payment-signature");
    if (sig) paidHeaders = { "PAYMENT-SIGNATURE": sig };
    return fetch(req);
  };
  const payFetch = wrapFetchWithPayment(recording, await clientSvm(state, payer));
  const res = await payFetch(`${server.url}/paid`);
  const body = await res.json();
  const raw = res.headers.get("payment-response");
  const settlement = raw ? decodePaymentResponseHeader(raw) : null;
  const afterPay = await payeeBalance(state);
  if (!paidHeaders) throw new Error("the buyer sent no PAYMENT-SIGNATURE");
  const replay = await fetch(`${server.url}/paid`, { headers: paidHeaders });
  const replayBody = await replay.text();
  const afterReplay = await payeeBalance(state);
  const ok =
    res.status === 200 &&
    body.content === CONTENT_SVM &&
    settlement?.success === true &&
    afterPay - before === BigInt(PRICE) &&
    replay.status !== 200 &&
    !replayBody.includes(CONTENT_SVM) &&
    afterReplay === afterPay;
  return {
    ok,
    status: res.status,
    ...(ok ? {} : { body, settlement }),
    transaction: settlement?.transaction,
    network: settlement?.network,
    payer: settlement?.payer,
    paid: (afterPay - before).toString(),
    replayStatus: replay.status,
    paidAfterReplay: (afterReplay - before).toString(),
  };
}

async function replay(state, server, copies, payer) {
  const before = await payeeBalance(state);
  const headers = await svmPaymentHeaders(state, server.url, payer);
  const answers = await Promise.all(
    Array.from({ length: copies }, async () => {
      const res = await fetch(`${server.url}/paid`, { headers });
      return { status: res.status, body: await res.text() };
    }),
  );
  const served = answers.filter((a) => a.status === 200 && a.body.includes(CONTENT_SVM)).length;
  const paid = (await payeeBalance(state)) - before;
  return {
    ok: served === 1 && paid === BigInt(PRICE),
    copies,
    served,
    paid: paid.toString(),
    statuses: answers.map((a) => a.status),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(async () => {
    const state = loadState();
    const mode = process.argv[3] ?? "pay";
    const copies = Number(process.argv[4] ?? 10);
    const payer = Number(process.argv[5] ?? 0);
    const server = await serveSvm(state);
    try {
      return mode === "replay"
        ? await replay(state, server, copies, payer)
        : await pay(state, server, payer);
    } finally {
      await server.close();
    }
  });
}
