// x402 v1 end to end with the official clients: an `x402-express` resource server that uses
// our facilitator, and an `x402-fetch` buyer paying it with a dev payer key.
// Usage: node tools/e2e/v1.mjs dev-state.json
import express from "express";
import { paymentMiddleware } from "x402-express";
import { wrapFetchWithPayment, decodeXPaymentResponse } from "x402-fetch";
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";
import { PAY_TO, PRICE, buy, clientKeyHeaders, listen, loadState, main } from "./common.mjs";

main(async () => {
  const state = loadState();
  const app = express();
  app.use(
    paymentMiddleware(
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
  app.get("/paid", (_req, res) => res.json({ content: "paid content (v1)" }));
  const server = await listen(app);
  try {
    // The buyer's wallet signs locally; any chain reads go to the dev chain.
    const wallet = createWalletClient({
      chain: baseSepolia,
      transport: http(state.rpcUrl),
      account: privateKeyToAccount(state.payerPrivateKeys[0]),
    }).extend(publicActions);
    const pay = wrapFetchWithPayment(fetch, wallet, BigInt(PRICE));
    return await buy(pay, server.url, "x-payment-response", decodeXPaymentResponse);
  } finally {
    await server.close();
  }
});
