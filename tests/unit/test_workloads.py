"""Exact-length prompts from the real local model's tokenizer, and the model folder's determinism."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsuite.errors import UsageError
from perfsuite.loadgen import Load
from perfsuite.model import TinyModelSpec, build_model, corpus_text
from perfsuite.workloads import PromptBuilder, Workload, get_workload, load_workloads


@pytest.fixture(scope="session")
def model_dir():
    return build_model()  # cached under ~/.cache/perfsuite after the first build


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def corpus():
    return corpus_text()


@pytest.fixture
def builder(tokenizer, corpus):
    return PromptBuilder(tokenizer, corpus, seed=0)


@pytest.fixture(scope="session")
def shared_builder(tokenizer, corpus):
    return PromptBuilder(tokenizer, corpus, seed=0)


def server_count(tokenizer, text):
    """Prompt tokens as an OpenAI-compatible server counts them for /v1/completions."""
    return len(tokenizer(text)["input_ids"])


def chat_count(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def in_range(n, lo_hi):
    return lo_hi[0] <= n <= lo_hi[1]


def test_packaged_workloads():
    wl = load_workloads()
    assert {"chat", "rag", "throughput"} <= set(wl)
    assert wl["chat"].api == "chat"
    assert wl["rag"].shared_prefix_tokens > 0
    assert wl["throughput"].input_tokens == (128, 128)


def test_completions_prompts_are_exact(builder, tokenizer):
    wl = get_workload("throughput")
    specs = builder.requests(wl, 8, seed=0)
    assert len(specs) == 8
    for s in specs:
        assert s.messages is None
        assert s.input_tokens == 128 and s.output_tokens == 128
        assert server_count(tokenizer, s.prompt) == 128
        assert builder.count(s.prompt) == 128
    assert len({s.prompt for s in specs}) == 8  # distinct texts


def test_rag_prompts_share_a_prefix_and_are_exact(builder, tokenizer):
    wl = get_workload("rag")
    specs = builder.requests(wl, 8, seed=1)
    ids = [tokenizer(s.prompt)["input_ids"] for s in specs]
    for s, i in zip(specs, ids):
        distinct = s.input_tokens - wl.shared_prefix_tokens
        assert in_range(distinct, wl.input_tokens)
        assert in_range(s.output_tokens, wl.output_tokens)
        assert len(i) == s.input_tokens  # shared prefix + distinct part, exactly
    # The shared document is the same tokens in every prompt (what a prefix cache can reuse).
    common = 0
    while all(len(i) > common and i[common] == ids[0][common] for i in ids):
        common += 1
    assert common >= wl.shared_prefix_tokens - 8  # at most the boundary word may merge differently
    assert len({s.prompt for s in specs}) == 8


def test_chat_prompts_count_the_template(builder, tokenizer):
    wl = get_workload("chat")
    specs = builder.requests(wl, 8, seed=2)
    for s in specs:
        assert s.messages == [{"role": "user", "content": s.prompt}]
        assert s.input_tokens == chat_count(tokenizer, s.messages)
        assert s.input_tokens > builder.count(s.prompt)  # role markers and the generation prompt
        assert in_range(builder.count(s.prompt), wl.input_tokens)
        assert in_range(s.output_tokens, wl.output_tokens)


@pytest.mark.parametrize("workload", ["chat", "rag", "throughput"])
def test_lengths_within_ranges(builder, workload):
    wl = get_workload(workload)
    for s in builder.requests(wl, 30, seed=5):
        assert in_range(builder.count(s.prompt) - wl.shared_prefix_tokens, wl.input_tokens)
        assert in_range(s.output_tokens, wl.output_tokens)


def custom(api="completions", inp=(5, 40), out=(1, 9), prefix=0):
    return Workload(
        name="custom", description="", use="", api=api, input_tokens=inp, output_tokens=out, shared_prefix_tokens=prefix
    )


def test_lengths_are_drawn_across_the_range(builder):
    specs = builder.requests(custom(inp=(5, 8), out=(1, 3)), 60, seed=0)
    assert {s.input_tokens for s in specs} == {5, 6, 7, 8}
    assert {s.output_tokens for s in specs} == {1, 2, 3}


@pytest.mark.parametrize("workload", ["chat", "rag", "throughput"])
def test_deterministic_for_a_seed(tokenizer, corpus, workload):
    wl = get_workload(workload)
    a = PromptBuilder(tokenizer, corpus, seed=0)
    b = PromptBuilder(tokenizer, corpus, seed=0)
    first = a.requests(wl, 5, seed=7)
    b.requests(get_workload("rag"), 3, seed=1)  # whatever was built before does not matter
    assert b.requests(wl, 5, seed=7) == first
    assert a.requests(wl, 5, seed=7) == first  # asking the same builder again gives the same
    assert a.requests(wl, 5, seed=8) != first


@settings(max_examples=25)
@given(n=st.integers(min_value=1, max_value=400), after=st.sampled_from(["", "Question: ", "The end.\n\n"]))
def test_text_has_exact_length(shared_builder, n, after):
    text = shared_builder.text(n, after=after)
    # What requests rely on: the text adds exactly n tokens to what precedes it. (Alone, its first
    # token may merge differently, so count(text) == n holds only when nothing precedes it.)
    assert shared_builder.count(after + text) == shared_builder.count(after) + n
    if not after:
        assert shared_builder.count(text) == n


def test_custom_workload_file(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(
        json.dumps(
            {
                "workloads": {
                    "short": {"input_tokens": 16, "output_tokens": [4, 8]},
                    "doc": {"api": "chat", "input_tokens": [10, 20], "output_tokens": 5, "shared_prefix_tokens": 100},
                }
            }
        )
    )
    wl = load_workloads(path)
    assert wl["short"].api == "completions" and wl["short"].input_tokens == (16, 16)
    assert wl["short"].output_tokens == (4, 8)
    assert wl["doc"].api == "chat" and wl["doc"].shared_prefix_tokens == 100


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"api": "embeddings", "input_tokens": 1, "output_tokens": 1}, "api must be"),
        ({"input_tokens": [10, 5], "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": [0, 5], "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": 8, "output_tokens": "lots"}, "output_tokens"),
        ({"input_tokens": [1, 2, 3], "output_tokens": 1}, "input_tokens"),
    ],
)
def test_bad_workload_file(tmp_path, entry, match):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"workloads": {"bad": entry}}))
    with pytest.raises(UsageError, match=match):
        load_workloads(path)


def test_unknown_workload_lists_known():
    with pytest.raises(UsageError, match="article, chat, mooncake, multi-turn, rag, sharegpt, throughput"):
        get_workload("nope")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Load(arrival="burst"),
        lambda: Load.closed(0),
        lambda: Load(arrival="closed", concurrency=None),
        lambda: Load.poisson(0),
        lambda: Load.constant(-1.0),
        lambda: Load(arrival="poisson"),
        lambda: Load.closed(4, requests=None, duration_s=None),
        lambda: Load.closed(4, requests=0),
    ],
)
def test_bad_load_raises_usage_error(make):
    with pytest.raises(UsageError):
        make()


def test_load_labels():
    assert Load.closed(8, requests=48).label() == "c8-n48"
    assert Load.poisson(2.5, requests=None, duration_s=30).label() == "poisson2.5/s-30s"
    assert Load.poisson(2.5).concurrency is None


SMALL = TinyModelSpec(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    vocab_size=512,
)


def test_model_folder_is_deterministic(tmp_path):
    a = build_model(SMALL, tmp_path / "a")
    b = build_model(SMALL, tmp_path / "b")
    assert a.name == b.name == f"tiny-llama-{SMALL.key()}"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    config = json.loads((a / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 1
    # no half-built folders left beside the model
    assert sorted(os.listdir(a.parent)) == [a.name]
    # built once: the second call returns the cached folder untouched
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_model(SMALL, tmp_path / "a") == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime


def test_spec_key_depends_on_the_spec():
    assert SMALL.key() != TinyModelSpec().key()
    assert SMALL.key() == TinyModelSpec(**{**SMALL.__dict__}).key()
