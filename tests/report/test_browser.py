"""The report pages opened in a real browser (Debian's headless Chromium, from a file): the page renders (the
screenshot is not blank), its title and verdict are in the DOM, the console logged no error, and the page asked for
nothing but itself and its inline data. A page that breaks those rules is caught, so the checks can fail."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from builder.report.validate_page import write_validate_page
from tests.browser import CHROMIUM, Browser
from tests.report.test_pages import multiclass_files, run_validate

if CHROMIUM is None:
    pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def rendered(png: bytes) -> float:
    """The share of the screenshot's pixels that are not the page's background."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return 1.0 - counts.max() / len(pixels)


def test_a_validate_page_renders_with_its_verdict_and_no_error(browser, tmp_path):
    names, _, _ = multiclass_files(tmp_path, rows=200)
    (tmp_path / "submission.csv").write_text((tmp_path / "submission.csv").read_text().replace(names[2], "", 1))
    report = run_validate(tmp_path, names)
    assert report.verdict == "failed"
    write_validate_page(report, tmp_path / "report.html")
    opened = browser.open(tmp_path / "report.html", ("#verdict", "#checks h2", "#score"))
    assert opened.title == "validate: a CSV checked alone"
    assert opened.dom["#verdict"] == "failed" and opened.dom["#checks h2"] == "Checks"
    assert opened.dom["#score"] is None  # a failed CSV is not scored
    assert opened.errors == []
    assert opened.requests[0] == (tmp_path / "report.html").resolve().as_uri()
    assert all(u.startswith("data:") for u in opened.requests[1:]), opened.requests
    assert rendered(opened.screenshot) > 0.02


def test_a_scored_page_draws_its_figures(browser, tmp_path):
    names, _, _ = multiclass_files(tmp_path, rows=300)
    write_validate_page(run_validate(tmp_path, names), tmp_path / "report.html")
    opened = browser.open(tmp_path / "report.html", ("#verdict", "#confusion svg text"))
    assert opened.dom["#verdict"] == "passed" and opened.dom["#confusion svg text"]
    assert opened.errors == []
    image = Image.open(io.BytesIO(opened.screenshot))
    assert image.height > 1500  # the whole page, not the first screen
    assert rendered(opened.screenshot) > 0.05


def test_the_checker_catches_a_page_that_errs_or_fetches(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body><p id=verdict>passed</p>"
                   "<img src='http://192.0.2.1/x.png'><script>console.error('drawn wrong'); undefinedCall();</script>"
                   "</body></html>")
    opened = browser.open(bad, ("#verdict",))
    assert opened.title == "bad" and opened.dom["#verdict"] == "passed"
    assert any("drawn wrong" in e for e in opened.errors)
    assert any("undefinedCall" in e for e in opened.errors)
    assert "http://192.0.2.1/x.png" in opened.requests
