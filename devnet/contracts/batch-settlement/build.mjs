// Regenerates artifacts.json (committed) from the Solidity beside it, with npm `solc` 0.8.37,
// and adds Permit2's canonical runtime from npm `@uniswap/v4-periphery` (the Permit2 collector
// calls it). Run from the repository root after scripts/install-tools.sh:
//   node devnet/contracts/batch-settlement/build.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "../../../tools/node_modules");
const require = createRequire(join(modules, "solc/package.json"));
const solc = require("solc");

function findImports(path) {
  const prefix = "@openzeppelin/contracts/";
  if (path.startsWith(prefix)) {
    return { contents: readFileSync(join(modules, path), "utf8") };
  }
  return { error: `not found: ${path}` };
}

const files = ["X402BatchSettlement.sol", "DepositCollectors.sol"];
const input = {
  language: "Solidity",
  sources: Object.fromEntries(
    files.map((f) => [f, { content: readFileSync(join(here, f), "utf8") }]),
  ),
  settings: {
    optimizer: { enabled: true, runs: 200 },
    viaIR: true,
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (out.errors ?? []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
function runtime(file, name) {
  const code = out.contracts[file][name].evm.deployedBytecode;
  // Placed with anvil_setCode, no constructor runs: an immutable would stay zero.
  if (Object.keys(code.immutableReferences ?? {}).length) {
    throw new Error(`${name} has immutables`);
  }
  return `0x${code.object}`;
}
const deploy = readFileSync(
  join(modules, "@uniswap/v4-periphery/lib/permit2/test/utils/DeployPermit2.sol"),
  "utf8",
);
const artifacts = {
  solc: solc.version(),
  batchSettlementRuntime: runtime("X402BatchSettlement.sol", "X402BatchSettlement"),
  erc3009CollectorRuntime: runtime("DepositCollectors.sol", "ERC3009DepositCollector"),
  permit2CollectorRuntime: runtime("DepositCollectors.sol", "Permit2DepositCollector"),
  permit2Runtime: `0x${deploy.match(/hex"([0-9a-f]+)"/)[1]}`,
};
writeFileSync(join(here, "artifacts.json"), `${JSON.stringify(artifacts, null, 2)}\n`);
console.log(`artifacts.json written (solc ${artifacts.solc})`);
