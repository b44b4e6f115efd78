// Pay through a running `x402-dev` (scripts/run.sh) with the official x402 clients, v1 and v2:
// each script starts a small Express resource server that charges 0.01 USDC per request and
// uses this facilitator (with the dev client key), then a buyer pays it with a dev payer key.
//
//   scripts/run.sh                              # terminal 1: writes dev-state.json
//   node tools/examples/pay.mjs dev-state.json  # terminal 2
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const state = process.argv[2] ?? "dev-state.json";
let failed = false;
for (const version of ["v1", "v2"]) {
  const script = fileURLToPath(new URL(`../e2e/${version}.mjs`, import.meta.url));
  const run = spawnSync(process.execPath, [script, state], { encoding: "utf8" });
  const last = run.stdout.trim().split("\n").pop();
  let result;
  try {
    result = JSON.parse(last);
  } catch {
    result = { ok: false, error: run.stderr || last };
  }
  failed ||= !result.ok;
  console.log(
    result.ok
      ? `${version}: paid, HTTP ${result.status}, settled in ${result.transaction} on ${result.network}`
      : `${version}: FAILED ${JSON.stringify(result)}`,
  );
}
process.exitCode = failed ? 1 : 0;
