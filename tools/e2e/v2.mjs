// x402 v2 end to end with the official clients: an `@x402/express` resource server whose
// `HTTPFacilitatorClient` points at our facilitator, and an `@x402/fetch` + `@x402/evm` buyer.
// Usage: node tools/e2e/v2.mjs dev-state.json
import { wrapFetchWithPayment, decodePaymentResponseHeader } from "@x402/fetch";
import { buy, loadState, main } from "./common.mjs";
import { clientV2, serveV2 } from "./servers.mjs";

main(async () => {
  const state = loadState();
  const server = await serveV2(state);
  try {
    const pay = wrapFetchWithPayment(fetch, clientV2(state));
    return await buy(pay, server.url, "payment-response", decodePaymentResponseHeader);
  } finally {
    await server.close();
  }
});
