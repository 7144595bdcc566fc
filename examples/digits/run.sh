#!/usr/bin/env bash
# The digits competition end to end, as a newcomer runs it (after scripts/setup.sh):
#   multiclass: make the data, train 3 folds, builder pack, docker run, builder validate --labels; again with
#               a sample submission that names the classes (zero, one, ...) in one column;
#   multilabel: 2-4 digits per image, one-hot columns; thresholds tuned on the out-of-fold predictions with
#               builder thresholds, and the score with and without them.
# Exits non-zero if any step fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d /tmp/digits.XXXXXX)}"
base="${BASE_IMAGE:-submission-base:bookworm}"
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=docker
mkdir -p "$work"
chmod 755 "$work"

step() { printf '\n== %s\n' "$*"; }
score() { python3 -c "import json, sys; s = json.load(open(sys.argv[1]))['score']; print(f\"{s['metric']} {s['value']:.4f}\")" "$1"; }
readable() { chmod -R a+rX "$1"; }

mc="$work/multiclass"
step "multiclass: data and 3 folds of test_resnet, saved by timm's CheckpointSaver"
python3 "$here/make_competition.py" "$mc" --task multiclass
python3 "$here/train.py" "$mc" --task multiclass --epochs 5
readable "$mc"

step "multiclass: builder pack"
builder pack --models "$mc/runs" --sample-submission "$mc/sample_submission.csv" --base-image "$base" \
    --tag digits-multiclass

step "multiclass: docker run, as a platform runs it"
mkdir -p "$mc/out" && chmod 777 "$mc/out"
"$docker_cli" run --rm --network none --read-only --tmpfs /tmp \
    -v "$mc/test:/data:ro" -v "$mc/out:/output" digits-multiclass /data
head -3 "$mc/out/submission.csv"

step "multiclass: builder validate --labels"
builder validate digits-multiclass --data "$mc/test" --labels "$mc/test_labels.csv" --time-limit 20m \
    --memory 4g --cpus 2 --report "$mc/report.json" --html "$mc/report.html" --no-log

step "multiclass, class names in one column: the same folds packed for sample_submission_names.csv"
printf 'classes: [zero, one, two, three, four, five, six, seven, eight, nine]\n' > "$mc/names.yaml"
builder pack --models "$mc/runs" --config "$mc/names.yaml" --sample-submission "$mc/sample_submission_names.csv" \
    --base-image "$base" --tag digits-names
builder validate digits-names --data "$mc/test" --labels "$mc/test_labels_names.csv" --time-limit 20m \
    --report "$mc/report_names.json" --no-log

ml="$work/multilabel"
step "multilabel: data (2-4 digits per image) and 3 folds with out-of-fold predictions"
python3 "$here/make_competition.py" "$ml" --task multilabel
python3 "$here/train.py" "$ml" --task multilabel --epochs 6
readable "$ml"

step "multilabel: builder thresholds on the out-of-fold predictions"
builder thresholds --oof "$ml/oof.csv" --labels "$ml/train_labels.csv" --metric f1 --average samples \
    --out "$ml/thresholds.json"

step "multilabel: pack and validate with 0.5 everywhere, then with the tuned thresholds"
builder pack --models "$ml/runs" --task multilabel --sample-submission "$ml/sample_submission.csv" \
    --base-image "$base" --tag digits-multilabel-05
builder validate digits-multilabel-05 --data "$ml/test" --labels "$ml/test_labels.csv" --metric f1_samples \
    --report "$ml/report_05.json" --no-log
builder pack --models "$ml/runs" --task multilabel --sample-submission "$ml/sample_submission.csv" \
    --thresholds "$ml/thresholds.json" --base-image "$base" --tag digits-multilabel
builder validate digits-multilabel --data "$ml/test" --labels "$ml/test_labels.csv" --metric f1_samples \
    --report "$ml/report.json" --oof "$ml/oof.csv" --oof-labels "$ml/train_labels.csv" --html "$ml/report.html" --no-log

step "scores on the hidden test labels"
echo "multiclass (indices):           $(score "$mc/report.json")"
echo "multiclass (class names):       $(score "$mc/report_names.json")"
echo "multilabel, thresholds 0.5:     $(score "$ml/report_05.json")"
echo "multilabel, tuned thresholds:   $(score "$ml/report.json")"
echo "report pages: $mc/report.html, $ml/report.html"
