#!/usr/bin/env bash
# schemathesis (pinned, from PyPI, in its own venv) against /openapi.json of a live server:
# `x402-dev` (a local chain serving base-sepolia, a fresh SQLite file) on a free
# 127.0.0.1 port, with a user's access token, the admin token, a client key and a scrape token
# (schemathesis.toml beside this file), so that authenticated operations are exercised too.
# The server and the chain are stopped at the end. Results: BENCHMARKS.md, "API conformance".
#
#   tools/schemathesis/run.sh                      # every check, every phase
#   tools/schemathesis/run.sh --max-examples 20    # more options for `schemathesis run`
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tools/schemathesis
version=4.32.5
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402-facilitator/target}"

venv="${SCHEMATHESIS_VENV:-$HOME/.cache/x402-facilitator/schemathesis-$version}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi
scripts/install-tools.sh >/dev/null
cargo build --locked --quiet -p x402-bench --bin x402-dev

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export X402_METRICS_TOKEN="schemathesis-scrape-token-0123456789abcdef"
# Port 0: the server picks a free one and writes its URL to the state file once it serves.
APP__SERVER__PORT=0 \
APP__AUTH__ACCESS_TOKEN_TTL_SECS=86400 \
APP__METRICS__PROMETHEUS_TOKEN="$X402_METRICS_TOKEN" \
APP__LOG__FORMAT=json \
  "$CARGO_TARGET_DIR/debug/x402-dev" --state-file "$work/state.json" \
  >"$work/server.log" 2>&1 &
server=$!
state() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/state.json" "$1"; }
for _ in $(seq 1 240); do
  [ -s "$work/state.json" ] && state facilitatorUrl >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.5
done
base="$(state facilitatorUrl)"
base="${base%/api/v1}"
export X402_ADMIN_TOKEN="$(state adminToken)"
export X402_CLIENT_ID="$(state clientId)"
export X402_CLIENT_TOKEN="$(state clientToken)"

# A user of its own (not the dev admin): what schemathesis creates or deletes is its own.
creds='{"email":"schemathesis@example.com","password":"schemathesis-password"}'
curl -fsS -H 'Content-Type: application/json' -d "$creds" "$base/api/v1/signup" >/dev/null
export X402_ACCESS_TOKEN="$(curl -fsS -H 'Content-Type: application/json' -d "$creds" \
  "$base/api/v1/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["access_token"])')"

# A real settlement of the client key (the official x402 v1 clients pay a 0.01 USDC resource),
# so that GET /api/v1/settlements/{tx} answers one; and a spare key of the user, the one
# PATCH /admin/clients/{id} changes (not the key the x402 operations use).
export X402_SETTLEMENT_TX="$(node tools/e2e/v1.mjs "$work/state.json" | tail -n 1 |
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["ok"], r; print(r["transaction"])')"
export X402_SPARE_CLIENT_ID="$(curl -fsS -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $X402_ACCESS_TOKEN" -d '{"title":"spare"}' "$base/api/v1/clients" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["client"]["clientId"])')"

echo "schemathesis $version against $base/openapi.json (settlement $X402_SETTLEMENT_TX)"
status=0
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/openapi.json" \
  --checks all "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "server log: last lines" >&2
  tail -n 20 "$work/server.log" >&2
fi
exit "$status"
