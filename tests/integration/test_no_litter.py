"""No litter: a real vLLM server leaves nothing in the system's temporary folder; its IPC sockets go to
the private TMPDIR perfsuite gives every server, which is removed when the server stops."""

import json
import os
import re
import tempfile
import urllib.request
from pathlib import Path

import psutil
import pytest

from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.model import build_model
from perfsuite_plugins.vllm import VLLMPlugin

pytestmark = pytest.mark.perf

# What vLLM and torch put in a temporary folder: IPC sockets named by a UUID, torch's caches.
THEIRS = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|torch|vllm|ps-vllm", re.I)


def _unix(p: psutil.Process) -> list:
    try:
        return p.net_connections(kind="unix")
    except psutil.Error:
        return []


def test_a_vllm_server_leaves_nothing_in_the_temporary_folder(tmp_path):
    plugin = VLLMPlugin()
    if reason := plugin.unavailable():
        pytest.skip(reason)
    model = build_model()
    system_tmp = Path(tempfile.gettempdir())
    before = set(os.listdir(system_tmp))
    server = plugin.start(str(model), EngineSettings(max_model_len=256), resolve_profile("cpu"), tmp_path, 300)
    try:
        private = Path(getattr(server.process, "tmp_dir", tempfile.gettempdir()))
        body = json.dumps({"model": server.endpoint.model, "prompt": "hello", "max_tokens": 4}).encode()
        req = urllib.request.Request(
            server.endpoint.base_url + "/v1/completions", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (loopback)
            assert resp.status == 200
        sockets = sorted({c.laddr for p in server.process.tree() for c in _unix(p) if c.laddr})
    finally:
        server.stop()
    new = sorted(n for n in set(os.listdir(system_tmp)) - before if THEIRS.search(n))
    assert new == [], f"left in {system_tmp}: {new[:10]} ({len(new)})"
    assert sockets, "the server listens on no Unix socket"
    assert all(Path(s).is_relative_to(private) for s in sockets), (private, sockets)
    assert not private.exists()


def test_vllm_offline_leaves_nothing_in_the_temporary_folder():
    plugin = VLLMPlugin()
    if reason := plugin.unavailable():
        pytest.skip(reason)
    model = build_model()
    system_tmp = Path(tempfile.gettempdir())
    before = set(os.listdir(system_tmp))
    env_before = {k: os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP", "VLLM_RPC_BASE_PATH")}
    metrics = plugin.offline(str(model), EngineSettings(max_model_len=256), resolve_profile("cpu"), ["hello"] * 4, 4)
    assert metrics["requests_ok"] == 4
    new = sorted(n for n in set(os.listdir(system_tmp)) - before if THEIRS.search(n))
    assert new == [], f"left in {system_tmp}: {new[:10]} ({len(new)})"
    assert tempfile.gettempdir() == str(system_tmp)  # this process's temporary folder is put back
    assert {k: os.environ.get(k) for k in env_before} == env_before
