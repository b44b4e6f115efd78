// Payment channels (`batch-settlement`) end to end with the official clients: an `@x402/fetch` +
// `@x402/evm` batch-settlement buyer pays an `@x402/express` resource server using the
// reference's batch-settlement server package (`@x402/evm/batch-settlement/server`), whose
// `HTTPFacilitatorClient` points at our facilitator. The buyer deposits once (through the
// ERC-3009 collector) and pays `requests` requests on that one channel with cumulative
// vouchers; the server's channel manager then claims (`claimWithSignature`) and sweeps
// (`settle`) through us. A voucher already paid with is then sent again, to the resource server
// and to our `/verify`, before and after the claim. Last, the buyer asks the server for a
// cooperative refund of what it did not spend, settled through us.
//
// Usage: node tools/e2e/channels.mjs state.json [requests=100] [authorizer=facilitator|merchant]
//          [verify=facilitator|local] [deposit=eip3009|permit2]
//   authorizer: facilitator: the server delegates `receiverAuthorizer` to the address our
//               `/supported` advertises (we sign the claims); merchant: the server signs them
//               with its own key (`state.channels.merchantAuthorizerKey`).
//   verify:     facilitator: every voucher is verified by us (the server's mirrored state is
//               never fresh, `onchainStateTtlMs: 0`); local: the reference's default (vouchers
//               verified by the server itself while its mirror is fresh).
//   deposit:    the requirements' `extra.assetTransferMethod`: the buyer deposits through the
//               ERC-3009 collector, or through the Permit2 collector (the payer must have
//               approved Permit2 for the token).
// State: common.mjs's, plus `channels: { payTo, payer, merchantAuthorizerKey }` (`payer`: an
// index into `payerPrivateKeys`). The last stdout line is the JSON result.
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme as BatchServer } from "@x402/evm/batch-settlement/server";
import { BatchSettlementEvmScheme as BatchClient } from "@x402/evm/batch-settlement/client";
import { createPublicClient, erc20Abi, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";
import { PRICE, clientKeyHeaders, listen, loadState, main } from "./common.mjs";
import { v2Network } from "./servers.mjs";

export const CONTENT_CHANNEL = "paid content (batch-settlement)";
// One deposit covers every request: 1.5 USDC against 100 x 0.01.
export const DEPOSIT = "1500000";

// The server's facilitator client (ours), counting the calls the server makes through it.
function facilitatorClient(state) {
  const client = new HTTPFacilitatorClient({
    url: state.facilitatorUrl,
    createAuthHeaders: clientKeyHeaders(state),
  });
  const calls = { verify: 0, settle: 0 };
  for (const name of ["verify", "settle"]) {
    const call = client[name].bind(client);
    client[name] = (...args) => {
      calls[name] += 1;
      return call(...args);
    };
  }
  return { client, calls };
}

// The resource server selling GET /paid for PRICE per request over a channel to `payTo`.
async function serve(state, facilitator, authorizer, verify, method) {
  const network = v2Network(state);
  const ch = state.channels;
  const scheme = new BatchServer(ch.payTo, {
    ...(authorizer === "merchant"
      ? { receiverAuthorizerSigner: privateKeyToAccount(ch.merchantAuthorizerKey) }
      : {}),
    ...(verify === "facilitator" ? { onchainStateTtlMs: 0 } : {}),
  });
  const resourceServer = new x402ResourceServer(facilitator).register(network, scheme);
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /paid": {
          accepts: {
            scheme: "batch-settlement",
            payTo: ch.payTo,
            network,
            price: {
              amount: PRICE,
              asset: state.asset,
              extra: {
                name: "USDC",
                version: "2",
                ...(method === "permit2" ? { assetTransferMethod: "permit2" } : {}),
              },
            },
          },
          description: CONTENT_CHANNEL,
        },
      },
      resourceServer,
    ),
  );
  app.get("/paid", (_req, res) => res.json({ content: CONTENT_CHANNEL }));
  const listening = await listen(app);
  return { ...listening, scheme };
}

function publicClient(state) {
  return createPublicClient({ chain: { ...baseSepolia, id: state.chainId }, transport: http(state.rpcUrl) });
}

// The official buyer: its channel state read from the chain on first sight, one deposit of
// DEPOSIT (within its spend cap), then vouchers. Returns the client and its scheme (which asks
// for the cooperative refund).
function buyer(state) {
  const network = v2Network(state);
  const account = privateKeyToAccount(state.payerPrivateKeys[state.channels.payer]);
  const scheme = new BatchClient(toClientEvmSigner(account, publicClient(state)), {
    depositStrategy: () => DEPOSIT,
  });
  const client = x402Client.fromConfig({
    schemes: [{ network, client: scheme }],
    spendControls: {
      allowedAssets: [{ network, asset: state.asset, maxAmountPerPayment: DEPOSIT }],
    },
  });
  return { client, scheme };
}

async function balanceOf(state, who) {
  return publicClient(state).readContract({
    address: state.asset,
    abi: erc20Abi,
    functionName: "balanceOf",
    args: [who],
  });
}

// `header` (a PAYMENT-SIGNATURE) sent again: to the resource server, and to our /verify (unless
// `toUs` is false: a voucher the server verified itself was never ours to refuse).
async function replay(state, server, header, toUs = true) {
  const res = await fetch(`${server.url}/paid`, { headers: { "PAYMENT-SIGNATURE": header } });
  const body = await res.text();
  const served = { status: res.status, served: body.includes(CONTENT_CHANNEL) };
  if (!toUs) return { server: served, verify: null };
  const payload = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
  const verify = await fetch(`${state.facilitatorUrl}/verify`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "X-Client-ID": state.clientId,
      "X-Client-Token": state.clientToken,
    },
    body: JSON.stringify({
      x402Version: 2,
      paymentPayload: payload,
      paymentRequirements: payload.accepted,
    }),
  });
  const answer = await verify.json();
  return {
    server: served,
    verify: { status: verify.status, isValid: answer.isValid, invalidReason: answer.invalidReason },
  };
}

// Refused by the resource server, and by our /verify when it was asked.
function refused(r) {
  return r.server.status !== 200 && !r.server.served && r.verify?.isValid !== true;
}

main(async () => {
  const state = loadState();
  const requests = Number(process.argv[3] ?? 100);
  const authorizer = process.argv[4] ?? "facilitator";
  const verify = process.argv[5] ?? "facilitator";
  const method = process.argv[6] ?? "eip3009";
  const { client: facilitator, calls } = facilitatorClient(state);
  const server = await serve(state, facilitator, authorizer, verify, method);
  try {
    const before = await balanceOf(state, state.channels.payTo);
    // The official fetch wrapper pays; the recording fetch under it keeps each header it sent.
    const sent = [];
    const recording = async (input, init) => {
      const req = new Request(input, init);
      const sig = req.headers.get("payment-signature");
      if (sig) sent.push(sig);
      return fetch(req);
    };
    const buying = buyer(state);
    const pay = wrapFetchWithPayment(recording, buying.client);
    const paid = [];
    for (let i = 0; i < requests; i++) {
      const res = await pay(`${server.url}/paid`);
      const body = await res.json();
      const raw = res.headers.get("payment-response");
      const settlement = raw ? decodePaymentResponseHeader(raw) : null;
      if (res.status !== 200 || body.content !== CONTENT_CHANNEL || settlement?.success !== true) {
        return { ok: false, request: i, status: res.status, body, settlement, sent: sent.length };
      }
      const header = sent[sent.length - 1];
      const type = JSON.parse(Buffer.from(header, "base64").toString("utf8")).payload.type;
      paid.push({ type, header, settlement });
    }
    const types = paid.map((p) => p.type);
    const vouchers = paid.map((p) => JSON.parse(Buffer.from(p.header, "base64").toString("utf8")));
    const last = vouchers[vouchers.length - 1].payload.voucher;
    const verifyCalls = calls.verify;
    // Replays before the claim: an earlier voucher and the last one. With `local` verification
    // the server alone saw them, so only it is asked.
    const toUs = verify === "facilitator";
    const replayed = {
      earlier: await replay(state, server, paid[Math.floor(requests / 2)].header, toUs),
      last: await replay(state, server, paid[requests - 1].header, toUs),
    };
    const afterPay = await balanceOf(state, state.channels.payTo);

    // The reference's way to claim and sweep: its channel manager, through our facilitator.
    const manager = server.scheme.createChannelManager(facilitator, v2Network(state), state.asset);
    const claimable = await manager.getClaimableVouchers();
    const { claims, settle } = await manager.claimAndSettle();
    const afterSweep = await balanceOf(state, state.channels.payTo);
    // After the claim: the last voucher again.
    replayed.afterClaim = await replay(state, server, paid[requests - 1].header);
    // The buyer takes back what it did not spend: a cooperative refund through the server,
    // which completes it (claims, nonce, signatures unless delegated to us) and settles it here.
    const payerAddress = privateKeyToAccount(state.payerPrivateKeys[state.channels.payer]).address;
    const payerBefore = await balanceOf(state, payerAddress);
    const refund = await buying.scheme.refund(`${server.url}/paid`);
    const refunded = (await balanceOf(state, payerAddress)) - payerBefore;

    const sum = BigInt(PRICE) * BigInt(requests);
    const ok =
      paid.length === requests &&
      types[0] === "deposit" &&
      types.slice(1).every((t) => t === "voucher") &&
      BigInt(last.maxClaimableAmount) === sum &&
      claims.length === 1 &&
      !!settle?.transaction &&
      afterPay === before &&
      afterSweep - before === sum &&
      refused(replayed.earlier) &&
      refused(replayed.last) &&
      refused(replayed.afterClaim) &&
      refund.success === true &&
      refunded === BigInt(DEPOSIT) - sum;
    return {
      ok,
      authorizer,
      verify,
      requests: paid.length,
      // What the resource server asked us: verifies during the paid requests, settles in all.
      verifyCalls,
      settleCalls: calls.settle,
      deposits: types.filter((t) => t === "deposit").length,
      // How the buyer authorized its deposit: `erc3009Authorization` or `permit2Authorization`.
      depositAuthorization: Object.keys(vouchers[0].payload.deposit?.authorization ?? {}),
      vouchers: types.filter((t) => t === "voucher").length,
      depositTransaction: paid[0].settlement.transaction,
      depositSettlement: paid[0].settlement,
      voucherSettlement: paid[requests - 1].settlement,
      channelId: last.channelId,
      lastMaxClaimable: last.maxClaimableAmount,
      claimable: claimable.map((c) => ({
        maxClaimableAmount: c.voucher.maxClaimableAmount,
        totalClaimed: c.totalClaimed,
      })),
      claims,
      settle,
      received: (afterSweep - before).toString(),
      receivedBeforeSweep: (afterPay - before).toString(),
      replayed,
      refund,
      refunded: refunded.toString(),
    };
  } finally {
    await server.close();
  }
});
