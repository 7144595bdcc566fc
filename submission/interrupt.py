"""SIGTERM (docker stop, a platform's time limit) and SIGINT -> ``KeyboardInterrupt``, so the run stops cleanly
and writes nothing half.

Both are set: as PID 1 in a container SIGTERM would otherwise be ignored, and a process started in the
background by a shell inherits SIGINT ignored. Python swallows an exception raised where it cannot propagate
(an at-fork hook while a loader worker starts, a finalizer), so the signal is also remembered and raised again
at the next ``checkpoint``: after each batch, before a finished file replaces the old one, and when an error ends
the run (a C extension the signal interrupted may raise its own error instead: safetensors' reader a TypeError).
"""

from __future__ import annotations

import signal

_received: str | None = None  # the name of the first stop signal this process got


def _stop(signum: int, frame: object) -> None:
    global _received
    _received = _received or signal.Signals(signum).name
    raise KeyboardInterrupt(_received)


def install() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)


def checkpoint() -> None:
    """Raise the stop a signal asked for, if an earlier raise of it was swallowed."""
    if _received is not None:
        raise KeyboardInterrupt(_received)
