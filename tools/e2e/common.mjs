// Shared by the end-to-end scripts: read the state file that `x402-dev --state-file` writes,
// serve a resource server on 127.0.0.1, and report one JSON line.
import { readFileSync } from "node:fs";

export const PAY_TO = "0x0000000000000000000000000000000000000e2e";
export const PRICE = "10000"; // 0.01 USDC (6 decimals)

export function loadState() {
  const path = process.argv[2] ?? "dev-state.json";
  return JSON.parse(readFileSync(path, "utf8"));
}

// Our facilitator authenticates every call with the client key's two headers.
export function clientKeyHeaders(state) {
  const h = { "X-Client-ID": state.clientId, "X-Client-Token": state.clientToken };
  return async () => ({ verify: h, settle: h, supported: h });
}

// Listen on an ephemeral loopback port; resolves to { url, close }.
export function listen(app) {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
    server.on("error", reject);
  });
}

// Buy `${url}/paid` with a payment-wrapped fetch, and read the settlement back from the
// response header (`header` names it; `decode` is the client library's decoder).
export async function buy(pay, url, header, decode) {
  const res = await pay(`${url}/paid`);
  const body = await res.json();
  const raw = res.headers.get(header);
  const settlement = raw ? decode(raw) : null;
  return {
    ok: res.status === 200 && settlement?.success === true,
    status: res.status,
    body,
    transaction: settlement?.transaction,
    network: settlement?.network,
    payer: settlement?.payer,
  };
}

// The last stdout line is the machine-readable result.
export function report(result) {
  console.log(JSON.stringify(result));
  process.exitCode = result.ok ? 0 : 1;
}

export async function main(run) {
  try {
    report(await run());
  } catch (e) {
    console.error(e);
    report({ ok: false, error: String(e?.message ?? e) });
  }
}
