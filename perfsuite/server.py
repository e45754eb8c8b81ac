"""One server subprocess owned from start to stop: loopback port, own process group, log kept,
readiness polled with a deadline, and the whole process tree stopped on exit, whatever happened.

Modelled on vLLM's RemoteOpenAIServer and testcontainers' wait helpers; usable without pytest.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from perfsuite.errors import ServerError
from perfsuite.scratch import owned_tmpdir

__all__ = ["free_port", "wait_for", "ServerProcess", "http_ok", "pause_tree", "resume_tree"]

# The longest path of a server's temporary folder that leaves room for a socket name under it.
_MAX_TMP_PATH = 64


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET `url` answers 200 within `timeout_s`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (loopback URLs we built)
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll `condition` until it is true; TimeoutError after `timeout_s`, or ServerError as soon as
    `abort` returns a reason (e.g. the process exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if abort is not None and (reason := abort()):
            raise ServerError(f"{what}: {reason}")
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready within {timeout_s:g} s")
        time.sleep(interval_s)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (run in a child between fork and exec).
    If the parent `parent_pid` died before the request was made, the child ends at once instead."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if parent_pid is not None and os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def _child_setup(cpus: set[int] | None):
    """What the child does before exec: die with its parent; keep to `cpus` (inherited by its whole tree)."""

    parent = os.getpid()

    def setup() -> None:
        die_with_parent(parent)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class ServerProcess:
    """A server started as `argv`, logging to `log_path`, ready when `ready()` is true."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str | os.PathLike,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        start_timeout_s: float = 300.0,
        stop_timeout_s: float = 30.0,
        cwd: str | os.PathLike | None = None,
        cpus: set[int] | None = None,
        tmp_dir: str | os.PathLike | None = None,
    ) -> None:
        self.name = name
        self.cpus = cpus
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.ready = ready
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.cwd = cwd
        # The child's TMPDIR: its own folder beside the log (tmp-<log name>, e.g. tmp-vllm-8000),
        # removed after stop(), so that nothing it leaves in a temporary folder outlives it.
        self.tmp_dir = Path(tmp_dir) if tmp_dir else self.log_path.parent / f"tmp-{self.log_path.stem}"
        self._short_tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._known: dict[int, psutil.Process] = {}

    def _child_env(self) -> dict[str, str]:
        """The environment given (or ours) with TMPDIR, TEMP and TMP on this server's own folder. Unix
        socket paths are limited to 107 bytes (vLLM puts a 36-character name under TMPDIR): a folder
        whose path is too long for that is replaced by a short one in the system's temporary folder,
        removed after stop() all the same."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.tmp_dir.resolve())) > _MAX_TMP_PATH:
            # The system's temporary folder, unless $TMPDIR is itself too long (a test's own folder):
            # then /tmp, which every Unix has. Removed after stop() all the same.
            root = tempfile.gettempdir()
            if len(str(Path(root).resolve())) > _MAX_TMP_PATH - 30 and os.path.isdir("/tmp"):
                root = "/tmp"
            self._short_tmp = self.tmp_dir = owned_tmpdir(f"ps-{self.log_path.stem[:16]}-", root)
        env = dict(os.environ if self.env is None else self.env)
        env.update(TMPDIR=str(self.tmp_dir), TEMP=str(self.tmp_dir), TMP=str(self.tmp_dir))
        return env

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = self._child_env()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(self.cpus),
            )
        try:
            wait_for(
                self._ready_and_known, self.start_timeout_s, f"{self.name} (pid {self.proc.pid})", abort=self._exited
            )
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if isinstance(exc, ServerError):
                raise ServerError(str(exc), tail) from None
            if isinstance(exc, TimeoutError):
                raise ServerError(str(exc), tail) from None
            raise
        return self

    def _ready_and_known(self) -> bool:
        self.tree()  # remember every descendant, so stop() finds them even if the server dies later
        return self.ready()

    def _exited(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"exited with code {self.proc.returncode} before it was ready"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, during: str = "the run") -> None:
        """Raise ServerError with the log's tail if the server has died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"{self.name} died during {during} (exit code {self.proc.returncode})", self.log_tail())

    def tree(self) -> list[psutil.Process]:
        """The server and every descendant alive now (remembered so that stop() finds them all)."""
        if not self.alive():
            return []
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for p in procs:
            self._known.setdefault(p.pid, p)
        return procs

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever of the tree is left; remove the
        server's temporary folder."""
        if self.proc is None:
            return
        try:
            self._stop_tree()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _stop_tree(self) -> None:
        self.tree()
        resume_tree([p for p in self._known.values() if _running(p)])  # a paused process ignores SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.stop_timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        leftovers = [p for p in self._known.values() if _running(p)]
        for p in leftovers:  # children that left the process group
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(leftovers, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def pause_tree(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    """SIGSTOP every process of a server's tree (parents first): a paused server takes no CPU time and
    answers nothing until resume_tree. Measured: an idle vLLM CPU server keeps one process at ~19% of
    a core, which would slow a server measured beside it. Returns the processes that were paused."""
    paused = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.suspend()
            paused.append(p)
    return paused


def resume_tree(procs: Sequence[psutil.Process]) -> None:
    """SIGCONT every process of a paused tree (children first, so that no parent waits on a stopped
    child). A process stopped with SIGSTOP ignores SIGTERM until it is continued: resume before stop."""
    for p in reversed(list(procs)):
        with contextlib.suppress(psutil.Error):
            p.resume()


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
