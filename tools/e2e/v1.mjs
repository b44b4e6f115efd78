// x402 v1 end to end with the official clients: an `x402-express` resource server that uses
// our facilitator, and an `x402-fetch` buyer paying it with a dev payer key.
// Usage: node tools/e2e/v1.mjs dev-state.json
import { wrapFetchWithPayment, decodeXPaymentResponse } from "x402-fetch";
import { PRICE, buy, loadState, main } from "./common.mjs";
import { serveV1, walletV1 } from "./servers.mjs";

main(async () => {
  const state = loadState();
  const server = await serveV1(state);
  try {
    const pay = wrapFetchWithPayment(fetch, walletV1(state), BigInt(PRICE));
    return await buy(pay, server.url, "x-payment-response", decodeXPaymentResponse);
  } finally {
    await server.close();
  }
});
