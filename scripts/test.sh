#!/usr/bin/env bash
# The full test run: installs what the consumer tests drive, starts the
# daemons, then runs lint, the type check and every test. With --unit, only
# the fast tests that need no daemon or consumer program.
set -euo pipefail
cd "$(dirname "$0")/.."

unit_only=false
[ "${1:-}" = "--unit" ] && unit_only=true

if [ ! -d node_modules ]; then npm ci; fi

if ! $unit_only; then
  bash scripts/install-deps.sh
  bash scripts/services.sh start
  # Quiet on the way out: the runner's summary must stay the last lines.
  trap 'bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
fi

echo "== build" >&2
npm run --silent build
echo "== lint" >&2
npx eslint .
echo "== type check" >&2
npx tsc -p tsconfig.json --noEmit

if $unit_only; then
  mapfile -t files < <(find test -name '*.test.ts' -not -path 'test/consumers/*' | sort)
else
  mapfile -t files < <(find test -name '*.test.ts' | sort)
fi
echo "== tests (${#files[@]} files)" >&2
node --import tsx --test --test-reporter=spec "${files[@]}"
