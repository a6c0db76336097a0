#!/usr/bin/env bash
# On a bare lent GPU machine: install the wheels the repo carries in .whl/ (benchmarks/gpu_check_wheels.sh
# fetches them) and the studio (no index, no dependencies: the machine's torch, transformers and
# onnxruntime stay), then run the GPU check. Usage: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]
set -u
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]}"; shift
cd "$(dirname "$0")/.." || exit 2
t0=$(date +%s)
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site .whl/*.whl || exit 2
  export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || echo "gpu_check.sh: pip install -e . failed; the check registers the built-in plugins itself"
echo "gpu_check.sh: install took $(( $(date +%s) - t0 )) s"
PYTHONUNBUFFERED=1 exec python3 benchmarks/gpu_check.py "$out" "$@"
