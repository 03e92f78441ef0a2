#!/usr/bin/env bash
# Lints web/openapi.json with Redocly CLI under web/redocly.yaml (the
# recommended rules as errors, plus example validation: every example must match
# its schema) and the few per-operation exceptions in web/.redocly.lint-ignore.yaml.
# Exits non-zero on any problem.
set -euo pipefail
cd "$(dirname "$0")/.."

redocly=node_modules/.bin/redocly
if [[ ! -x $redocly ]]; then
    echo "lint-openapi.sh: $redocly is missing: run 'npm ci' first" >&2
    exit 2
fi
node -e 'JSON.parse(require("fs").readFileSync("web/openapi.json", "utf8"))' ||
    { echo "lint-openapi.sh: web/openapi.json is not valid JSON" >&2; exit 1; }

# No telemetry or update checks: the build machines reach only package registries.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1
"$redocly" lint --config web/redocly.yaml --format stylish web/openapi.json
