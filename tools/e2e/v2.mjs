// x402 v2 end to end with the official clients: an `@x402/express` resource server whose
// `HTTPFacilitatorClient` points at our facilitator, and an `@x402/fetch` + `@x402/evm` buyer.
// Usage: node tools/e2e/v2.mjs dev-state.json
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme as ExactEvmServer } from "@x402/evm/exact/server";
import { ExactEvmScheme as ExactEvmClient } from "@x402/evm/exact/client";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { privateKeyToAccount } from "viem/accounts";
import { PAY_TO, PRICE, buy, clientKeyHeaders, listen, loadState, main } from "./common.mjs";

main(async () => {
  const state = loadState();
  const network = state.caip2 ?? `eip155:${state.chainId}`;
  const facilitator = new HTTPFacilitatorClient({
    url: state.facilitatorUrl,
    createAuthHeaders: clientKeyHeaders(state),
  });
  const resourceServer = new x402ResourceServer(facilitator).register(network, new ExactEvmServer());
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /paid": {
          accepts: {
            scheme: "exact",
            payTo: PAY_TO,
            network,
            price: { amount: PRICE, asset: state.asset, extra: { name: "USDC", version: "2" } },
          },
          description: "paid content (v2)",
        },
      },
      resourceServer,
    ),
  );
  app.get("/paid", (_req, res) => res.json({ content: "paid content (v2)" }));
  const server = await listen(app);
  try {
    // The dev USDC is not one of the client's default assets: allow it, capped at the price.
    const client = x402Client.fromConfig({
      schemes: [
        {
          network,
          client: new ExactEvmClient(
            privateKeyToAccount(state.payerPrivateKeys[1] ?? state.payerPrivateKeys[0]),
          ),
        },
      ],
      spendControls: {
        allowedAssets: [{ network, asset: state.asset, maxAmountPerPayment: PRICE }],
      },
    });
    const pay = wrapFetchWithPayment(fetch, client);
    return await buy(pay, server.url, "payment-response", decodePaymentResponseHeader);
  } finally {
    await server.close();
  }
});
