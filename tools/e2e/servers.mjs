// The official x402 resource servers (v1 `x402-express`, v2 `@x402/express`) and buyers
// (`x402-fetch`, `@x402/fetch` + `@x402/evm`), set up against our facilitator from a state file
// (see common.mjs). Shared by the end-to-end scripts.
import express from "express";
import { paymentMiddleware as paymentMiddlewareV1 } from "x402-express";
import { paymentMiddleware as paymentMiddlewareV2, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme as ExactEvmServer } from "@x402/evm/exact/server";
import { ExactEvmScheme as ExactEvmClient } from "@x402/evm/exact/client";
import { x402Client, x402HTTPClient } from "@x402/fetch";
import { createPaymentHeader } from "x402/client";
import { PaymentRequirementsSchema } from "x402/types";
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";
import { PAY_TO, PRICE, clientKeyHeaders, listen } from "./common.mjs";

export const CONTENT_V1 = "paid content (v1)";
export const CONTENT_V2 = "paid content (v2)";

// An `x402-express` resource server selling GET /paid through our facilitator.
export async function serveV1(state) {
  const app = express();
  app.use(
    paymentMiddlewareV1(
      PAY_TO,
      {
        "GET /paid": {
          price: {
            amount: PRICE,
            asset: { address: state.asset, decimals: 6, eip712: { name: "USDC", version: "2" } },
          },
          network: state.network,
        },
      },
      { url: state.facilitatorUrl, createAuthHeaders: clientKeyHeaders(state) },
    ),
  );
  app.get("/paid", (_req, res) => res.json({ content: CONTENT_V1 }));
  return listen(app);
}

export function v2Network(state) {
  return state.caip2 ?? `eip155:${state.chainId}`;
}

// An `@x402/express` resource server (verify, run the handler, settle) selling GET /paid.
export async function serveV2(state) {
  const network = v2Network(state);
  const facilitator = new HTTPFacilitatorClient({
    url: state.facilitatorUrl,
    createAuthHeaders: clientKeyHeaders(state),
  });
  const resourceServer = new x402ResourceServer(facilitator).register(network, new ExactEvmServer());
  const app = express();
  app.use(
    paymentMiddlewareV2(
      {
        "GET /paid": {
          accepts: {
            scheme: "exact",
            payTo: PAY_TO,
            network,
            price: { amount: PRICE, asset: state.asset, extra: { name: "USDC", version: "2" } },
          },
          description: CONTENT_V2,
        },
      },
      resourceServer,
    ),
  );
  app.get("/paid", (_req, res) => res.json({ content: CONTENT_V2 }));
  return listen(app);
}

// The v1 buyer's wallet: signs locally; chain reads go to the dev chain.
export function walletV1(state, payer = 0) {
  return createWalletClient({
    chain: baseSepolia,
    transport: http(state.rpcUrl),
    account: privateKeyToAccount(state.payerPrivateKeys[payer]),
  }).extend(publicActions);
}

// The v2 buyer. The dev USDC is not one of the client's default assets: allow it, capped at
// the price.
export function clientV2(state, payer = 1) {
  const network = v2Network(state);
  return x402Client.fromConfig({
    schemes: [
      {
        network,
        client: new ExactEvmClient(
          privateKeyToAccount(state.payerPrivateKeys[payer] ?? state.payerPrivateKeys[0]),
        ),
      },
    ],
    spendControls: {
      allowedAssets: [{ network, asset: state.asset, maxAmountPerPayment: PRICE }],
    },
  });
}

// One signed payment for `${url}/paid`, as request headers: what the official buyer would
// send (`X-PAYMENT` for v1, `PAYMENT-SIGNATURE` for v2).
export async function paymentHeaders(state, url, version) {
  const res = await fetch(`${url}/paid`);
  if (res.status !== 402) throw new Error(`expected 402, got ${res.status}`);
  if (version === 1) {
    const { x402Version, accepts } = await res.json();
    const requirements = PaymentRequirementsSchema.parse(accepts[0]);
    const header = await createPaymentHeader(walletV1(state), x402Version, requirements);
    return { "X-PAYMENT": header };
  }
  return v2PaymentHeaders(res, clientV2(state));
}

// The v2 headers `client` (an `x402Client`) sends to pay the 402 answer `res`.
export async function v2PaymentHeaders(res, client) {
  const httpClient = new x402HTTPClient(client);
  const text = await res.text();
  const paymentRequired = httpClient.getPaymentRequiredResponse(
    (name) => res.headers.get(name),
    text ? JSON.parse(text) : undefined,
  );
  const payload = await client.createPaymentPayload(paymentRequired);
  return httpClient.encodePaymentSignatureHeader(payload);
}
