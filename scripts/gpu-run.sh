#!/usr/bin/env bash
# Everything waiting for a GPU, in one command, on the lent GPU machine (see
# ../shared/gpu/README.md): builds the addon with nvcc for the device's architecture,
# runs the GPU tests, the GPU benchmarks (recorded as bench/results/<date>-<gpu>.json,
# DESIGN.md §8), the bf16 convergence check against PyTorch and the transformers
# interop check, and copies logs and results to $OUT.
#
#   here:  npm install && ../shared/gpu/pack.sh
#   there: source .gpu/unpack.sh && NODEGRAD_COMMIT=<sha> bash scripts/gpu-run.sh STEP [bench flags]
#
# Steps can be run one per device call (each must end inside the call's 10 minutes);
# the build is kept between calls while the machine stays warm. A full bench takes
# longer than one call: split it, e.g.
#   bench --only overhead,elementwise,gemm,softmax,layernorm,adamw
#   bench --only attention,train-gpt
# (rows of the same commit and kernels are merged into one bench/results/<date>-<gpu>.json).
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:-all}"
shift || true
benchargs=("$@")   # passed to the bench step, e.g. --quick or --only gemm,attention
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export NODEGRAD_CUDA_ARCHS="${NODEGRAD_CUDA_ARCHS:-90a-real}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
status=0

run_build() {
  echo "== build (archs $NODEGRAD_CUDA_ARCHS)"
  { time node scripts/build-native.cjs; } > "$OUT/build.log" 2>&1 || { status=1; tail -40 "$OUT/build.log"; return 1; }
  tail -3 "$OUT/build.log"
  node -e "const ng=require('node-gyp-build')('.');const c=ng.cudaInfo();console.log(JSON.stringify(c));if(!c.deviceCount)process.exit(1)" \
    || { echo "no usable CUDA device after the build"; status=1; return 1; }
}
run_test() {
  echo "== npm run test:gpu"
  { echo "# npm run test:gpu, $(date -u +%FT%TZ), commit ${NODEGRAD_COMMIT:-unknown}"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader;
    npx vitest run test/gpu --reporter=verbose 2>&1; } > "$OUT/test-gpu.log"; local rc=$?
  tail -15 "$OUT/test-gpu.log"
  [ $rc -eq 0 ] || status=1
}
run_bench() {
  echo "== npm run bench -- --gpu-only"
  local date; date=$(date -u +%F)
  npm run bench -- --gpu-only "${benchargs[@]}" 2>&1 | tee -a "$OUT/bench-gpu.log" | tail -80
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  cp bench/results/"$date"-*.json "$OUT/" 2>/dev/null || true
}
run_converge() {
  echo "== convergence check (GPT-2 124M, bf16, nodegrad vs PyTorch from the same weights)"
  node --import ./scripts/ts-loader.mjs bench/converge.ts --device cuda --steps 200 2>&1 | tee "$OUT/converge.log" | tail -5
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  cp bench/results/*-converge.json bench/results/*-converge.svg "$OUT/" 2>/dev/null || true
}
run_interop() {
  echo "== transformers interop"
  LOG="$OUT/interop.log" bash test/interop/run.sh "$OUT/interop-models" > /dev/null 2>&1 || status=1
  tail -20 "$OUT/interop.log"
}

case "$step" in
  build) run_build ;;
  test) run_test ;;
  bench) run_bench ;;
  interop) run_interop ;;
  converge) run_converge ;;
  all) run_build && { run_test; run_bench; run_converge; run_interop; } ;;
  *) echo "usage: scripts/gpu-run.sh [build|test|bench|converge|interop|all] [bench flags: --quick, --only a,b]"; exit 2 ;;
esac
exit $status
