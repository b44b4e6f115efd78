#!/usr/bin/env bash
# Build the local Solana cluster runner (`devnet/surfnet/`: an offline surfpool-core surfnet,
# its own workspace and Cargo.lock, ~1,000 crates) into $CARGO_TARGET_DIR/debug/surfnet, where
# the tests and `dev` find it (devnet::solana::surfnet_path; or set X402_SURFNET_BIN).
# Cold: see the figures in docs/ARCHITECTURE.md ("The local Solana cluster"); afterwards a
# no-op of a few seconds. SKIP_SURFNET=1 skips it (Solana tests then fail, `dev` serves no
# Solana).
set -euo pipefail
cd "$(dirname "$0")/../devnet/surfnet"
if [ -n "${SKIP_SURFNET:-}" ]; then
  echo "surfnet: skipped (SKIP_SURFNET)"
  exit 0
fi
export CARGO_TARGET_DIR="${SURFNET_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/x402-facilitator/target}}"
bin="$CARGO_TARGET_DIR/debug/surfnet"
quiet=--quiet
if [ ! -x "$bin" ]; then
  echo "building the surfnet runner into $CARGO_TARGET_DIR (cold: ~10 min on 2 cores, once)"
  quiet=
fi
cargo build --locked $quiet --bin surfnet
echo "surfnet: $bin"
