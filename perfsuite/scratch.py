"""Temporary folders that name the process that made them, and the sweep that removes those whose
process has ended: a run killed with SIGKILL cannot clean up after itself, so the next run does.

    owned_tmpdir("psray-", "/tmp")  ->  /tmp/psray-p12345-k3j9x0aq   (made by process 12345)

remove_stale() removes such folders (of this user) whose process no longer exists, in the system's
temporary folder and /tmp: a server's short private TMPDIR (ps-<server>-), Ray Serve's temp folder
(psray-) and vllm.LLM's (ps-vllm-offline-). A run's log folder (perfsuite-logs-) is not one of them:
it is kept on purpose when a test failed, and its path printed. A folder whose pid is alive is
kept, even when the pid was reused by another process: the sweep errs toward keeping. Folders
without the tag (older perfsuite) are left.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil

__all__ = ["PREFIXES", "owned_tmpdir", "remove_stale"]

PREFIXES = ("ps-", "psray-")  # the scratch folders perfsuite makes in the temporary folder
# prefix, anything, "p<pid>-", then tempfile's 8 random characters
_OWNED = re.compile(r"^(?:ps-|psray-)(?:.*-)?p(\d+)-[a-z0-9_]{8}$")


def owned_tmpdir(prefix: str, dir: str | os.PathLike | None = None) -> Path:
    """tempfile.mkdtemp with `prefix` + "p<this pid>-": a folder remove_stale can tell the owner of."""
    if not prefix.startswith(PREFIXES):
        raise ValueError(f"owned_tmpdir: prefix {prefix!r} must start with one of {PREFIXES}")
    return Path(tempfile.mkdtemp(prefix=f"{prefix}p{os.getpid()}-", dir=dir))


def remove_stale(roots: list[str | os.PathLike] | None = None) -> list[Path]:
    """Remove the owned folders in `roots` (default: the system's temporary folder and /tmp) whose
    process has ended and that belong to this user; the folders removed."""
    if roots is None:
        roots = [tempfile.gettempdir()] + (["/tmp"] if os.path.isdir("/tmp") else [])
    removed = []
    for root in dict.fromkeys(os.path.realpath(r) for r in roots):
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            match = _OWNED.match(entry.name)
            if not match or int(match.group(1)) == os.getpid() or psutil.pid_exists(int(match.group(1))):
                continue
            try:
                if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                removed.append(Path(entry.path))
    return removed
