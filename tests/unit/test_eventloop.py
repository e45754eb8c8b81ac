"""perfsuite.eventloop: uvloop where installed, PERFSUITE_LOOP to choose, a clear error otherwise."""

import asyncio
import builtins

import pytest
import uvloop

from perfsuite import eventloop
from perfsuite.errors import UsageError
from perfsuite.runner import provenance


async def _loop_type():
    return type(asyncio.get_running_loop())


def test_the_default_is_uvloop_and_the_environment_can_pick_asyncio(monkeypatch):
    monkeypatch.delenv("PERFSUITE_LOOP", raising=False)
    assert eventloop.loop_name() == "uvloop" and eventloop.run(_loop_type()) is uvloop.Loop
    monkeypatch.setenv("PERFSUITE_LOOP", "asyncio")
    assert eventloop.run(_loop_type()) is not uvloop.Loop


def test_without_uvloop_it_falls_back_unless_asked_for(monkeypatch):
    real_import = builtins.__import__

    def no_uvloop(name, *args, **kwargs):
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    monkeypatch.delenv("PERFSUITE_LOOP", raising=False)
    assert eventloop.loop_name() == "asyncio"
    monkeypatch.setenv("PERFSUITE_LOOP", "uvloop")
    with pytest.raises(UsageError, match="uvloop is not installed"):
        eventloop.loop_name()


def test_an_unknown_loop_names_the_choices(monkeypatch):
    monkeypatch.setenv("PERFSUITE_LOOP", "trio")
    with pytest.raises(UsageError, match="PERFSUITE_LOOP='trio': must be one of uvloop, asyncio"):
        eventloop.loop_name()


def test_every_measurement_says_which_client_took_it(monkeypatch):
    monkeypatch.setenv("PERFSUITE_TRANSPORT", "aiohttp")
    monkeypatch.setenv("PERFSUITE_LOOP", "asyncio")
    assert provenance()["load_generator"] == {"transport": "aiohttp", "loop": "asyncio"}
    monkeypatch.delenv("PERFSUITE_TRANSPORT")
    monkeypatch.delenv("PERFSUITE_LOOP")
    assert provenance()["load_generator"] == {"transport": "http1", "loop": "uvloop"}
