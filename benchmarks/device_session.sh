#!/usr/bin/env bash
# The one GPU session behind the bundled weights (about 9 minutes on an H100).
#
# Simulates the training sky on the machine's cores, trains the bundled fused
# model in whatever time is left inside BUDGET seconds, and leaves everything
# worth keeping in $OUT (logs.tgz; int8 and float16 weights in <16 MB parts). The held-out test
# skies are simulated and classified elsewhere (they need no GPU):
#   python -m benchmarks.evaluate_model TEST_SKY --weights RUN/weights
# With SPEED=1 it first simulates a 16-tile test sky and measures the
# classification speed on it (python -m benchmarks.benchmark_speed).
#
#   OUT=results bash benchmarks/device_session.sh            # on the GPU machine
#   QUICK=1 OUT=/tmp/out bash benchmarks/device_session.sh   # smoke run on a CPU
#
# Where astropy, photutils and GalSim are not installed, a site-packages
# tarball in .devsite/ (made with `pip download`, see CHANGELOG) is unpacked first.
set -u -o pipefail
export PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the folder that receives the results}"
BUDGET=${BUDGET:-540}     # seconds for the whole script
BUILD_AND_SAVE=${BUILD_AND_SAVE:-100}  # seconds kept for building the training set, calibrating, saving
mkdir -p "$OUT"
if [ -f .devsite/devsite.tgz ] && ! python3 -c "import galsim, photutils" 2>/dev/null; then
    tar xzf .devsite/devsite.tgz -C /tmp && export PYTHONPATH=/tmp/devsite:$PWD
else
    export PYTHONPATH=$PWD
fi
WORK=${WORK:-/tmp/astro_stargal_work}
if [ -n "${QUICK:-}" ]; then
    SCALE=(--quick --n-jobs 2)
    SPEED_ARGS=(--device cpu --sources 2000 --network-sources 512 --serial-sources 0)
    DEVICE=(--device cpu)
else
    SCALE=(--n-jobs 16)
    SPEED_ARGS=(--device cuda --sources 100000 --workers 16 --serial-sources 0)
    DEVICE=(--device cuda)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$OUT/machine.txt"

if [ -n "${SPEED:-}" ]; then
    python3 -m astro_stargal simulate "$WORK/speed_sky" --size 1024 --tiles 16 --seed 99 \
        --n-jobs 16 2>&1 | tail -2
    python3 -m benchmarks.benchmark_speed --sky-dir "$WORK/speed_sky" "${SPEED_ARGS[@]}" 2>&1 | tee "$OUT/speed.txt"
fi
python3 -m benchmarks.train_bundled_model "$WORK" "${SCALE[@]}" --skies-only --no-test 2>&1 | tee "$OUT/log_skies.txt" || exit 1
MINUTES=$(python3 -c "print(round(max(0.5, ($BUDGET - $SECONDS - $BUILD_AND_SAVE) / 60), 2))")
echo "training budget: $MINUTES min (${SECONDS} s used so far)"
python3 -m benchmarks.train_bundled_model "$WORK" "${SCALE[@]}" "${DEVICE[@]}" --skip-skies --no-test \
    --variants fused --max-minutes "${MAX_MINUTES:-$MINUTES}" 2>&1 | tee "$OUT/log_train.txt"

# At most 8 files come back: one tarball of logs and history, the int8 weights
# (2 parts) and the float weights of the best epoch as float16 (4 parts), for
# python -m benchmarks.quantisation_check.
RUN=$WORK/run_fused
python3 - "$RUN" <<'PYTHON'
import sys, torch
from safetensors.torch import save_file
state = torch.load(f"{sys.argv[1]}/checkpoint.pt", map_location="cpu", weights_only=True)["best_state"]
half = {name: (t.half() if t.is_floating_point() else t).contiguous() for name, t in state.items()}
save_file(half, f"{sys.argv[1]}/best_state_fp16.safetensors")
PYTHON
split -b 15m "$RUN/best_state_fp16.safetensors" "$OUT/float16_state.part-"
tar czf - -C "$RUN" weights | split -b 15m - "$OUT/weights.tgz.part-"
echo "session took $SECONDS s" | tee -a "$OUT/log_train.txt"
cp "$RUN"/history.csv "$RUN"/learning_curve.png "$OUT"/ 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$OUT" --remove-files $(cd "$OUT" && ls machine.txt log_*.txt speed.txt history.csv learning_curve.png 2>/dev/null)
ls -l "$OUT"
