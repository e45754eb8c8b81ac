"""Every framework's servers listen on 127.0.0.1 only: checked on the live process tree of each one
that runs here (TorchServe's Java front end, its gRPC and metrics ports, hf-naive, Ray Serve's proxy).

One exception, found by this test and documented in docs/frameworks.md: Ray 2.60's own gRPC servers
(GCS, raylet, agents, workers) listen on every interface whatever node address it is given; perfsuite
can only keep the HTTP proxy it serves on, and the node address, on loopback."""

import ipaddress

import psutil
import pytest

from perfsuite.frameworks import EngineSettings, load_frameworks
from perfsuite.hardware import resolve_profile
from perfsuite.model import build_model

pytestmark = pytest.mark.perf


def _listening(procs: list[psutil.Process]) -> set[tuple[str, int, str]]:
    found = set()
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.add((c.laddr.ip, c.laddr.port, p.name()))
        except psutil.Error:
            continue
    return found


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # Java reports ::ffff:127.0.0.1
    return (mapped or addr).is_loopback


@pytest.mark.parametrize("framework", ["hf-naive", "torchserve", "ray-serve"])
def test_servers_listen_on_loopback_only(framework, tmp_path):
    plugin = load_frameworks()[framework]
    if reason := plugin.unavailable():
        pytest.skip(f"{framework}: {reason}")
    server = plugin.start(str(build_model()), EngineSettings(), resolve_profile("cpu"), tmp_path, 300)
    try:
        sockets = _listening(server.process.tree())
    finally:
        server.stop()
    assert sockets, "no listening socket found in the server's process tree"
    exposed = sorted(s for s in sockets if not _loopback(s[0]))
    if framework == "ray-serve":
        served = int(server.endpoint.base_url.rsplit(":", 1)[1])
        assert any(port == served for _, port, _ in sockets), "the HTTP proxy was not found"
        exposed = [s for s in exposed if s[1] == served]  # Ray's internal gRPC servers: see the docstring
    assert exposed == [], "\n".join(map(str, exposed))
