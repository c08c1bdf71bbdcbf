#!/usr/bin/env bash
# The GPU half of "Training on a GPU" (README): train b0_ensemble_112_gpu from a face pack for a fixed
# number of minutes and leave the deploy checkpoint, its JSON, the metrics and the log in OUT_DIR.
# Run from the repository root on the GPU machine; needs python3 with torch (CUDA), lightning,
# numpy, opencv and pyyaml. Python packages missing there may sit as wheels in .whl/ (README).
#   scripts/gpu_train.sh PACK_DIR OUT_DIR [MINUTES] [extra train arguments...]
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: scripts/gpu_train.sh PACK_DIR OUT_DIR [MINUTES] [train arguments...]" >&2
    exit 2
fi
PACK=$1
OUT_DIR=$2
MINUTES=${3:-7}
shift $(( $# < 3 ? $# : 3 ))
if [ ! -f "$PACK/meta.json" ]; then
    echo "error: $PACK is no face pack (no meta.json); make one with face-recognition-ros pack-faces" >&2
    exit 2
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-train-site .whl/*.whl
    export PYTHONPATH=/tmp/gpu-train-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
RUNS=$(mktemp -d /tmp/gpu-train-runs.XXXXXX)   # checkpoints stay here: a Lightning checkpoint is ~50 MB
python3 -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
set +e
python3 -m face_recognition_ros.training.cli train --config config/train/b0_ensemble_112_gpu.yaml \
    --pack "$PACK" --minutes "$MINUTES" --out "$RUNS" --no-progress "$@" 2>&1 | tee "$OUT_DIR/train.log"
STATUS=${PIPESTATUS[0]}
set -e
RUN=$(find "$RUNS" -mindepth 1 -maxdepth 1 -type d | head -n 1)
for FILE in efficientnet_b0.pt efficientnet_b0.json csv/metrics.csv; do
    if [ -n "$RUN" ] && [ -f "$RUN/$FILE" ]; then cp "$RUN/$FILE" "$OUT_DIR/"; fi
done
exit "$STATUS"
