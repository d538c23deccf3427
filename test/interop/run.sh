#!/usr/bin/env bash
# Interop check between nodegrad and Python transformers, both ways:
#   1. make_models.py  builds random-weight GPT-2 / BERT models in transformers and saves them
#   2. check.ts        loads them in nodegrad, compares outputs (1e-4), exports with savePretrained
#   3. check_export.py loads nodegrad's exports in transformers: no missing/unexpected keys,
#                      no warnings, same outputs
# Needs python3 with torch + transformers and a built addon (npm run build:native:cpu, or set
# NODEGRAD_ADDON). Writes the whole transcript to $LOG (default test/interop/interop.log).
#
#   test/interop/run.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-$(mktemp -d -t nodegrad-interop-XXXXXX)}"
LOG="${LOG:-test/interop/interop.log}"
mkdir -p "$OUT" "$(dirname "$LOG")"
{
  echo "# nodegrad <-> transformers interop check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- lib 2>/dev/null || echo ' (lib/ modified)')"
  echo "node $(node --version); $(python3 -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)' 2>&1)"
  echo "out: $OUT"
  status=0
  echo; echo "## make_models.py"
  python3 test/interop/make_models.py "$OUT" || status=$?
  if [ "$status" -eq 0 ]; then
    echo; echo "## check.ts (transformers -> nodegrad)"
    node --import ./scripts/ts-loader.mjs test/interop/check.ts "$OUT" || status=$?
    echo; echo "## check_export.py (nodegrad -> transformers)"
    python3 test/interop/check_export.py "$OUT" || status=$?
  fi
  echo; echo "exit status: $status"
  exit "$status"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
