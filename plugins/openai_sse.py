"""The OpenAI streaming format (server-sent events) that perfsuite's own servers speak: hf-naive and
the Ray Serve deployment. Only what the load generator and common clients use: text chunks, a final
usage event (`stream_options.include_usage`), and `data: [DONE]`."""

from __future__ import annotations

import json
import time
import uuid

__all__ = ["token_event", "usage_event", "error_event", "DONE"]

DONE = b"data: [DONE]\n\n"


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _head(chat: bool, model: str, rid: str) -> dict:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model}


def new_id() -> str:
    return "cmpl-" + uuid.uuid4().hex[:16]


def token_event(chat: bool, model: str, rid: str, text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    return _event({**_head(chat, model, rid), "choices": [choice]})


def usage_event(chat: bool, model: str, rid: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return _event({**_head(chat, model, rid), "choices": [], "usage": usage})


def error_event(message: str) -> bytes:
    return _event({"error": {"message": message, "type": "server_error"}})
