#!/usr/bin/env bash
# check-deploy.sh checks the deploy files with the tools that read them, none
# of which needs an engine or the network (make test runs it):
#   - Kubernetes manifests: kubeconform -strict, against the JSON schemas
#     vendored in deploy/k8s/schemas (kubeconform downloads its schemas by
#     default, which cannot be done here; generate.sh there makes them);
#   - compose files: docker-compose config (Debian's docker-compose parses
#     and validates a file without a Docker engine), which also must refuse
#     to start without an API token;
#   - the HAProxy config: haproxy -c;
#   - the systemd unit: systemd-analyze verify, and its exposure score
#     (systemd-analyze security --offline) at most 2.0 of 10;
#   - Grafana dashboards: valid JSON whose every gridwatch_* metric is one
#     the code defines, on a datasource the provisioning defines;
#   - the Dockerfile's build: a static binary with CGO off.
# Whether they set only real config keys is TestDeployFilesMatchTheConfig
# (internal/server).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
fail() { echo "check-deploy: $*" >&2; exit 1; }

echo "-- kubeconform"
schemas='deploy/k8s/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json'
"$TOOLS/kubeconform" -strict -summary -schema-location "$schemas" deploy/k8s/*.yaml
# The validator must be able to fail: a field no StatefulSet has is refused.
bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystm: true/' deploy/k8s/statefulset.yaml > "$bad"
if "$TOOLS/kubeconform" -strict -schema-location "$schemas" "$bad" >/dev/null 2>&1; then
  fail "kubeconform accepted a misspelt field: the schemas check nothing"
fi

echo "-- docker-compose config"
for f in deploy/compose/*.yml; do
  CLICKHOUSE_PASSWORD=x GRIDWATCH_ADMIN_TOKEN=0123456789abcdef GRAFANA_ADMIN_PASSWORD=x MQTT_GRIDWATCH_PASSWORD=x \
    docker-compose -f "$f" config -q || fail "$f: docker-compose config failed"
  if env -u GRIDWATCH_ADMIN_TOKEN CLICKHOUSE_PASSWORD=x GRAFANA_ADMIN_PASSWORD=x MQTT_GRIDWATCH_PASSWORD=x \
    docker-compose -f "$f" config -q >/dev/null 2>&1; then
    fail "$f: accepted without GRIDWATCH_ADMIN_TOKEN"
  fi
  echo "$f: valid"
done

echo "-- haproxy -c"
haproxy -c -q -f deploy/haproxy/haproxy.cfg 2>&1 | grep -v 'could not resolve address' || true
haproxy -c -q -f deploy/haproxy/haproxy.cfg >/dev/null 2>&1 || fail "deploy/haproxy/haproxy.cfg is invalid"

echo "-- systemd-analyze"
unit_dir=$(mktemp -d)
trap 'rm -f "$bad"; rm -rf "$unit_dir"' EXIT
# The unit names /usr/local/bin/gridwatch, which verify wants to exist.
sed "s#/usr/local/bin/gridwatch#$(command -v true)#" deploy/systemd/gridwatch.service > "$unit_dir/gridwatch.service"
out=$(systemd-analyze verify "$unit_dir/gridwatch.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
systemd-analyze security --offline=yes --threshold=20 "$unit_dir/gridwatch.service" | tail -1 ||
  fail "the unit's exposure is above 2.0"

echo "-- grafana dashboards"
python3 - <<'PY'
import glob, json, re, subprocess, sys
defined = set(re.findall(r'"(gridwatch_[a-z0-9_]+)"', subprocess.run(
    "git ls-files -z '*.go' | xargs -0 grep -h -o '\"gridwatch_[a-z0-9_]*\"' --exclude='*_test.go'",
    shell=True, capture_output=True, text=True, check=True).stdout))
uids = set(re.findall(r'uid: (\S+)', open("deploy/grafana/provisioning/datasources/gridwatch.yml").read()))
bad = []
for f in sorted(glob.glob("deploy/grafana/dashboards/*.json")):
    d = json.load(open(f))
    used = set()
    for p in d["panels"]:
        for t in p.get("targets", []):
            if t["datasource"]["uid"] not in uids:
                bad.append(f"{f}: panel {p['title']!r} uses datasource {t['datasource']['uid']}")
            for m in re.findall(r"gridwatch_[a-z0-9_]+", t.get("expr", "")):
                used.add(re.sub(r"_(bucket|sum|count)$", "", m))
    for m in sorted(used - defined):
        bad.append(f"{f}: {m} is no metric the code defines")
    print(f"{f}: {len(d['panels'])} panels, {len(used)} metrics")
if bad:
    sys.exit("\n".join(bad))
PY

echo "-- static build (the Dockerfile's)"
bin=$(mktemp -d)/gridwatch
# Without the Dockerfile's -trimpath: that would rebuild every package
# (another build cache key); static or not, the result is the same.
CGO_ENABLED=0 go build -o "$bin" ./cmd/gridwatch
if ldd "$bin" >/dev/null 2>&1; then fail "the CGO-off build is not static"; fi
rm -rf "$(dirname "$bin")"
echo "deploy files: all checks passed"
