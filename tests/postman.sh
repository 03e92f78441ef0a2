#!/usr/bin/env bash
# Runs the Postman collection (postman/duckspread.postman_collection.json) with
# newman against a running duckspread server with the demo model loaded. It does
# not start the server: the black-box test harness does, then calls this script.
#
#   DS_BASE_URL   the server (default http://127.0.0.1:8080)
#   DS_API_KEY    the key, when the server runs with --api-key (default: none)
#   NEWMAN_ARGS   extra newman arguments (e.g. "--bail" or "--folder '3 Update a parent (Brand X)'")
#
# Prints newman's run summary; exits non-zero when any request or assertion fails.
set -euo pipefail
cd "$(dirname "$0")/.."

newman=node_modules/.bin/newman
if [[ ! -x $newman ]]; then
    echo "postman.sh: $newman is missing: run 'npm ci' first" >&2
    exit 2
fi

base=${DS_BASE_URL:-http://127.0.0.1:8080}
args=(run postman/duckspread.postman_collection.json
      --env-var "baseUrl=${base%/}"
      --reporters cli
      --timeout-request 30000
      --timeout 600000
      --color off
      --disable-unicode)
if [[ -n ${DS_API_KEY:-} ]]; then
    args+=(--env-var "apiKey=$DS_API_KEY")
fi
if [[ -n ${NEWMAN_ARGS:-} ]]; then
    eval "extra=($NEWMAN_ARGS)"
    args+=("${extra[@]}")
fi

echo "postman.sh: newman against $base"
exec "$newman" "${args[@]}"
