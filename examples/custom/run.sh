#!/usr/bin/env bash
# Your own model code, end to end (after scripts/setup.sh): two small competitions made from the digits,
# four models trained on the CPU (about a minute each), each packed with `builder pack`, run in Docker and
# scored on hidden labels by `builder validate`:
#   cosine  a cosine-classifier head with GeM pooling on a timm backbone    (--model-code models.py:CosineNet)
#   masks   three heads, mask 3 x gender 2 x age 3, combined into 18 classes (--heads mask=3,gender=2,age=3)
#   meta    image + the `writer` column of test.csv beside the images       (--metadata-file, --metadata-columns)
#   image   a plain timm model on the same images, the baseline the metadata has to beat
# Exits non-zero if any step fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d /tmp/custom.XXXXXX)}"
base="${BASE_IMAGE:-submission-base:bookworm}"
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=docker
mkdir -p "$work"
chmod 755 "$work"

step() { printf '\n== %s\n' "$*"; }
score() { python3 -c "import json, sys; s = json.load(open(sys.argv[1]))['score']; print(f\"{s['metric']} {s['value']:.4f}\")" "$1"; }

step "data: the masks (18 classes) and meta (noisy digits + writer column) competitions"
python3 "$here/make_data.py" "$work"

for model in cosine masks meta image; do
    step "train: $model, 2 folds"
    (cd "$here" && python3 train.py "$work" --model "$model" --epochs 5)
done
chmod -R a+rX "$work"

step "pack: cosine head (your model code, frozen in the image)"
builder pack --models "$work/runs/cosine" --model-code "$here/models.py:CosineNet" --config "$here/pack.yaml" \
    --sample-submission "$work/meta/sample_submission.csv" --base-image "$base" --tag custom-cosine

step "pack: three heads combined into 18 classes"
builder pack --models "$work/runs/masks" --model-code "$here/models.py:MaskNet" --heads mask=3,gender=2,age=3 \
    --config "$here/pack.yaml" --sample-submission "$work/masks/sample_submission.csv" --base-image "$base" \
    --tag custom-masks

step "pack: image + metadata, the encoding fitted on train.csv"
builder pack --models "$work/runs/meta" --model-code "$here/models.py:MetaNet" --config "$here/pack.yaml" \
    --metadata-file test.csv --metadata-columns "$here/meta_columns.yaml" --train-metadata "$work/meta/train/train.csv" \
    --sample-submission "$work/meta/sample_submission.csv" --base-image "$base" --tag custom-meta

step "pack: the image-only baseline, a plain timm model"
builder pack --models "$work/runs/image" --arch test_resnet --config "$here/pack.yaml" \
    --sample-submission "$work/meta/sample_submission.csv" --base-image "$base" --tag custom-image

step "docker run: the 18-class image, as a platform runs it"
mkdir -p "$work/out" && chmod 777 "$work/out"
"$docker_cli" run --rm --network none --read-only --tmpfs /tmp \
    -v "$work/masks/test:/data:ro" -v "$work/out:/output" custom-masks /data
head -3 "$work/out/submission.csv"

for model in cosine masks meta image; do
    competition=meta
    [ "$model" = masks ] && competition=masks
    step "validate: custom-$model on the hidden labels"
    builder validate "custom-$model" --data "$work/$competition/test" --labels "$work/$competition/test_labels.csv" \
        --time-limit 10m --report "$work/report_$model.json" --no-log
done

step "scores on the hidden test labels"
echo "cosine head:                   $(score "$work/report_cosine.json")"
echo "three heads, 18 classes:       $(score "$work/report_masks.json")"
echo "image + metadata:              $(score "$work/report_meta.json")"
echo "image only (same images):      $(score "$work/report_image.json")"
