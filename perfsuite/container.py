"""Container launch mode, shared by every framework plugin: Docker or Podman command lines, ports
published on loopback only, environment passed by name (values never appear on a command line),
volumes, GPU flags, logs kept, and the container removed on teardown and on failure.

A ContainerSpec says what to run; `ContainerServer` runs it attached (`run --rm`, output to the log)
under the same ServerProcess discipline as a plain subprocess: readiness with a deadline, and a stop
that asks the engine to stop the container (with a timeout longer than the framework's grace period)
before killing anything.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from perfsuite.errors import UsageError
from perfsuite.server import ServerProcess

__all__ = [
    "ContainerEngine",
    "ContainerSpec",
    "ContainerServer",
    "find_engine",
    "run_argv",
    "why_not_runnable",
    "hub_secrets",
    "remove_leftovers",
]

HOST_ROOTFS = "host"  # the image name that means: run on the host's own file system (no registry needed)
LABEL = "perfsuite=1"  # on every container perfsuite starts
OWNER_LABEL = "perfsuite.owner"  # "<pid>@<start time>" of the process that started it


@dataclass(frozen=True)
class ContainerEngine:
    """The engine's command prefix, e.g. ["docker"] or ["podman", "--runtime", "/usr/sbin/runc"]."""

    argv: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "podman" if "podman" in Path(self.argv[0]).name else "docker"

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout_s)

    def works(self) -> str | None:
        """Why this engine cannot run containers here, or None."""
        try:
            done = self.run("info", timeout_s=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{shlex.join(self.argv)} info` failed: {exc}"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"`{shlex.join(self.argv)} info` failed: {last}"
        return None

    def has_image(self, image: str) -> bool:
        if image == HOST_ROOTFS:
            return True
        try:
            return self.run("image", "inspect", image, timeout_s=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def find_engine(spec: str | None = None) -> ContainerEngine | None:
    """The engine named by `spec` (a command line such as "podman --runtime /usr/sbin/runc"), or, with
    no spec, Docker when its daemon answers, else Podman (with runc as its runtime when runc is
    installed: crun fails on some kernels' cgroup layouts). None when no engine is found."""
    if spec:
        argv = tuple(shlex.split(spec))
        if not argv or not shutil.which(argv[0]):
            raise UsageError(f"--perf-container-engine={spec!r}: {argv[0] if argv else 'nothing'} not found on PATH")
        return ContainerEngine(argv)
    docker = shutil.which("docker")
    if docker and ContainerEngine((docker,)).works() is None:
        return ContainerEngine((docker,))
    podman = shutil.which("podman")
    if podman:
        runc = shutil.which("runc") or (p if Path(p := "/usr/sbin/runc").exists() else None)
        return ContainerEngine((podman, "--runtime", runc) if runc else (podman,))
    return ContainerEngine((docker,)) if docker else None  # its works() then says what is wrong


def engine_from_env() -> ContainerEngine | None:
    """The engine $PERFSUITE_CONTAINER_ENGINE names, or the one found (see find_engine)."""
    return find_engine(os.environ.get("PERFSUITE_CONTAINER_ENGINE"))


def hub_secrets() -> dict[str, str]:
    """Hugging Face tokens from the environment, for a container's `--env NAME` (never its command line)."""
    return {k: os.environ[k] for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if k in os.environ}


def why_not_runnable(image: str, image_env: str) -> str | None:
    """Why a container of `image` cannot run here (no engine, engine broken, image absent), or None.
    `image_env` is the variable that chooses the image, named in the message."""
    try:
        engine = engine_from_env()
    except UsageError as exc:
        return str(exc)
    if engine is None:
        return "no container engine (docker or podman) found on PATH"
    problem = engine.works()
    if problem:
        return problem
    if not engine.has_image(image):
        return f"image {image} is not present locally (pull it, or set {image_env})"
    return None


@dataclass
class ContainerSpec:
    """What to run in a container. image=HOST_ROOTFS runs on the host's file system (`--rootfs /:O`,
    an overlay: writes inside do not reach the host), for machines with no registry."""

    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[tuple[str, str, str]] = field(default_factory=list)  # (host, container, "ro"|"rw")
    ports: list[int] = field(default_factory=list)  # published as 127.0.0.1:P:P
    network_host: bool = False  # share the host's network (the server must bind 127.0.0.1 itself)
    gpus: bool = False
    shm_size: str | None = None
    cpuset: set[int] | None = None
    name: str = field(default_factory=lambda: "perfsuite-" + uuid.uuid4().hex[:12])
    stop_timeout_s: int = 30  # the engine's grace period before it kills the container


def run_argv(engine: ContainerEngine, spec: ContainerSpec) -> list[str]:
    """`ENGINE run ...` for `spec`: attached, removed when it exits, labelled as perfsuite's."""
    argv = [*engine.argv, "run", "--rm", "--name", spec.name, "--label", LABEL, "--label", _owner()]
    argv += ["--stop-timeout", str(spec.stop_timeout_s)]
    if spec.network_host:
        argv += ["--network", "host"]
    else:
        for port in spec.ports:
            argv += ["-p", f"127.0.0.1:{port}:{port}"]
    for key in spec.env:
        argv += ["--env", key]  # by name: the value comes from the engine client's environment
    for host, inside, mode in spec.volumes:
        argv += ["-v", f"{host}:{inside}:{mode}"]
    if spec.gpus:
        argv += ["--gpus", "all"] if engine.kind == "docker" else ["--device", "nvidia.com/gpu=all"]
    if spec.shm_size:
        argv += ["--shm-size", spec.shm_size]
    if spec.cpuset:
        argv += ["--cpuset-cpus", ",".join(map(str, sorted(spec.cpuset)))]
    if spec.image == HOST_ROOTFS:
        argv += ["--rootfs", "/:O"]
    else:
        argv.append(spec.image)
    return argv + list(spec.command)


def _owner() -> str:
    me = psutil.Process()
    return f"{OWNER_LABEL}={me.pid}@{me.create_time():.0f}"


def _owner_gone(owner: str) -> bool:
    """True when the process an owner label names ("<pid>@<start time>") has ended (its pid unused, or
    used by a later process); False when it runs or the label cannot be read."""
    pid, _, started = owner.partition("@")
    try:
        proc = psutil.Process(int(pid))
        return bool(started) and abs(proc.create_time() - float(started)) > 2
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return False


def remove_leftovers(engine: ContainerEngine, timeout_s: float = 120) -> list[str]:
    """Remove the containers perfsuite started in runs whose process has ended (killed before it could
    clean up); their names. Containers of a live run, and labelled ones without an owner (started by an
    older perfsuite, maybe still running), are left alone. Gives up at `timeout_s`."""
    deadline = time.monotonic() + timeout_s

    def run(*args: str) -> subprocess.CompletedProcess | None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            return engine.run(*args, timeout_s=left)
        return None

    listed = run("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}")
    removed = []
    for name in listed.stdout.split() if listed and listed.returncode == 0 else []:
        owner = run("inspect", "--format", f'{{{{index .Config.Labels "{OWNER_LABEL}"}}}}', name)
        label = owner.stdout.strip() if owner and owner.returncode == 0 else ""
        if not label or label == "<no value>" or not _owner_gone(label):
            continue
        done = run("rm", "-f", name)
        if done and done.returncode == 0:
            removed.append(name)
    return removed


class ContainerServer(ServerProcess):
    """A server in a container, run attached by the engine's client (whose output is the log)."""

    def __init__(self, name: str, engine: ContainerEngine, spec: ContainerSpec, log_path, ready, **kw) -> None:
        env = dict(kw.pop("env", None) or os.environ)  # the engine client needs PATH and the like
        env.update(spec.env)
        super().__init__(name, run_argv(engine, spec), log_path, ready, env=env, **kw)
        self.engine = engine
        self.spec = spec
        self._container_pid: int | None = None
        self.stop_timeout_s = max(self.stop_timeout_s, spec.stop_timeout_s + 10)

    def container_pid(self) -> int | None:
        """The host pid of the container's first process (its tree is not the client's children).
        Asked of the engine once: telemetry samples the tree every half second."""
        if self._container_pid is None or not psutil.pid_exists(self._container_pid):
            self._container_pid = self._inspect_pid()
        return self._container_pid

    def _inspect_pid(self) -> int | None:
        try:
            done = self.engine.run("inspect", "--format", "{{.State.Pid}}", self.spec.name, timeout_s=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        pid = done.stdout.strip()
        return int(pid) if done.returncode == 0 and pid.isdigit() and int(pid) > 0 else None

    def tree(self) -> list[psutil.Process]:
        procs = super().tree()
        pid = self.container_pid() if self.alive() else None
        if pid:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
        return procs

    def stop(self) -> None:
        """Stop the container through the engine (SIGTERM, then SIGKILL after its timeout), stop the
        client, and remove the container whatever state it is in."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.engine.run("stop", "-t", str(self.spec.stop_timeout_s), self.spec.name, timeout_s=self.stop_timeout_s)
        try:
            super().stop()
        finally:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.engine.run("rm", "-f", self.spec.name, timeout_s=60)
