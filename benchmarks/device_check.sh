#!/usr/bin/env bash
# Everything to check and measure on a CUDA machine, in one go, from the repository root:
#
#     bash benchmarks/device_check.sh [OUTDIR]        # OUTDIR defaults to $OUT, else ./device-check
#
# Needs CuPy and a CUDA build of PyTorch in the active Python (h5py, tqdm, pytest as for the tests);
# minirso is taken from this checkout (PYTHONPATH), so no install is needed.  Writes, under OUTDIR:
#   device.txt           GPU, CuPy / CUDA / torch versions
#   test_gpu.txt         tests/test_gpu.py, tests/kernels, test_nvrtc.py on CuPy (fused kernels vs plain code)
#   test_standin_vs_cupy.txt  tests/test_standin.py and test_standin_kernels.py against the real CuPy: every
#                        behaviour the CPU stand-in (tests/standin) models, checked on the real thing (the
#                        "cupy" cases); a failure there is a stand-in defect to fix in tests/standin
#   test_all_cupy.txt    the whole suite with MINIRSO_BACKEND=cupy
#   bench.txt / .json    python benchmarks/run.py --device gpu --cost-model: measured GPU times next to the
#                        cost model's prediction from the stand-in's counts (paste into benchmarks/README.md)
#   bench_plain_amc.*    the aMC cases with the fused kernels off (MINIRSO_FUSED=0), for comparison
# Each step runs even if an earlier one failed; the exit status is the number of failed steps.
set -u
out="${1:-${OUT:-device-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=0
step() {  # step NAME COMMAND...: run, keep stdout + stderr in $out/NAME.txt, count failures
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" >"$out/$name.txt" 2>&1; then
        failed=$((failed + 1))
        echo "   FAILED (see $out/$name.txt)"
    fi
    tail -n 5 "$out/$name.txt"
}
step device python -c "import cupy, torch; p = cupy.cuda.runtime.getDeviceProperties(0); \
print(p['name'].decode(), 'cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), \
'torch', torch.__version__, 'torch CUDA', torch.cuda.is_available())"
step test_gpu env MINIRSO_BACKEND=cupy python -m pytest -q -rs tests/test_gpu.py tests/kernels \
    tests/test_nvrtc.py
step test_standin_vs_cupy env MINIRSO_BACKEND=cupy python -m pytest -q -rs tests/test_standin.py \
    tests/test_standin_kernels.py
step test_all_cupy env MINIRSO_BACKEND=cupy python -m pytest -q
step bench python benchmarks/run.py --device gpu --cost-model --json "$out/bench.json"
step bench_plain_amc env MINIRSO_FUSED=0 python benchmarks/run.py --device gpu --only amc --json "$out/bench_plain_amc.json"
echo "$failed step(s) failed; outputs in $out"
exit "$failed"
