#!/usr/bin/env bash
# The one GPU session behind the bundled weights and the H100 speed figures (about 9 minutes).
#
# Simulates the training and test skies, measures classification speed on the
# test sky, trains the bundled fused model, evaluates it on both test skies,
# and leaves everything worth keeping in $OUT (weights split into <16 MB parts).
#
#   OUT=results bash benchmarks/device_session.sh            # on the GPU machine
#   QUICK=1 OUT=/tmp/out bash benchmarks/device_session.sh   # smoke run on a CPU
#
# Where astropy, photutils and GalSim are not installed, a site-packages
# tarball in .devsite/ (made with `pip download`, see CHANGELOG) is unpacked first.
set -u -o pipefail
export PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
if [ -f .devsite/devsite.tgz ] && ! python3 -c "import galsim, photutils" 2>/dev/null; then
    tar xzf .devsite/devsite.tgz -C /tmp && export PYTHONPATH=/tmp/devsite:$PWD
else
    export PYTHONPATH=$PWD
fi
WORK=${WORK:-/tmp/astro_stargal_work}
if [ -n "${QUICK:-}" ]; then
    SCALE=(--quick --n-jobs 2)
    SPEED=(--device cpu --sources 2000 --network-sources 512 --serial-sources 0)
    DEVICE=(--device cpu)
else
    SCALE=(--n-jobs 16)
    SPEED=(--device cuda --sources 100000 --workers 16 --serial-sources 0)
    DEVICE=(--device cuda)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$OUT/machine.txt"

python3 benchmarks/train_bundled_model.py "$WORK" "${SCALE[@]}" --skies-only 2>&1 | tee "$OUT/log_skies.txt" || exit 1
python3 benchmarks/benchmark_speed.py --sky-dir "$WORK/test_sky" "${SPEED[@]}" 2>&1 | tee "$OUT/speed.txt"
python3 benchmarks/train_bundled_model.py "$WORK" "${SCALE[@]}" "${DEVICE[@]}" --skip-skies \
    --variants fused --max-minutes "${MAX_MINUTES:-3.3}" 2>&1 | tee "$OUT/log_train.txt"

RUN=$WORK/run_fused
cp "$RUN"/history.csv "$RUN"/test_metrics.json "$RUN"/learning_curve.png "$OUT"/ 2>/dev/null
tar czf - -C "$RUN" weights | split -b 15m - "$OUT/weights.tgz.part-"
ls -l "$OUT"
