"""Named fault points, so tests can stop a process at an exact line instead of a timed kill.

Code that must survive an interruption calls `fault_point("commit.after_manifest")` at each
step. When ``WIKIGRAPH_FAULT`` names that point, the process stops there: by SIGKILL (default),
by SIGTERM/SIGINT (``name:term``, ``name:int``), or by raising `FaultInjected` (``name:raise``).
Unset, a call costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "WIKIGRAPH_FAULT"
_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


class FaultInjected(RuntimeError):
    """Raised at a fault point named with `:raise`."""


def fault_point(name: str) -> None:
    """Stop here if ``WIKIGRAPH_FAULT`` names this point (see the module docstring)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    point, _, how = wanted.partition(":")
    if point != name:
        return
    if how == "raise":
        raise FaultInjected(f"fault injected at {name}")
    # A handled SIGTERM/SIGINT returns here and the code runs on, as it would for real.
    os.kill(os.getpid(), _SIGNALS.get(how or "kill", signal.SIGKILL))
