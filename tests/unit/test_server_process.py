"""ServerProcess against real subprocesses: readiness, early exit, start timeout, and whole-tree stop."""

import json
import os
import signal
import socket
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest

import perfsuite.server as server_module
from perfsuite.errors import ServerError
from perfsuite.server import ServerProcess, free_port, http_ok, wait_for


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def left_over(token: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `token` (each test's tmp_path is unique)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(token in a for a in p.info["cmdline"] or ()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def script(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


@pytest.fixture
def cleanup():
    """Stops every ServerProcess a test made, even when the test fails half-way."""
    made: list[ServerProcess] = []
    yield made.append
    for sp in made:
        sp.stop()


def test_http_server_becomes_ready_and_stops(tmp_path, cleanup):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    sp = ServerProcess(
        "http.server",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        tmp_path / "logs" / "server.log",
        ready=lambda: http_ok(url),
        start_timeout_s=60,
        cwd=tmp_path,
    )
    cleanup(sp)
    with sp:
        assert sp.alive()
        assert http_ok(url)
        assert sp.tree()[0].pid == sp.pid
        sp.check_alive()  # alive: no error
        pid = sp.pid
    assert not sp.alive()
    assert gone(pid)
    assert not http_ok(url, timeout_s=1)
    assert (tmp_path / "logs" / "server.log").exists()


def test_process_that_exits_at_start(tmp_path, cleanup):
    sp = ServerProcess(
        "bad",
        [sys.executable, "-c", "import sys; print('fatal: unknown flag --frobnicate'); sys.exit(3)"],
        tmp_path / "server.log",
        ready=lambda: False,
        start_timeout_s=60,
    )
    cleanup(sp)
    with pytest.raises(ServerError) as exc:
        sp.start()
    msg = str(exc.value)
    assert "exited with code 3" in msg
    assert "fatal: unknown flag --frobnicate" in msg
    assert "fatal: unknown flag" in exc.value.log_tail
    assert not sp.alive()


def test_process_never_ready_is_stopped(tmp_path, cleanup):
    # It ignores SIGTERM too, so stop() has to escalate to SIGKILL.
    code = script(
        tmp_path,
        "slow.py",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("loading weights...", flush=True)
        time.sleep(600)
    """,
    )
    sp = ServerProcess(
        "slow",
        [sys.executable, code],
        tmp_path / "server.log",
        ready=lambda: False,
        start_timeout_s=2,
        stop_timeout_s=0.5,
    )
    cleanup(sp)
    with pytest.raises(ServerError) as exc:
        sp.start()
    msg = str(exc.value)
    assert "not ready within 2 s" in msg
    assert "loading weights..." in msg
    assert gone(sp.pid)
    assert left_over(str(tmp_path)) == []


@pytest.mark.parametrize("own_session", [False, True], ids=["same-group", "left-the-group"])
def test_stop_kills_the_whole_tree(tmp_path, cleanup, own_session):
    grandchild = script(
        tmp_path,
        "grandchild.py",
        f"""
        import os, signal, sys, time
        if {own_session}:
            os.setsid()  # leaves the server's process group: killpg does not reach it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(600)
    """,
    )
    child = script(
        tmp_path,
        "child.py",
        f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, {grandchild!r}, sys.argv[1]])
        print("worker started", flush=True)
        time.sleep(600)
    """,
    )
    pidfile = tmp_path / "grandchild.pid"
    sp = ServerProcess(
        "tree",
        [sys.executable, child, str(pidfile)],
        tmp_path / "server.log",
        ready=lambda: pidfile.exists(),
        start_timeout_s=60,
        stop_timeout_s=5,
    )
    cleanup(sp)
    sp.start()
    gpid = int(pidfile.read_text())
    assert {p.pid for p in sp.tree()} >= {sp.pid, gpid}
    assert len(left_over(str(tmp_path))) == 2
    sp.stop()
    assert gone(sp.pid)
    assert gone(gpid)
    assert left_over(str(tmp_path)) == []
    sp.stop()  # stopping twice is harmless


def test_check_alive_after_the_server_died(tmp_path, cleanup):
    log = tmp_path / "server.log"
    sp = ServerProcess(
        "victim",
        [sys.executable, "-c", "import time; print('serving on 127.0.0.1', flush=True); time.sleep(600)"],
        log,
        ready=lambda: log.exists() and "serving" in log.read_text(),
        start_timeout_s=60,
    )
    cleanup(sp)
    sp.start()
    sp.check_alive("warm-up")
    os.kill(sp.pid, signal.SIGKILL)
    sp.proc.wait(timeout=30)
    assert not sp.alive()
    with pytest.raises(ServerError) as exc:
        sp.check_alive("the load run")
    msg = str(exc.value)
    assert "victim died during the load run" in msg
    assert f"exit code {-signal.SIGKILL}" in msg
    assert "serving on 127.0.0.1" in exc.value.log_tail
    assert sp.tree() == []
    sp.stop()  # no error on a dead server


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    sp = ServerProcess("x", ["true"], log, ready=lambda: True)
    tail = sp.log_tail(lines=5)
    assert tail.splitlines() == [f"line {i}" for i in range(95, 100)]
    assert ServerProcess("x", ["true"], tmp_path / "none.log", ready=lambda: True).log_tail() == ""


def test_wait_for():
    calls = []
    wait_for(lambda: calls.append(1) or len(calls) >= 3, timeout_s=30, what="thing", interval_s=0.01)
    assert len(calls) == 3
    with pytest.raises(TimeoutError, match="thing: not ready within 0.05 s"):
        wait_for(lambda: False, timeout_s=0.05, what="thing", interval_s=0.01)
    with pytest.raises(ServerError, match="thing: it exited"):
        wait_for(lambda: True, timeout_s=30, what="thing", abort=lambda: "it exited")


def test_free_port_and_http_ok_on_nothing():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it is free
    assert not http_ok(f"http://127.0.0.1:{port}/", timeout_s=1)
    assert not http_ok("not a url")


TELL_TMP = """
import json, os, sys, tempfile, time
seen = {k: os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP", "KEPT")}
seen["gettempdir"] = tempfile.gettempdir()
open(sys.argv[1], "w").write(json.dumps(seen))
time.sleep(60)
"""


@pytest.mark.parametrize("room", [4096, 8], ids=["beside-the-log", "short-path-fallback"])
def test_a_server_gets_a_private_tmpdir_removed_after_stop(tmp_path, monkeypatch, cleanup, room):
    monkeypatch.setattr(server_module, "_MAX_TMP_PATH", room)
    told = tmp_path / "told.json"
    sp = ServerProcess(
        "tell",
        [sys.executable, script(tmp_path, "tell.py", TELL_TMP), told],
        tmp_path / "logs" / "tell-1234.log",
        ready=told.exists,
        env={**os.environ, "KEPT": "yes"},
        start_timeout_s=30,
    )
    cleanup(sp)
    sp.start()
    seen = json.loads(told.read_text())
    private = sp.tmp_dir
    if room > 100:
        assert private == tmp_path / "logs" / "tmp-tell-1234"
    else:  # too long for a socket name under it: a short one in the system's temporary folder
        assert private.parent == Path(tempfile.gettempdir()) and private.name.startswith("ps-tell-1234-")
    assert seen == {
        "TMPDIR": str(private),
        "TEMP": str(private),
        "TMP": str(private),
        "KEPT": "yes",
        "gettempdir": str(private),
    }
    (private / "litter.sock").write_text("")
    sp.stop()
    assert not private.exists()


def test_a_long_tmpdir_still_gives_the_server_a_short_private_folder(tmp_path, monkeypatch, cleanup):
    """$TMPDIR itself too long for a socket name under it (a test's own folder): the server's private
    folder goes to /tmp instead. Before, vLLM failed to start there ('exited with code 1 before it was
    ready': its IPC socket path was too long)."""
    long_tmp = tmp_path / ("t" * 80)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    told = tmp_path / "told.json"
    sp = ServerProcess(
        "tell",
        [sys.executable, script(tmp_path, "tell.py", TELL_TMP), told],
        tmp_path / "logs" / "tell-1234.log",
        ready=told.exists,
        start_timeout_s=30,
    )
    cleanup(sp)
    sp.start()
    private = sp.tmp_dir
    assert private.parent == Path("/tmp") and len(str(private)) <= server_module._MAX_TMP_PATH
    assert json.loads(told.read_text())["TMPDIR"] == str(private)
    sp.stop()
    assert not private.exists() and not any(long_tmp.iterdir())
