"""SIGTERM handled as Ctrl-C, so that a run stopped by CI (which sends SIGTERM) still stops its
servers and containers and writes its results and report, as pytest does on KeyboardInterrupt."""

from __future__ import annotations

import signal
import threading

__all__ = ["SigtermAsInterrupt"]


class SigtermAsInterrupt:
    """While installed, SIGTERM raises KeyboardInterrupt in the main thread. Once: a second SIGTERM
    during the cleanup the first one started is ignored, so that the cleanup (every step of which has a
    deadline) finishes; SIGKILL still ends the process."""

    def __init__(self) -> None:
        self._previous = None
        self._installed = False
        self.received = False

    def install(self) -> bool:
        """Install the handler; False (nothing done) outside the main thread, where Python cannot."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return self._installed
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Put back the handler that was there before install()."""
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
        self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.received:
            return
        self.received = True
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
