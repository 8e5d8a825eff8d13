#!/usr/bin/env bash
# Regenerates the chart's generated files (CRD templates, RBAC rules, values schema, README
# values table) and manifests/install.yaml. `make generate` runs it; `--check` only reports.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python=$root/.venv/bin/python; else python=python3; fi
fi
exec "$python" "$root/hack/chart_generate.py" "$@"
