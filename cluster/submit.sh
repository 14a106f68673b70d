#!/usr/bin/env bash
# Submit a catalog to a running Ray cluster: cluster/submit.sh CATALOG OUT LANGS [extra raydub args]
# RAY_ADDRESS must point at the cluster's dashboard, e.g. http://head:8265.
set -euo pipefail
cd "$(dirname "$0")/.."
catalog=$1 out=$2 langs=$3; shift 3
exec ray job submit --runtime-env cluster/runtime_env.yaml -- \
  python -m pipelines.localize --catalog "$catalog" --out "$out" --langs "$langs" \
  --config cluster/cluster.toml "$@"
