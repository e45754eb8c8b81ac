"""The container launch mode: command lines for Docker and Podman, and a real container on the host's
file system through Podman (skipped, with the reason, where no engine works)."""

import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from perfsuite.container import HOST_ROOTFS, ContainerEngine, ContainerServer, ContainerSpec, find_engine, run_argv
from perfsuite.errors import ServerError, UsageError
from perfsuite.server import free_port, http_ok

DOCKER = ContainerEngine(("docker",))
PODMAN = ContainerEngine(("/usr/bin/podman", "--runtime", "/usr/sbin/runc"))


def test_docker_command_line_publishes_on_loopback_and_passes_env_by_name():
    spec = ContainerSpec(
        "img:1",
        ["serve", "--port", "8000"],
        env={"HF_TOKEN": "secret-value", "A": "1"},
        volumes=[("/models/x", "/data/model", "ro")],
        ports=[8000],
        gpus=True,
        shm_size="1g",
        name="perfsuite-t",
        stop_timeout_s=100,
    )
    argv = run_argv(DOCKER, spec)
    assert argv[:5] == ["docker", "run", "--rm", "--name", "perfsuite-t"]
    assert argv[argv.index("-p") : argv.index("-p") + 2] == ["-p", "127.0.0.1:8000:8000"]
    assert "--env" in argv and "HF_TOKEN" in argv and "A" in argv
    assert not any("secret-value" in a for a in argv)  # values come from the client's environment
    assert "/models/x:/data/model:ro" in argv and "--gpus" in argv and "--shm-size" in argv
    assert argv[argv.index("--stop-timeout") + 1] == "100"
    assert argv[-4:] == ["img:1", "serve", "--port", "8000"]


def test_podman_gpu_flag_host_rootfs_and_host_network():
    spec = ContainerSpec(HOST_ROOTFS, ["/bin/true"], ports=[9], gpus=True, network_host=True, cpuset={1, 0})
    argv = run_argv(PODMAN, spec)
    assert argv[:3] == ["/usr/bin/podman", "--runtime", "/usr/sbin/runc"] and PODMAN.kind == "podman"
    assert argv[argv.index("--device") : argv.index("--device") + 2] == ["--device", "nvidia.com/gpu=all"]
    assert argv[argv.index("--network") : argv.index("--network") + 2] == ["--network", "host"]
    assert "-p" not in argv  # the host network needs no publishing
    assert argv[-3:] == ["--rootfs", "/:O", "/bin/true"]
    assert argv[argv.index("--cpuset-cpus") + 1] == "0,1"


def test_an_engine_named_but_missing_is_a_usage_error():
    with pytest.raises(UsageError, match="--perf-container-engine.*no-such-engine not found"):
        find_engine("no-such-engine --flag")


def _engine_or_skip() -> ContainerEngine:
    engine = find_engine()
    if engine is None:
        pytest.skip("no container engine (docker or podman) on PATH")
    problem = engine.works()
    if problem:
        pytest.skip(problem)
    return engine


def _containers(engine: ContainerEngine) -> list[str]:
    out = engine.run("ps", "-a", "--filter", "label=perfsuite=1", "--format", "{{.Names}}").stdout
    return out.split()


def test_a_real_container_serves_on_loopback_and_is_removed_on_stop(tmp_path):
    engine = _engine_or_skip()
    port = free_port()
    spec = ContainerSpec(HOST_ROOTFS, [sys.executable, "-m", "http.server", str(port)], ports=[port])
    server = ContainerServer(
        "http.server (container)",
        engine,
        spec,
        tmp_path / "c.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        start_timeout_s=60,
        stop_timeout_s=20,
    )
    with server:
        assert spec.name in _containers(engine)
        inside = [p for p in server.tree() if "http.server" in " ".join(p.cmdline())]
        assert inside, "the container's processes are found through the engine (not the client's children)"
    assert spec.name not in _containers(engine)
    assert not any(psutil.pid_exists(p.pid) and p.is_running() for p in inside)


def test_a_container_that_exits_at_start_fails_with_its_log_and_is_removed(tmp_path):
    engine = _engine_or_skip()
    spec = ContainerSpec(HOST_ROOTFS, [sys.executable, "-c", "import sys; print('bad flag'); sys.exit(3)"], ports=[9])
    server = ContainerServer("failing (container)", engine, spec, tmp_path / "c.log", ready=lambda: False)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="exited with code") as err:
        server.start()
    assert "bad flag" in str(err.value) and time.monotonic() - t0 < 60
    assert spec.name not in _containers(engine)


def test_containers_are_labelled_with_their_owner_process():
    argv = run_argv(PODMAN, ContainerSpec("img:1", ["serve"]))
    labels = [argv[i + 1] for i, a in enumerate(argv) if a == "--label"]
    assert "perfsuite=1" in labels
    assert any(lab.startswith(f"perfsuite.owner={os.getpid()}@") for lab in labels)


def test_leftovers_of_a_killed_run_are_removed_and_a_live_runs_kept(tmp_path):
    from perfsuite.container import remove_leftovers

    engine = _engine_or_skip()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    me = psutil.Process()
    owners = {"dead": f"{ended.pid}@{time.time():.0f}", "live": f"{me.pid}@{me.create_time():.0f}"}
    names = {k: f"perfsuite-test-{k}-{uuid.uuid4().hex[:8]}" for k in owners}
    try:
        for k, owner in owners.items():
            done = engine.run(
                *("run", "-d", "--name", names[k], "--label", "perfsuite=1", "--label", f"perfsuite.owner={owner}"),
                *("--network", "host", "--rootfs", "/:O", "sleep", "300"),
                timeout_s=60,
            )
            assert done.returncode == 0, done.stderr
        removed = remove_leftovers(engine, timeout_s=120)
        assert names["dead"] in removed and names["live"] not in removed
        assert names["dead"] not in _containers(engine) and names["live"] in _containers(engine)
    finally:
        for name in names.values():
            engine.run("rm", "-f", "-t", "0", name, timeout_s=60)
