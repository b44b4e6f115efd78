#!/usr/bin/env bash
# Run the facilitator on its embedded default: a local chain (anvil standing in for
# base-sepolia, with Circle's real USDC) and a fresh SQLite file, with a dev user and client
# key; connection details and payer keys go to ./dev-state.json. That is `x402-dev`, a binary
# of the tools crate (benches/): the server binary carries no dev-chain code.
# Arguments replace the default command: `scripts/run.sh serve` runs the plain server
# (`x402-facilitator`) on ./config.yaml (SQLite file x402-facilitator.sqlite),
# `scripts/run.sh migrate` migrates, `scripts/run.sh dev [--state-file F]` is the default's.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402-facilitator/target}"
scripts/install-tools.sh
if [ "$#" -eq 0 ]; then
  set -- dev --state-file dev-state.json
fi
if [ "$1" = dev ]; then
  shift
  exec cargo run --release --locked -p x402-bench --bin x402-dev -- "$@"
fi
exec cargo run --release --locked --bin x402-facilitator -- "$@"
