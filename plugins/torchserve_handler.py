"""The TorchServe handler perfsuite archives: transformers generation for the batch TorchServe formed
(batchSize, maxBatchDelay), streamed through intermediate responses.

Request body (JSON): {"prompt": str} or {"messages": [...]}, and "max_tokens". The response is chunked
HTTP (TorchServe's streaming has no SSE framing) holding JSON lines: {"text": str} per token, then
{"usage": {"prompt_tokens", "completion_tokens"}} as the final response. An error is {"error": str}.

This file is copied into the model archive; at run time it imports perfsuite_plugins.hf_engine from the
environment TorchServe's worker runs in (the same Python that started torchserve).
"""

from __future__ import annotations

import json

from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from perfsuite_plugins.hf_engine import Generator, pin_engine_thread


def _line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


class StreamingGenerateHandler(BaseHandler):
    def initialize(self, context) -> None:
        pin_engine_thread()
        cfg = context.model_yaml_config.get("handler", {})
        self.generator = Generator(cfg["model_dir"], max_model_len=cfg.get("max_model_len"))
        self.initialized = True

    def handle(self, data, context):
        """One batch: parse every row, stream a token per step to each unfinished row, end with usage."""
        ids = context.request_ids  # {row index: request id}
        jobs, answers = {}, [None] * len(data)
        for i, row in enumerate(data):
            body = row.get("body") or row.get("data")
            try:
                if isinstance(body, (bytes, bytearray)):
                    body = json.loads(body)
                job = self.generator.job(body, chat="messages" in body)
                jobs[i] = job
            except (ValueError, TypeError, AttributeError) as exc:
                answers[i] = _line({"error": f"bad request: {exc}"})
        order = sorted(jobs)
        produced = dict.fromkeys(order, 0)
        if order:
            for step in self.generator.generate([jobs[i] for i in order]):
                out, live = [""] * len(data), {}
                for i, tok in zip(order, step):
                    if tok is not None:
                        out[i] = _line({"text": self.generator.text(tok)})
                        produced[i] += 1
                        live[i] = ids[i]
                if live:
                    send_intermediate_predict_response(out, live, "Intermediate Prediction success", 200, context)
        for i in order:
            usage = {"prompt_tokens": len(jobs[i].prompt_ids), "completion_tokens": produced[i]}
            answers[i] = _line({"usage": usage})
        return answers
