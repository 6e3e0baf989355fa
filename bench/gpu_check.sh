#!/usr/bin/env bash
# The GPU check (docs/scaling.md, "GPU"): the benchmark (in-process medians of 3, a cProfile, whole processes),
# the 50-task scaling run alone on the machine, and the whole test suite (the `gpu` tests included).
# Logs and JSON go to <out>. Name parts to run only those, in the order named (default: all, in this order):
#   bash bench/gpu_check.sh <data root holding MNIST/raw> <out dir> [bench] [profile] [scaling] [startup] [tests]
# On an H200 machine (16 cores): bench 70 s, profile 30 s, scaling about 230 s, startup about 40 s per repeat,
# tests more than 280 s with 14 workers (needs pytest-xdist). Give each its own run where a
# device lease is shorter than that; SCALING_TIMEOUT and TESTS_TIMEOUT cap the two long ones, and
# TEST_PATHS (e.g. "tests/test_router.py tests/test_ddp.py") runs part of the suite.
set -uo pipefail
root=${1:-data}
out=${2:-bench/results}
parts=${*:3}
parts=${parts:-bench profile scaling startup tests}
mkdir -p "$out"
export WANDB_MODE=offline PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/bench.log"
for part in $parts; do
  case $part in
    bench) python3 -m bench --root "$root" --repeats 3 --skip tokens startup --out "$out" 2>&1 | tee -a "$out/bench.log" ;;
    profile) python3 -m bench.profile --root "$root" >"$out/profile.log" 2>&1 ;;
    scaling) timeout "${SCALING_TIMEOUT:-300}" python3 -m bench.scaling --root "$root" --tasks 50 --out "$out" 2>&1 | tee "$out/scaling.log" ;;
    startup) python3 -m bench --root "$root" --repeats 3 --skip workloads tokens --out "$out" 2>&1 | tee -a "$out/bench.log" ;;
    tests)
      timeout "${TESTS_TIMEOUT:-400}" python3 -m pytest -v --tb=short -n "${TEST_WORKERS:-14}" -m 'not slow' -p no:cacheprovider ${TEST_PATHS:-} >"$out/tests.log" 2>&1
      echo "tests exit $?"
      grep -E "passed|failed|error" "$out/tests.log" | tail -3
      grep -E " (FAILED|ERROR) " "$out/tests.log" | head -30 ;;
    *) echo "unknown part '$part': choose from bench profile scaling startup tests" >&2; exit 2 ;;
  esac
done
