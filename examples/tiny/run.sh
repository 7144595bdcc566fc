#!/usr/bin/env bash
# The whole job on a tiny competition: train three folds, pack them into an image, run the image as a
# platform does, check it against the host run, then validate and score it. Needs scripts/setup.sh first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d /tmp/tiny-competition.XXXXXX)}"
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=docker

echo "== 1. three folds, trained as timm's train.py saves them, in $work"
python3 "$here/make_runs.py" "$work"

echo "== 2. builder pack"
builder pack --models "$work/runs" --config "$work/pack.yaml" --sample-submission "$work/sample_submission.csv" \
    --base-image "${BASE_IMAGE:-submission-base:bookworm}" --tag tiny-submission --bundle "$work/bundle"

echo "== 3. docker run, as a platform runs it"
mkdir -p "$work/out"
chmod 755 "$work" && chmod -R a+rX "$work/test" && chmod 777 "$work/out"
"$docker_cli" run --rm --network none --read-only --tmpfs /tmp \
    -v "$work/test:/data:ro" -v "$work/out:/output" tiny-submission /data

echo "== 4. the same bundle on the host gives the same bytes"
python3 -m submission "$work/test" --bundle "$work/bundle" --out "$work/host.csv" --quiet
cmp "$work/out/submission.csv" "$work/host.csv"
echo "identical: $work/out/submission.csv"

echo "== 5. builder validate: run as a grader does, check the CSV, score it against the hidden labels"
builder validate tiny-submission --data "$work/test" --labels "$work/test_labels.csv" \
    --time-limit 10m --memory 4g --cpus 2 --report "$work/report.json" --no-log
python3 -c "import json, sys; s = json.load(open(sys.argv[1]))['score']; sys.exit(0 if s['value'] > 0.5 else 1)" \
    "$work/report.json"
