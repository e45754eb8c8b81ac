"""SIGTERM as Ctrl-C: KeyboardInterrupt in the main thread while installed, once; the previous
handler back after."""

import os
import signal
import time

import pytest

from perfsuite.signals import SigtermAsInterrupt


def test_sigterm_raises_keyboard_interrupt_once_and_the_old_handler_comes_back():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda *a: seen.append("previous"))
    try:
        s = SigtermAsInterrupt()
        assert s.install()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this ends
        os.kill(os.getpid(), signal.SIGTERM)  # a second one, during the cleanup: ignored
        time.sleep(0.1)
        s.uninstall()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == ["previous"]
    finally:
        signal.signal(signal.SIGTERM, old)
