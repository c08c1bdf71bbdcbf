#!/usr/bin/env bash
# Ablations of config/train/b0_ensemble_112.yaml at an equal budget (STEPS optimizer steps of 64
# faces, cosine schedule over them; validation every STEPS/4 steps on the same 6,000 validation pairs of
# held-out celeba-subset identities), one factor changed at a time from the recipe:
#   base                112x112, dlib_resnet + mobileface ensemble, Lite0 init, all three datasets
#   input64             64x64 input (the shift jitter scaled with it)
#   teacher_dlib        dlib_resnet alone as teacher
#   teacher_mobileface  mobileface alone as teacher
#   init_scratch        random initialisation instead of EfficientNet-Lite0
#   data_subset         celeba-subset only (16 identities x 4 images per batch, no faces without identity)
#   data_labelled       celeba-subset + celeba10k's identities with 2+ images only: 16 identities x 4
#                       images per batch, no faces without identity (not run by default)
#   distill_both        relational + 0.1 x projection distillation (a linear map of the student onto the
#                       teacher's vector, cosine) instead of relational alone (not run by default)
# Each run is followed by the training package's quick LFW checker (10 folds, cached crops).
# Needs FACE_RECOGNITION_TRAIN_DATA and FACE_RECOGNITION_MOBILEFACE_WEIGHTS (see the recipe).
# usage: scripts/train_ablations.sh OUT_DIR [NAME ...]     (STEPS=1000 by default)
set -euo pipefail
# OpenMP threads that spin while waiting ran ~10x slower on a CPU shared with other jobs (measured:
# 1.7 against 25 images/s with two threads); passive waiting is the safe default there.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=${1:?usage: scripts/train_ablations.sh OUT_DIR [NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(base input64 teacher_dlib teacher_mobileface init_scratch data_subset)
steps=${STEPS:-1000}
recipe=config/train/b0_ensemble_112.yaml
mkdir -p "$out"

variant() {
    case "$1" in
        base) ;;
        input64) echo "--set data.input_size=64 --set data.augment.shift_px=3.4" ;;
        teacher_dlib) echo "--set loss.teacher=dlib_resnet --set loss.teacher_mix=null --set loss.teacher_weights={}" ;;
        teacher_mobileface) echo "--set loss.teacher=mobileface --set loss.teacher_mix=null" ;;
        init_scratch) echo "--set model.backbone_init=scratch" ;;
        data_subset) # JSON: no spaces, so the words split where they should
            echo '--set data.datasets=[{"root":"celeba-subset","namespace":"celeba","validation":true,"exclude_file":"config/train/lfw_overlap_celeba.txt"}]' \
                 "--set data.unlabelled_per_batch=0 --set data.identities_per_batch=16" ;;
        data_labelled)
            echo '--set data.datasets=[{"root":"celeba-subset","namespace":"celeba","validation":true,"exclude_file":"config/train/lfw_overlap_celeba.txt"},{"root":"$FACE_RECOGNITION_TRAIN_DATA/celeba10k","namespace":"celeba","exclude_file":"config/train/lfw_overlap_celeba10k.txt"}]' \
                 "--set data.unlabelled_per_batch=0 --set data.identities_per_batch=16" ;;
        distill_both) echo "--set loss.distill_method=relational+projection --set loss.projection_weight=0.1" ;;
        *) echo "unknown ablation $1" >&2; return 1 ;;
    esac
}

for name in "${names[@]}"; do
    extra=$(variant "$name")
    log="$out/$name.log"
    echo "== $name: $(date -Is)" | tee "$log"
    # shellcheck disable=SC2086  # the variant's words are separate arguments
    python3 -m face_recognition_ros.cli.main train --config "$recipe" --out "$out" --no-progress \
        --set "name=ablation_$name" --set "data.batches_per_epoch=$((steps / 4))" \
        --set trainer.max_epochs=4 $extra >> "$log" 2>&1
    python3 -m face_recognition_ros.training.lfw_tools verify --encoder efficientnet_b0 \
        --weights "$out/ablation_$name/efficientnet_b0.pt" --folds 1 2 3 4 5 6 7 8 9 10 2>/dev/null | tail -1 >> "$log"
    echo "== $name done: $(date -Is)" >> "$log"
done
