#!/usr/bin/env bash
# generate.sh writes the JSON schemas kubeconform validates deploy/k8s against,
# so that `make test` needs no network (kubeconform downloads its schemas by
# default). They are cut from the Kubernetes OpenAPI definitions (Kubernetes
# 1.28-era, Apache-2.0) that kubeconform's own Go module ships as a test
# fixture: for each kind below, the closure of the definitions it references,
# without descriptions, and strict (an object with properties allows no
# others, as kubeconform's -strict schemas do). Rerun it after adding a kind:
#   GOBIN=$PWD/.tools go install github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0
#   deploy/k8s/schemas/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
defs="$(go env GOMODCACHE)/github.com/yannh/kubeconform@v0.7.0/fixtures/cache/6dc6142c64b944d783a3e783526114da8e747a14a11d8b32dd1f12e2d89a8330"
[ -f "$defs" ] || go mod download github.com/yannh/kubeconform@v0.7.0
python3 - "$defs" <<'PY'
import json, sys
defs = json.load(open(sys.argv[1]))["definitions"]
kinds = {  # file name (kubeconform's {{.ResourceKind}}{{.KindSuffix}}) -> definition
    "namespace-v1": "io.k8s.api.core.v1.Namespace",
    "configmap-v1": "io.k8s.api.core.v1.ConfigMap",
    "secret-v1": "io.k8s.api.core.v1.Secret",
    "service-v1": "io.k8s.api.core.v1.Service",
    "serviceaccount-v1": "io.k8s.api.core.v1.ServiceAccount",
    "statefulset-apps-v1": "io.k8s.api.apps.v1.StatefulSet",
    "poddisruptionbudget-policy-v1": "io.k8s.api.policy.v1.PodDisruptionBudget",
    "networkpolicy-networking-v1": "io.k8s.api.networking.v1.NetworkPolicy",
}

def clean(node, refs):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "description" and isinstance(v, str):
                continue
            if k == "$ref":
                refs.append(v.split("/")[-1])
            out[k] = clean(v, refs) if k not in ("enum", "required") else v
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [clean(v, refs) for v in node]
    return node

for name, root in kinds.items():
    seen, todo, closure = set(), [root], {}
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        refs = []
        closure[d] = clean(defs[d], refs)
        todo.extend(refs)
    group_version_kind = defs[root]["x-kubernetes-group-version-kind"][0]
    schema = {"$schema": "http://json-schema.org/schema#", "$ref": "#/definitions/" + root, "definitions": closure}
    # kind and apiVersion are pinned, as in kubeconform's published schemas.
    props = closure[root]["properties"]
    gv = (group_version_kind["group"] + "/" if group_version_kind["group"] else "") + group_version_kind["version"]
    props["apiVersion"] = {"type": "string", "enum": [gv]}
    props["kind"] = {"type": "string", "enum": [group_version_kind["kind"]]}
    with open(name + ".json", "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")
    print(name, len(closure), "definitions")
PY
