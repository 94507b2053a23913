#!/usr/bin/env bash
# test.sh runs every check the project holds itself to: formatting, vet, unit
# tests with the race detector, the integration and end-to-end tests against a
# real ClickHouse (a private one is started; set GRIDWATCH_TEST_CLICKHOUSE_ADDR
# to use yours), and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi

echo "== go vet"
go vet ./...

echo "== unit tests (race detector)"
go test -race -short -count=1 ./...

echo "== integration and end-to-end tests (real ClickHouse)"
go test -count=1 -timeout 20m ./...

echo "== fuzz targets (${FUZZTIME:=10s} each)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "-- $pkg $target"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
  done
done
echo "all checks passed"
