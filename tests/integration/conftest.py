"""Fixtures the real-server integration tests share."""

import pytest

from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.model import build_model


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real vLLM server on the CPU default with the tiny model, for one test module: (server, model
    folder). Its log goes to pytest's temporary folder, which pytest prunes."""
    from perfsuite_plugins.vllm import VLLMPlugin

    model = str(build_model())
    running = VLLMPlugin().start(model, EngineSettings(), resolve_profile("cpu"), tmp_path_factory.mktemp("vllm-logs"))
    yield running, model
    running.stop()
