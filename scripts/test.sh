#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the npm tooling (anvil, Circle's USDC
# artifacts, the official x402 clients), makes sure PostgreSQL runs on 127.0.0.1:5432, then runs
# every test of the workspace (unit, SQLite and PostgreSQL integration, real chain).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402-facilitator/target}"

if [ -x scripts/install-tools.sh ]; then
  scripts/install-tools.sh
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# Headless Chromium renders /docs (tests/api/docs.rs) and drives the console (tests/api/console.rs)
# (Debian's package; fails without it).
if ! command -v chromium >/dev/null; then
  echo "installing chromium (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Two cores: keep concurrent chain/database tests bounded (at 4 threads, load tests beside each
# other starved the 5-connection test pools and stalled settles ~10 s in CI).
exec cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-2}" "$@"
