// Pay through a running `x402-dev` (scripts/run.sh) with the official x402 clients, v1 and v2
// on the local EVM chain, and v2 on the local Solana cluster (`@x402/svm`, when dev serves it):
// each script starts a small Express resource server that charges 0.01 USDC per request and
// uses this facilitator (with the dev client key), then a buyer pays it with a dev payer key.
//
//   scripts/run.sh                              # terminal 1: writes dev-state.json
//   node tools/examples/pay.mjs dev-state.json  # terminal 2
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const state = process.argv[2] ?? "dev-state.json";
const runs = ["v1", "v2"];
if (JSON.parse(readFileSync(state, "utf8")).solana) runs.push("svm");
else console.log("svm: skipped (dev serves no Solana cluster: scripts/build-surfnet.sh)");
let failed = false;
for (const version of runs) {
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
