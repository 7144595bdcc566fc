"""``python -m submission [TEST_DIR]``: the image's entrypoint (and the host-side debugging command);
``python -m submission merge DIR``: the shards of an array job into the CSV.

With no arguments the manifest's entry says what the platform gives: the test folder and the file to write
(``/dataset`` and ``$SUBMISSION_PATH/submission.csv`` on EvalAI), image paths on stdin (the AISG challenge), or one
case folder and its JSON (Grand Challenge)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from submission import __version__, interrupt
from submission.entry import run_case, run_stream
from submission.errors import SubmissionError
from submission.manifest import expand, load_manifest
from submission.runner import DEFAULT_BUNDLE, DEFAULT_OUT, Options, Result, merge, run, timing_line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m submission",
        description="Predict every image of TEST_DIR with the bundled k-fold ensemble and write the submission CSV.",
    )
    parser.add_argument("test_dir", type=Path, metavar="TEST_DIR", nargs="?", default=None,
                        help="folder of test images (default: where the platform mounts them, as packed)")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="file to write (default: where the platform reads it, as packed: /output/submission.csv)")
    parser.add_argument("--batch-size", type=int, default=Options.batch_size, help="images per batch (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=None, help="image decoding processes (default: one per available CPU; 0: none)"
    )
    parser.add_argument("--devices", "--device", dest="devices", default=None,
                        help="all (every GPU the build can drive, else the CPU), cpu, cuda, GPU indices 0,1, or cpu,cpu "
                             "for two CPU processes: one worker process per device (default: as packed, all)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--ignore-sample",
        action="store_true",
        help="predict the images found (natural order) instead of the bundled sample's ids: for smoke runs and debugging",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="fail on an image that cannot be decoded (default: predict it from a blank image and report it)",
    )
    parser.add_argument("--recursive", action="store_true", help="take images from sub-folders of TEST_DIR too")
    parser.add_argument("--metadata", type=Path, default=None,
                        help="the metadata CSV, for models that take metadata (default: where the bundle says, in TEST_DIR)")
    parser.add_argument("--metadata-missing", choices=("error", "fill"), default="error",
                        help="an image without a metadata row: an error (default), or the fill values, reported")
    parser.add_argument("--shard", default=None,
                        help="predict one share of the sorted ids: I/N (I from 0), auto or auto/N (from the array job's "
                             "JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX); needs --out-probs")
    parser.add_argument("--out-probs", type=Path, default=None,
                        help="folder for this shard's values (no CSV): `python -m submission merge` joins them")
    parser.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                        help="write the file within SECONDS of the start: when the run would be late, the batches left "
                             "drop views, then models, in the bundle's order (default: the bundle's; 0: none)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def parse_merge_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m submission merge",
        description="Join the shard files of DIR (every one of them, from one bundle) into the submission CSV.",
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="the folder given as --out-probs to every shard")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no info lines on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    interrupt.install()
    if argv[:1] == ["merge"]:
        args = parse_merge_args(argv[1:])
        return _report(lambda: merge(args.folder, args.bundle, args.out or DEFAULT_OUT, Options(quiet=args.quiet)))
    args = parse_args(argv)
    options = Options(
        batch_size=args.batch_size,
        workers=args.workers,
        devices=args.devices,
        quiet=args.quiet,
        ignore_sample=args.ignore_sample,
        strict=args.strict,
        recursive=args.recursive,
        metadata=args.metadata,
        metadata_missing=args.metadata_missing,
        shard=args.shard,
        out_probs=args.out_probs,
        deadline=args.deadline,
    )
    try:
        entry = load_manifest(args.bundle).entry
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    test_dir = args.test_dir or Path(expand(entry.input, os.environ))
    out = args.out or Path(expand(entry.output, os.environ))
    if entry.mode == "stream":
        return _report(lambda: run_stream(args.bundle, sys.stdin, sys.stdout, options), quiet=True)
    if entry.mode == "case":
        return _report(lambda: run_case(test_dir, args.bundle, out, options), path=out)
    return _report(lambda: run(test_dir, args.bundle, out, options))


def _report(call: Callable[[], object], quiet: bool = False, path: Path | None = None) -> int:
    """Run ``call`` and turn its result or error into lines on stdout/stderr and the exit code (``quiet``: nothing on
    stdout, which holds the answers)."""
    try:
        try:
            result = call()
        except Exception:
            interrupt.checkpoint()  # a stop that arrived first is what ended the run
            raise
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        name = e.args[0] if e.args else "SIGINT"
        print(f"stopped by {name}: no new submission written (an existing one is left as it was)", file=sys.stderr)
        return 128 + signal.Signals[name].value
    if quiet:
        return 0
    if not isinstance(result, Result):
        print(f"wrote {path}")
        return 0
    if result.path.suffix == ".npz":
        print(f"wrote shard {result.path} ({result.rows} rows) in {result.seconds:.1f}s")
        return 0
    print(f"wrote {result.path} ({result.rows} rows, {result.columns} columns) in {result.seconds:.1f}s")
    if result.timings:
        print(timing_line(result.timings))
    if result.problems:
        print(f"{len(result.problems)} image(s) predicted from a blank image: see {result.problems_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
