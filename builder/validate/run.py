"""The grader-like run of a submission image: the container run, the checks on how it ran, the time projection.

The run itself is ``builder.validate.replay`` (the platform's sandbox through ``builder.image.engine.run_container``:
no network, read-only root, the test folder read-only, no capabilities, limits); here its outcome is judged the way a
platform judges it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from builder.errors import ConfigError
from submission.formats.base import Check

NETWORK_SIGNS = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"Failed to establish a new connection|urlopen error|HTTPSConnectionPool|OfflineModeIsEnabled|"
    r"LocalEntryNotFoundError|nodename nor servname",
    re.IGNORECASE,
)
_WROTE = re.compile(r"wrote \S+ \((\d+) rows, \d+ columns\) in ([\d.]+)s")
_STAGE = re.compile(r"(\w+) ([\d.]+)s")


def parse_duration(text: str) -> float:
    """"9h", "20m", "90s", "1h30m", "2.5h" or plain seconds -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text.strip().lower()):
        raise ConfigError(f"cannot read the duration {text!r}; write it as 9h, 20m, 90s or 1h30m")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass
class RunReport:
    exit_code: int | None  # None when the container was stopped at the time limit
    seconds: float
    timed_out: bool
    peak_memory_bytes: int | None
    log_tail: str  # the last 40 lines the container printed
    network_attempted: bool
    oom_killed: bool = False


def run_checks(run: RunReport, time_limit: float | None) -> list[Check]:
    checks = []
    if run.timed_out:
        checks.append(Check("timeout", False, f"stopped at the time limit of {time_limit:g}s"))
    elif time_limit:
        checks.append(Check("timeout", True, f"{run.seconds:.1f}s of {time_limit:g}s"))
    if run.network_attempted:
        lines = [line for line in run.log_tail.splitlines() if NETWORK_SIGNS.search(line)]
        checks.append(Check("network access", False,
                            "the run tried to reach the network, which graders cut off: "
                            + (lines[-1][:300] if lines else "")))
    if run.oom_killed:
        checks.append(Check("out of memory", False, "the container was killed for exceeding its memory limit"))
    if not run.timed_out:
        checks.append(Check("exit code", run.exit_code == 0,
                            "" if run.exit_code == 0 else f"exited with code {run.exit_code}; log:\n{run.log_tail[-2000:]}"))
    return checks


def project(run: RunReport, expected_rows: int, time_limit: float | None, answered: int = 0) -> dict[str, Any] | None:
    """The hidden set's run time: the start-up as measured and the prediction time scaled by rows (from the runtime's
    "wrote" line); without that line (stdin answers, one case per run), the whole run scaled by the images answered."""
    if run.timed_out:
        return None
    found = _WROTE.findall(run.log_tail)
    if found:
        rows, predict_s = int(found[-1][0]), float(found[-1][1])
        startup = max(run.seconds - predict_s, 0.0)
    elif answered:
        rows, predict_s, startup = answered, run.seconds, 0.0
    else:
        return None
    projected = startup + predict_s * expected_rows / max(rows, 1)
    result = {"measured_rows": rows, "measured_seconds": run.seconds, "startup_seconds": startup,
              "expected_rows": expected_rows, "projected_seconds": projected}
    if time_limit:
        result["fraction_of_limit"] = projected / time_limit
    return result


def time_split(run: RunReport) -> dict[str, float] | None:
    """The run's seconds by stage, from the runtime's "time:" line: start-up is the container's whole run less the
    other stages (so it holds the container's start, the imports and the models' loading); None without the line."""
    lines = [line for line in run.log_tail.splitlines() if line.startswith("time: ")]
    if not lines or run.timed_out:
        return None
    stages = {name: float(value) for name, value in _STAGE.findall(lines[-1])}
    stages.pop("startup", None)
    return {"startup": max(run.seconds - sum(stages.values()), 0.0), **stages}
