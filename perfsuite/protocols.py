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
from typing import Any, Protocol, runtime_checkable

import msgspec

from perfsuite.workloads import RequestSpec

__all__ = [
    "EventKind",
    "StreamEvent",
    "StreamProtocol",
    "OpenAIProtocol",
    "TOKEN",
    "REASONING",
    "EMPTY",
    "DONE",
    "prompt_field",
]


class EventKind(Enum):
    """What one streamed line says."""

    TOKEN = "token"  # a chunk of output (its text may be empty); timed by the load generator
    USAGE = "usage"  # token counts and no output
    ERROR = "error"  # the server failed the request in the stream
    DONE = "done"  # the stream is over; later lines are not read


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One parsed line. A TOKEN event may also carry the counts (TGI's last event, vLLM's continuous usage).

    A TOKEN event is an answer chunk unless `answer` is False: a reasoning model's thinking (`reasoning`,
    vLLM's reasoning parsers) or a chunk with no text at all (the chat role chunk, a bare finish chunk).
    `reasoning_tokens`: the server's own count of them, where its usage report gives one."""

    kind: EventKind
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    message: str | None = None
    answer: bool = True
    reasoning: bool = False
    reasoning_tokens: int | None = None

    @property
    def has_counts(self) -> bool:
        return self.prompt_tokens is not None or self.output_tokens is not None


TOKEN = StreamEvent(EventKind.TOKEN)  # shared: a plain token costs no allocation on the hot path
REASONING = StreamEvent(EventKind.TOKEN, answer=False, reasoning=True)  # a chunk of thinking, no answer text
EMPTY = StreamEvent(EventKind.TOKEN, answer=False)  # choices without text: the role chunk, a bare finish chunk
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


# A protocol may also give, for multi-turn sessions (perfsuite.sessions), which send each answer back:
#   answer_text(line) -> str: the answer text on a TOKEN line;
#   cached_tokens(line) -> int | None: the prompt tokens found in the prefix cache, from a usage line.


def prompt_field(api: str, spec: RequestSpec) -> dict:
    """The request's text as the api takes it: {"messages": [...]} for chat, else {"prompt": "..."}."""
    return {"messages": spec.messages} if api == "chat" else {"prompt": spec.prompt}


class OpenAIProtocol:
    """Streaming /v1/completions or /v1/chat/completions, with vLLM's extensions for exact lengths.

    Every event with choices is a token (its text may be empty, e.g. a special token or the chat role
    chunk; vLLM's own client counts it too); counts come from the usage event (include_usage).

    Reasoning models (vLLM with --reasoning-parser) stream their thinking in `reasoning_content` (older
    vLLM, SGLang) or `reasoning` (newer vLLM, OpenRouter) instead of `content` (`text` on completions):
    such a chunk is REASONING, one with neither is EMPTY, and TOKEN is a chunk of answer text. Telling
    them apart costs two dict lookups on the parsed event (about 80 ns, cheaper than searching the line's
    bytes for b'"reasoning'); a plain answer chunk still returns the shared TOKEN."""

    exact_lengths = True

    def __init__(self, api: str = "completions") -> None:
        self.api = api
        self.path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
        self._text = "content" if api == "chat" else "text"  # where a choice's answer text is

    def payload(self, model: str, spec: RequestSpec) -> dict:
        body = {
            "model": model,
            "max_tokens": spec.output_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if spec.exact_output:
            body |= {"min_tokens": spec.output_tokens, "ignore_eos": True}
        return body | prompt_field(self.api, spec)

    def parse(self, line: bytes) -> StreamEvent | None:
        if not line.startswith(b"data:"):
            return None  # blank separators, ": ping" comments, "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            return DONE
        try:  # the fast path: a chunk without usage or error, decoded into the few fields it needs
            chunk = _decode_chunk(data)
        except msgspec.DecodeError:  # not JSON, or a field of another type: the general path says what it is
            chunk = None
        if chunk is None or chunk.usage is not None or chunk.error is not None:
            return self._parse_json(data)
        if not chunk.choices:
            return None
        part = chunk.choices[0].delta or chunk.choices[0]  # chat: the delta; completions: the choice
        if getattr(part, self._text):
            return TOKEN
        return REASONING if part.reasoning_content or part.reasoning else EMPTY

    def _parse_json(self, data: bytes) -> StreamEvent | None:
        """Any event, from the json module's dicts: usage, errors, and what the fast path cannot type."""
        event = json.loads(data)
        if "error" in event:
            return StreamEvent(EventKind.ERROR, message=str(event["error"]))
        usage = event.get("usage")
        if usage:
            return self._counted(event.get("choices"), usage)
        choices = event.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if (choice.get("delta") or choice).get(self._text):  # chat: the delta; completions: the choice
            return TOKEN
        return _unanswered(choice)

    def answer_text(self, line: bytes) -> str:
        """The answer text on a TOKEN line (multi-turn sessions send it back as the history)."""
        choices = json.loads(line[5:]).get("choices") or [{}]
        part = choices[0].get("delta") or choices[0]
        return part.get(self._text) or ""

    def cached_tokens(self, line: bytes) -> int | None:
        """Prompt tokens the server found in its prefix cache, from a usage line (vLLM with
        --enable-prompt-tokens-details: usage.prompt_tokens_details.cached_tokens); None if not said."""
        usage = json.loads(line[5:]).get("usage") or {}
        return (usage.get("prompt_tokens_details") or {}).get("cached_tokens")

    def _counted(self, choices, usage: dict) -> StreamEvent:
        """A usage event (kind USAGE), or a token that carries the counts (vLLM's continuous usage)."""
        details = usage.get("completion_tokens_details") or {}
        thought = details.get("reasoning_tokens", usage.get("reasoning_tokens"))  # SGLang: at the top level
        counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if not choices:
            return StreamEvent(EventKind.USAGE, *counts, reasoning_tokens=thought)
        choice = choices[0]
        if (choice.get("delta") or choice).get(self._text):
            return StreamEvent(EventKind.TOKEN, *counts, reasoning_tokens=thought)
        reasoning = _unanswered(choice).reasoning
        return StreamEvent(EventKind.TOKEN, *counts, answer=False, reasoning=reasoning, reasoning_tokens=thought)


def _unanswered(choice: dict) -> StreamEvent:
    """A choice without answer text: thinking (a non-empty `reasoning_content` or `reasoning`) or nothing.
    SGLang writes `"reasoning_content": null` in every delta: null is no reasoning."""
    part = choice.get("delta") or choice
    return REASONING if part.get("reasoning_content") or part.get("reasoning") else EMPTY


class _Part(msgspec.Struct):
    """The fields of a streamed choice (or of its chat delta) that the fast path reads; msgspec skips the
    rest without building them (1.3 us per vLLM token event against 8 us for json.loads, on the 2-core
    CI VM: benchmarks/RESULTS.md)."""

    text: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    delta: _Part | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Part] | None = None
    usage: Any = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
