"""The parts of a report page: a document with a title and a verdict, sections, tables, figures, written atomically.

Everything a page shows is escaped text, inline SVG made here, or the CSS below: the page has no script, loads no
font, image or style from anywhere, and reads the same offline on any machine.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from submission.atomic import atomic_path

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2329; background: #f6f7f9; }
header { padding: 20px 32px; background: #fff; border-bottom: 1px solid #dde1e6; }
header h1 { margin: 0 0 6px; font-size: 22px; }
main { padding: 8px 32px 40px; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; margin: 18px 0; padding: 14px 20px; }
h2 { font-size: 17px; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.detail { white-space: pre-wrap; max-width: 760px; overflow-wrap: anywhere; }
.verdict { display: inline-block; padding: 3px 12px; border-radius: 4px; font-weight: 700; color: #fff; }
.passed, .pass { background: #1a7f37; } .failed, .fail { background: #cf222e; }
.undecided, .warn { background: #9a6700; } .info { background: #57606a; }
.tag { display: inline-block; min-width: 64px; text-align: center; padding: 0 6px; border-radius: 3px;
       color: #fff; font-size: 12px; font-weight: 600; }
.muted { color: #57606a; }
figure { margin: 8px 0; } figure svg { max-width: 100%; height: auto; }
ul { margin: 4px 0 8px; padding-left: 20px; }
"""


def size(n: float) -> str:
    """Bytes for people: 812 B, 3.4 KB, 120.5 MB, 4.9 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
          detail: Sequence[int] = ()) -> str:
    """A table of escaped cells; a row cell that is ``Raw`` goes in as it is (markup made here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            kind = ' class="num"' if i in numeric else ' class="detail"' if i in detail else ""
            cells.append(f"<td{kind}>{cell if isinstance(cell, Raw) else esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw(str):
    """Markup made by this package, put into a page as it is."""


def tag(text: str, kind: str) -> Raw:
    return Raw(f'<span class="tag {esc(kind)}">{esc(text)}</span>')


def items(lines: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>"


def paragraph(text: str, muted: bool = False) -> str:
    return f'<p{" class=muted" if muted else ""}>{esc(text)}</p>'


def figure(svg: str, caption: str = "") -> str:
    return f"<figure>{svg}" + (f"<figcaption class=muted>{esc(caption)}</figcaption>" if caption else "") + "</figure>"


class Page:
    """A report page: its title, the verdict beside it (when there is one), and its sections in order."""

    def __init__(self, title: str, subtitle: str = "", verdict: str | None = None, kind: str | None = None) -> None:
        self.title, self.subtitle, self.verdict, self.kind = title, subtitle, verdict, kind or verdict
        self.sections: list[str] = []

    def section(self, heading: str, *parts: str, anchor: str = "") -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.sections.append(f"<section{ident}><h2>{esc(heading)}</h2>{''.join(parts)}</section>")

    def html(self) -> str:
        verdict = (f' <span id="verdict" class="verdict {esc(self.kind)}">{esc(self.verdict)}</span>'
                   if self.verdict else "")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
                "img-src data:\">"
                f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
                f"<header><h1>{esc(self.title)}{verdict}</h1>"
                + (f"<div class=muted>{esc(self.subtitle)}</div>" if self.subtitle else "")
                + f"</header><main>{''.join(self.sections)}</main></body></html>\n")

    def write(self, path: Path) -> None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(self.html(), encoding="utf-8")
