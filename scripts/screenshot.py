"""A report page -> a PNG of it, as headless Chromium renders it: ``python3 scripts/screenshot.py PAGE OUT.png``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import Browser  # noqa: E402


def main(page: str, out: str, width: int = 1100, height: int = 900) -> None:
    with Browser(width, height) as browser:
        opened = browser.open(Path(page), ("#verdict",))
    if opened.errors:
        raise SystemExit(f"{page}: the browser logged {opened.errors}")
    Path(out).write_bytes(opened.screenshot)
    print(f"{out}: {opened.title} ({opened.dom['#verdict']})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
