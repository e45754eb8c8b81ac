"""The static-batch transformers engine behind hf-naive, TorchServe's handler and the Ray Serve
deployment, on the real local model: tokens equal transformers' own greedy generate, per request,
whatever the batch's padding; a batch runs as long as its longest request."""

import pytest
import torch

from perfsuite.model import build_model
from perfsuite_plugins.hf_engine import Generator, Job, parse_request


@pytest.fixture(scope="module")
def gen():
    return Generator(str(build_model()), threads=1, max_model_len=256)


def test_batched_tokens_equal_transformers_generate_for_each_request(gen):
    a = gen.tokenizer.encode("The object returned by the function is a new reference")
    b = gen.tokenizer.encode("for x in range")
    jobs = [Job(a, 7), Job(b, 4)]
    steps = list(gen.generate(jobs))
    assert len(steps) == 7  # static: the batch runs for its longest request
    got = [[s[i] for s in steps if s[i] is not None] for i in range(2)]
    assert [len(g) for g in got] == [7, 4]
    assert all(s[1] is None for s in steps[4:])  # the short request is done, its row still occupied
    for job, tokens in zip(jobs, got):
        ref = gen.model.generate(
            torch.tensor([job.prompt_ids]),
            max_new_tokens=job.max_tokens,
            min_new_tokens=job.max_tokens,
            do_sample=False,
        )
        assert tokens == ref[0, len(job.prompt_ids) :].tolist()


def test_requests_are_tokenized_as_vllm_does(gen):
    job = parse_request({"prompt": "hello world", "max_tokens": 3}, gen.tokenizer, chat=False)
    assert job.prompt_ids == gen.tokenizer.encode("hello world") and job.max_tokens == 3
    messages = [{"role": "user", "content": "hi"}]
    chat = parse_request({"messages": messages, "max_tokens": 2}, gen.tokenizer, chat=True)
    templated = gen.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert chat.prompt_ids == list(templated["input_ids"] if hasattr(templated, "keys") else templated)


@pytest.mark.parametrize(
    ("body", "chat", "message"),
    [
        ({"prompt": "x"}, False, "max_tokens must be a whole number"),
        ({"prompt": "", "max_tokens": 2}, False, "prompt must be a non-empty string"),
        ({"messages": [], "max_tokens": 2}, True, "messages must be a non-empty list"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(gen, body, chat, message):
    with pytest.raises(ValueError, match=message):
        parse_request(body, gen.tokenizer, chat)


def test_a_request_longer_than_the_model_is_refused(gen):
    with pytest.raises(ValueError, match="max_model_len 256"):
        gen.check(Job([1] * 200, 100))
