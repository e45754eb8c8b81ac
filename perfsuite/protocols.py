"""Wire formats the load generator speaks: each builds a request's payload and parses one streamed line.

The transport (one HTTP POST, reading the stream, splitting lines, taking timestamps) is the load
generator's single loop (perfsuite.loadgen); a protocol never sees a socket or a clock. The OpenAI
protocol lives here; protocols of one framework live beside its plugin (TorchServe's JSON lines,
TGI's /generate_stream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from perfsuite.workloads import RequestSpec

__all__ = ["EventKind", "StreamEvent", "StreamProtocol", "OpenAIProtocol", "TOKEN", "DONE", "prompt_field"]


class EventKind(Enum):
    """What one streamed line says."""

    TOKEN = "token"  # a chunk of output (its text may be empty); timed by the load generator
    USAGE = "usage"  # token counts and no output
    ERROR = "error"  # the server failed the request in the stream
    DONE = "done"  # the stream is over; later lines are not read


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One parsed line. A TOKEN event may also carry the counts (TGI's last event, vLLM's continuous usage)."""

    kind: EventKind
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    message: str | None = None

    @property
    def has_counts(self) -> bool:
        return self.prompt_tokens is not None or self.output_tokens is not None


TOKEN = StreamEvent(EventKind.TOKEN)  # shared: a plain token costs no allocation on the hot path
DONE = StreamEvent(EventKind.DONE)


@runtime_checkable
class StreamProtocol(Protocol):
    """A streaming API: where to POST, what to send, how to read one line of the answer.

    exact_lengths: the server is asked for exact input and output lengths (ignore_eos) and reports
    both, so a count that differs from the request fails it.
    """

    path: str
    api: str  # "completions" (a prompt) or "chat" (messages)
    exact_lengths: bool

    def payload(self, model: str, spec: RequestSpec) -> dict: ...

    def parse(self, line: bytes) -> StreamEvent | None:
        """The event on one line (without its b"\\n"), or None for a line that carries nothing."""
        ...


def prompt_field(api: str, spec: RequestSpec) -> dict:
    """The request's text as the api takes it: {"messages": [...]} for chat, else {"prompt": "..."}."""
    return {"messages": spec.messages} if api == "chat" else {"prompt": spec.prompt}


class OpenAIProtocol:
    """Streaming /v1/completions or /v1/chat/completions, with vLLM's extensions for exact lengths.

    Every event with choices is a token (its text may be empty, e.g. a special token or the chat role
    chunk; vLLM's own client counts it too); counts come from the usage event (include_usage)."""

    exact_lengths = True

    def __init__(self, api: str = "completions") -> None:
        self.api = api
        self.path = "/v1/chat/completions" if api == "chat" else "/v1/completions"

    def payload(self, model: str, spec: RequestSpec) -> dict:
        body = {
            "model": model,
            "max_tokens": spec.output_tokens,
            "min_tokens": spec.output_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return body | prompt_field(self.api, spec)

    def parse(self, line: bytes) -> StreamEvent | None:
        if not line.startswith(b"data:"):
            return None  # blank separators, ": ping" comments, "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            return DONE
        event = json.loads(data)
        if "error" in event:
            return StreamEvent(EventKind.ERROR, message=str(event["error"]))
        usage = event.get("usage")
        if usage:
            kind = EventKind.TOKEN if event.get("choices") else EventKind.USAGE
            return StreamEvent(kind, usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return TOKEN if event.get("choices") else None
