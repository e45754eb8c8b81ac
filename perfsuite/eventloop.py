"""The event loop a load generator runs on: uvloop's where it is installed, else asyncio's.

uvloop (libuv, in C) makes each network read cheaper for the client: perfsuite's marginal CPU per
streamed token against a vLLM CPU server read 0.69-0.79x of the same client on asyncio's loop, side by
side in three runs (benchmarks/client_vs_vllm.py, benchmarks/RESULTS.md). `PERFSUITE_LOOP=asyncio` keeps asyncio's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from perfsuite.errors import UsageError

__all__ = ["LOOPS", "loop_name", "run"]

LOOPS = ("uvloop", "asyncio")


def loop_name() -> str:
    """The loop `run` uses: PERFSUITE_LOOP if set, else uvloop when it imports, else asyncio."""
    name = os.environ.get("PERFSUITE_LOOP")
    if name is not None and name not in LOOPS:
        raise UsageError(f"PERFSUITE_LOOP={name!r}: must be one of {', '.join(LOOPS)}")
    if name == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if name == "uvloop":
            raise UsageError("PERFSUITE_LOOP=uvloop, but uvloop is not installed: pip install uvloop") from None
        return "asyncio"
    return "uvloop"


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run(coro) on the loop loop_name() names."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
