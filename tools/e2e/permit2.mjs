// Permit2 end to end with the official v2 clients: an `@x402/express` resource server selling
// GET /exact (`exact` with `assetTransferMethod: "permit2"`, a plain ERC-20) and GET /upto
// (`upto`: the handler settles USED out of a MAX), through our facilitator, and an
// `@x402/fetch` + `@x402/evm` buyer that has approved Permit2.
// Usage: node tools/e2e/permit2.mjs state.json   (state: common.mjs, plus `token`)
import express from "express";
import { paymentMiddleware, setSettlementOverrides, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme as ExactEvmServer } from "@x402/evm/exact/server";
import { ExactEvmScheme as ExactEvmClient } from "@x402/evm/exact/client";
import { UptoEvmScheme as UptoEvmServer } from "@x402/evm/upto/server";
import { UptoEvmScheme as UptoEvmClient } from "@x402/evm/upto/client";
import { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } from "@x402/fetch";
import { privateKeyToAccount } from "viem/accounts";
import { PAY_TO, clientKeyHeaders, listen, loadState, main } from "./common.mjs";
import { v2Network } from "./servers.mjs";

export const EXACT_PRICE = "25000";
export const UPTO_MAX = "20000";
export const UPTO_USED = "1858";

async function serve(state) {
  const network = v2Network(state);
  const facilitator = new HTTPFacilitatorClient({
    url: state.facilitatorUrl,
    createAuthHeaders: clientKeyHeaders(state),
  });
  const resourceServer = new x402ResourceServer(facilitator)
    .register(network, new ExactEvmServer())
    .register(network, new UptoEvmServer());
  const extra = { name: state.tokenName, version: "1" };
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /exact": {
          accepts: {
            scheme: "exact",
            payTo: PAY_TO,
            network,
            price: { amount: EXACT_PRICE, asset: state.token, extra: { ...extra, assetTransferMethod: "permit2" } },
          },
          description: "permit2 exact",
        },
        "GET /upto": {
          accepts: {
            scheme: "upto",
            payTo: PAY_TO,
            network,
            price: { amount: UPTO_MAX, asset: state.token, extra },
          },
          description: "upto",
        },
      },
      resourceServer,
    ),
  );
  app.get("/exact", (_req, res) => res.json({ content: "paid with permit2" }));
  app.get("/upto", (_req, res) => {
    setSettlementOverrides(res, { amount: UPTO_USED });
    res.json({ content: "metered" });
  });
  return listen(app);
}

function buyer(state) {
  const network = v2Network(state);
  const account = privateKeyToAccount(state.payerPrivateKeys[0]);
  return x402Client.fromConfig({
    schemes: [
      { network, client: new ExactEvmClient(account) },
      { network, client: new UptoEvmClient(account) },
    ],
    spendControls: {
      allowedAssets: [{ network, asset: state.token, maxAmountPerPayment: EXACT_PRICE }],
    },
  });
}

async function buy(pay, url) {
  const res = await pay(url);
  const body = await res.json().catch(() => null);
  const raw = res.headers.get("payment-response");
  const settlement = raw ? decodePaymentResponseHeader(raw) : null;
  return { status: res.status, body, settlement };
}

main(async () => {
  const state = loadState();
  const server = await serve(state);
  try {
    const pay = wrapFetchWithPayment(fetch, buyer(state));
    const exact = await buy(pay, `${server.url}/exact`);
    const upto = await buy(pay, `${server.url}/upto`);
    return {
      ok: exact.status === 200 && exact.settlement?.success === true
        && upto.status === 200 && upto.settlement?.success === true,
      exact,
      upto,
    };
  } finally {
    await server.close();
  }
});
