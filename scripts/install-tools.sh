#!/usr/bin/env bash
# Install the npm tooling in tools/ (anvil, Circle's USDC artifacts, the official x402 clients)
# from the committed lockfile, and build the local Solana cluster runner (scripts/build-surfnet.sh).
# Idempotent: does nothing when node_modules is newer than the lock and the runner is built.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
cd "$scripts/../tools"
marker=node_modules/.package-lock.json
if [ -L node_modules ]; then
  # Another checkout's install (a git worktree): `npm ci` would empty it through the link.
  echo "tools/node_modules is a link to $(readlink node_modules): not reinstalling"
elif [ ! -f "$marker" ] || [ package-lock.json -nt "$marker" ]; then
  echo "installing tools/ (npm ci)"
  # --ignore-scripts: nothing here needs an install script (anvil ships as a plain binary).
  npm ci --no-audit --no-fund --ignore-scripts
fi
anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
[ -x "$anvil" ] || { echo "anvil missing at tools/$anvil" >&2; exit 1; }
echo "anvil: tools/$anvil ($("$anvil" --version | head -1))"
"$scripts/build-surfnet.sh"
