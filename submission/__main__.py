"""``python -m submission TEST_DIR``: the image's entrypoint (and the host-side debugging command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from submission import __version__
from submission.errors import SubmissionError
from submission.runner import DEFAULT_BUNDLE, DEFAULT_OUT, Options, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m submission",
        description="Predict every image of TEST_DIR with the bundled k-fold ensemble and write the submission CSV.",
    )
    parser.add_argument("test_dir", type=Path, metavar="TEST_DIR", help="folder of test images")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=Options.batch_size, help="images per batch (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=None, help="image decoding processes (default: one per available CPU; 0: none)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--ignore-sample",
        action="store_true",
        help="predict the images found (natural order) instead of the bundled sample's ids: for smoke runs and debugging",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        quiet=args.quiet,
        ignore_sample=args.ignore_sample,
    )
    try:
        result = run(args.test_dir, args.bundle, args.out, options)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: no submission written", file=sys.stderr)
        return 130
    print(f"wrote {result.path} ({result.rows} rows, {result.columns} columns) in {result.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
