"""Requests built from files (perfsuite.traffic) with the tiny model's real tokenizer, Load.replay, and
the `perfsuite load` flags that choose the traffic.

Covered, with small files written in tmp_path:
- datasets: exact input lengths, filters and the model's length dropping and counting entries (and
  SourcedRequests.notes), nothing left is an error, output lengths (given, from the answer, a default,
  none), deterministic sampling that cycles, the chat template counted, messages on completions refused;
- traces: prompts of exactly input_length tokens, shared first hash id -> the same first 512 tokens,
  arrival times, natural lengths (no min_tokens/ignore_eos in the payload), a changed file refused;
- Load.replay: speedup only in a trace's to_dict, checked, in the label;
- `perfsuite load`: conflicting or incomplete flags fail with exit status 2 before any request.
"""

import json
import math
import re
import urllib.request

import pytest
import transformers

from perfsuite.cli import main
from perfsuite.errors import UsageError
from perfsuite.loadgen import Load
from perfsuite.model import build_model, corpus_text
from perfsuite.protocols import OpenAIProtocol
from perfsuite.sources import MOONCAKE_BLOCK_TOKENS
from perfsuite.traffic import sourced_requests
from perfsuite.workloads import PromptBuilder, Workload


@pytest.fixture(scope="module")
def model_dir():
    return build_model()  # cached under ~/.cache/perfsuite after the first build


@pytest.fixture(scope="module")
def prompts(model_dir):
    return PromptBuilder(transformers.AutoTokenizer.from_pretrained(model_dir), corpus_text())


@pytest.fixture(scope="module")
def tok(prompts):
    return prompts.tokenizer


def _write_lines(path, *objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def _words(n: int) -> str:
    return " ".join(corpus_text().split()[1000 : 1000 + n])


def _requests(workload, prompts, max_model_len=2048):
    return sourced_requests(workload.source, prompts, workload.api, max_model_len)


# -- datasets ------------------------------------------------------------------------------------


def test_dataset_input_lengths_are_the_tokenizers_and_output_lengths_as_given(tmp_path, prompts, tok):
    path = tmp_path / "sg.json"
    conversations = [
        {"conversations": [{"from": "human", "value": _words(30)}, {"from": "gpt", "value": _words(12)}]},
        {"conversations": [{"from": "gpt", "value": "no question asked"}]},
    ]
    path.write_text(json.dumps(conversations))
    sourced = _requests(Workload.from_file(path), prompts)
    (spec,) = sourced.specs
    assert spec.prompt == _words(30) and spec.messages is None and spec.exact_output
    assert spec.input_tokens == len(tok.encode(_words(30)))
    assert spec.output_tokens == len(tok.encode(_words(12), add_special_tokens=False))  # the answer's length
    assert sourced.dropped == {"no human turn": 1}  # the file's skips are counted with the drops
    assert sourced.notes() == ["dataset sg.json: 1 requests usable", "dataset sg.json: 1 dropped: no human turn"]


def test_dataset_filters_and_the_model_length_drop_and_count(tmp_path, prompts, tok):
    path = _write_lines(
        tmp_path / "d.jsonl",
        {"prompt": _words(10), "output_tokens": 4},
        {"prompt": _words(200), "output_tokens": 4},  # prompt over 60 tokens
        {"prompt": _words(5), "output_tokens": 4},
        {"prompt": _words(10), "output_tokens": 300},  # longer than the model allows
        {"prompt": _words(150), "output_tokens": 4},  # prompt over 60 tokens
    )
    assert len(tok.encode(_words(10))) <= 60 < len(tok.encode(_words(150)))
    wl = Workload.from_file(path, max_input_tokens=60)
    sourced = _requests(wl, prompts, max_model_len=256)
    assert [s.prompt for s in sourced.specs] == [_words(10), _words(5)]
    assert sourced.dropped == {"prompt over 60 tokens": 2, "longer than the model allows (256 tokens)": 1}
    assert sourced.notes() == [
        "dataset d.jsonl: 2 requests usable",
        "dataset d.jsonl: 1 dropped: longer than the model allows (256 tokens)",
        "dataset d.jsonl: 2 dropped: prompt over 60 tokens",
    ]
    assert prompts.sourced(wl, 256).dropped == sourced.dropped  # the builder's cached copy: the same


def test_min_input_and_max_output_filters(tmp_path, prompts):
    path = _write_lines(
        tmp_path / "d.jsonl",
        {"prompt": "Hi.", "output_tokens": 4},
        {"prompt": _words(40), "output_tokens": 50},
        {"prompt": _words(40), "output_tokens": 5},
    )
    sourced = _requests(Workload.from_file(path, min_input_tokens=10, max_output_tokens=20), prompts)
    assert [(s.prompt, s.output_tokens) for s in sourced.specs] == [(_words(40), 5)]
    assert sourced.dropped == {"prompt under 10 tokens": 1, "output over 20 tokens": 1}


def test_every_entry_filtered_out_is_an_error(tmp_path, prompts):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": _words(50), "output_tokens": 4})
    wl = Workload.from_file(path, max_input_tokens=5)
    with pytest.raises(UsageError, match=re.escape(f"{path}: no usable requests left (1 prompt over 5 tokens)")):
        _requests(wl, prompts)


def test_a_file_with_no_entries_is_an_error(tmp_path, prompts):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(UsageError, match=re.escape(f"{path}: no usable requests left (the file holds none)")):
        _requests(Workload.from_file(path), prompts)


def test_output_length_missing_names_the_line_unless_a_default_is_given(tmp_path, prompts):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "One.", "output_tokens": 9}, {"prompt": "Two."})
    with pytest.raises(UsageError, match=re.escape(f"{path}:2: no output length") + ".*output_tokens=N"):
        _requests(Workload.from_file(path), prompts)
    sourced = _requests(Workload.from_file(path, output_tokens=7), prompts)
    assert [(s.prompt, s.output_tokens) for s in sourced.specs] == [("One.", 9), ("Two.", 7)]  # the line's wins


def test_dataset_sampling_is_deterministic_per_seed_and_cycles(tmp_path, prompts):
    lines = [{"prompt": f"Question number {i}.", "output_tokens": 3} for i in range(4)]
    sourced = _requests(Workload.from_file(_write_lines(tmp_path / "d.jsonl", *lines)), prompts)
    picks = {seed: [s.prompt for s in sourced.requests(10, seed)] for seed in range(6)}
    assert picks[1] == [s.prompt for s in sourced.requests(10, 1)]  # same seed, same requests
    for chosen in picks.values():
        assert sorted(chosen[:4]) == sorted(line["prompt"] for line in lines)  # each entry once per cycle
        assert chosen[4:8] == chosen[:4] and chosen[8:] == chosen[:2]  # then the same order again
    assert len({tuple(chosen) for chosen in picks.values()}) > 1  # the seed changes the order


def test_consecutive_seeds_get_disjoint_requests_while_the_dataset_lasts(tmp_path, prompts):
    lines = [{"prompt": f"Entry {i}.", "output_tokens": 2} for i in range(9)]
    sourced = _requests(Workload.from_file(_write_lines(tmp_path / "d.jsonl", *lines)), prompts)
    reps = [[s.prompt for s in sourced.requests(3, seed)] for seed in range(4)]
    assert sorted(reps[0] + reps[1] + reps[2]) == sorted(line["prompt"] for line in lines)  # no repeats
    assert reps[3] == reps[0]  # the dataset is used up: it wraps around


def test_chat_api_counts_the_chat_template(tmp_path, prompts):
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    path = _write_lines(tmp_path / "d.jsonl", {"messages": messages, "output_tokens": 6}, {"prompt": "Hello."})
    chat, plain = _requests(Workload.from_file(path, api="chat", output_tokens=2), prompts).specs
    assert chat.messages == messages and chat.prompt == "And of Italy?"
    assert chat.input_tokens == prompts.chat_prompt_tokens(messages) > prompts.count("And of Italy?")
    assert plain.messages == [{"role": "user", "content": "Hello."}]
    assert plain.input_tokens == prompts.chat_prompt_tokens(plain.messages)
    body = OpenAIProtocol("chat").payload("tiny", chat)
    assert body["messages"] == messages and "prompt" not in body


def test_messages_entry_under_the_completions_api_is_an_error(tmp_path, prompts):
    path = _write_lines(
        tmp_path / "d.jsonl",
        {"prompt": "Fine.", "output_tokens": 2},
        {"messages": [{"role": "user", "content": "Hi"}], "output_tokens": 2},
    )
    with pytest.raises(UsageError, match=re.escape(f'{path}:2: a "messages" entry needs the chat API')):
        _requests(Workload.from_file(path, api="completions"), prompts)


# -- traces --------------------------------------------------------------------------------------


def _mooncake(ts, n_in, ids=None, n_out=8):
    ids = list(range(math.ceil(n_in / MOONCAKE_BLOCK_TOKENS))) if ids is None else ids
    return {"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids}


@pytest.fixture
def trace(tmp_path):
    return _write_lines(
        tmp_path / "trace.jsonl",
        _mooncake(2000, 600, [1, 2]),
        _mooncake(2250, 700, [1, 3]),
        _mooncake(2500, 1024, [5, 6]),
        _mooncake(3000, 1024, [5, 6], n_out=3),
        _mooncake(4500, 100, [7]),
        _mooncake(5125, 300, []),
    )


def test_trace_prompts_have_exactly_the_traces_lengths_and_times(trace, prompts, tok):
    specs = prompts.requests(Workload.from_file(trace, kind="trace"), 6, seed=0, max_model_len=2048)
    assert [len(tok.encode(s.prompt)) for s in specs] == [600, 700, 1024, 1024, 100, 300]
    assert [s.input_tokens for s in specs] == [600, 700, 1024, 1024, 100, 300]
    assert [s.output_tokens for s in specs] == [8, 8, 8, 3, 8, 8]
    assert [s.at_s for s in specs] == [0.0, 0.25, 0.5, 1.0, 2.5, 3.125]  # (timestamp - first) / 1000
    assert all(s.exact_output and s.messages is None for s in specs)
    assert len({s.prompt for s in specs}) == 5  # the two with hash ids [5, 6] are the same prompt


def test_trace_requests_sharing_a_hash_id_share_its_tokens(trace, prompts, tok):
    ids = [tok.encode(s.prompt) for s in prompts.requests(Workload.from_file(trace, kind="trace"), 6, seed=0)]
    block = MOONCAKE_BLOCK_TOKENS
    assert ids[0][:block] == ids[1][:block]  # hash id 1
    assert ids[0][block:] != ids[1][block : len(ids[0])]  # then each its own
    assert ids[2] == ids[3]  # hash ids 5, 6: the whole prompt
    assert ids[0][:block] != ids[2][:block]  # 1 and 5 differ
    assert ids[1][:block] != ids[3][:block]


def test_trace_blocks_are_deterministic_per_seed_and_new_for_another(trace, prompts):
    wl = Workload.from_file(trace, kind="trace")
    first = [s.prompt for s in prompts.requests(wl, 6, seed=3)]
    assert first == [s.prompt for s in prompts.requests(wl, 6, seed=3)]
    other = [s.prompt for s in prompts.requests(wl, 6, seed=4)]
    assert all(a != b for a, b in zip(first, other))  # every prefix new in another repetition


def test_trace_count_takes_the_first_requests_in_order(trace, prompts):
    specs = prompts.requests(Workload.from_file(trace, kind="trace"), 2, seed=0)
    assert [(s.input_tokens, s.at_s) for s in specs] == [(600, 0.0), (700, 0.25)]


def test_trace_entries_longer_than_the_model_are_dropped(trace, prompts):
    sourced = _requests(Workload.from_file(trace, kind="trace"), prompts, max_model_len=720)
    assert [e.input_tokens for e in sourced.entries] == [600, 700, 100, 300]
    assert sourced.dropped == {"longer than the model allows (720 tokens)": 2}
    assert sourced.notes()[0] == "trace trace.jsonl: 4 requests usable"


def test_trace_on_the_chat_api_is_an_error(trace, prompts):
    with pytest.raises(UsageError, match=re.escape(f"{trace}: a trace is replayed on the completions API")):
        _requests(Workload.from_file(trace, kind="trace", api="chat"), prompts)


@pytest.mark.parametrize("kind", ["trace", "dataset"])
def test_natural_lengths_let_the_model_stop(tmp_path, trace, prompts, kind):
    path = trace if kind == "trace" else _write_lines(tmp_path / "d.jsonl", {"prompt": "Tell me.", "output_tokens": 8})
    protocol = OpenAIProtocol("completions")
    exact = prompts.requests(Workload.from_file(path, kind=kind), 1, seed=0)[0]
    assert exact.exact_output
    assert protocol.payload("tiny", exact) | {"prompt": ""} == {
        "model": "tiny",
        "max_tokens": 8,
        "min_tokens": 8,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "",
    }
    wl = Workload.from_file(path, kind=kind, natural_lengths=True)
    assert wl.to_dict()["source"]["natural_lengths"] is True
    natural = prompts.requests(wl, 1, seed=0)[0]
    assert natural.exact_output is False and natural.output_tokens == 8  # a cap
    body = protocol.payload("tiny", natural)
    assert body["max_tokens"] == 8 and "min_tokens" not in body and "ignore_eos" not in body


def test_a_file_changed_after_the_workload_was_made_is_refused(trace, prompts):
    wl = Workload.from_file(trace, kind="trace")
    with trace.open("a") as f:
        f.write(json.dumps(_mooncake(9000, 50)) + "\n")
    with pytest.raises(UsageError, match=re.escape(f"{trace}: the file changed while the suite ran")):
        _requests(wl, prompts)


# -- Load.replay ---------------------------------------------------------------------------------

LOAD_KEYS = {"arrival", "concurrency", "rate", "requests", "duration_s", "warmup_requests", "seed", "request_timeout_s"}


def test_replay_to_dict_has_a_speedup_and_other_loads_do_not():
    replay = Load.replay(2.0).to_dict()
    assert replay == {
        "arrival": "trace",
        "concurrency": None,
        "rate": None,
        "requests": None,
        "duration_s": None,
        "warmup_requests": 0,
        "seed": 0,
        "request_timeout_s": 120.0,
        "speedup": 2.0,
    }
    for load in (Load.closed(4), Load.poisson(2.0, requests=10), Load.constant(1.5, duration_s=30.0)):
        assert set(load.to_dict()) == LOAD_KEYS  # unchanged: baselines of these loads still compare equal
    assert Load.closed(4).to_dict() == {
        "arrival": "closed",
        "concurrency": 4,
        "rate": None,
        "requests": 64,
        "duration_s": None,
        "warmup_requests": 8,
        "seed": 0,
        "request_timeout_s": 120.0,
    }


@pytest.mark.parametrize("speedup", [0, -1.0, float("inf"), float("nan"), "2"])
def test_replay_speedup_must_be_a_positive_number(speedup):
    with pytest.raises(UsageError, match=r"Load\.speedup=.*must be a finite number > 0"):
        Load.replay(speedup)


def test_replay_labels():
    assert Load.replay().label() == "trace-x1"
    assert Load.replay(2.0, requests=10).label() == "trace-x2-n10"
    assert Load.replay(0.5, duration_s=30.0).label() == "trace-x0.5-30s"


# -- perfsuite load: the traffic flags -----------------------------------------------------------


@pytest.fixture
def load_cli(model_dir, monkeypatch, capsys):
    """Run `perfsuite load` against a port nothing listens on; any HTTP request fails the test."""

    def no_request(*args, **kwargs):
        raise AssertionError("perfsuite load made a request before refusing its flags")

    monkeypatch.setattr(urllib.request, "urlopen", no_request)

    def run(*flags):
        argv = ["load", "--url", "http://127.0.0.1:9", "--model", "tiny", "--tokenizer", str(model_dir), *flags]
        status = main([str(f) for f in argv])
        return status, capsys.readouterr().err

    return run


def test_load_refuses_a_dataset_and_a_trace(load_cli, trace):
    status, err = load_cli("--dataset", trace, "--trace", trace)
    assert status == 2
    assert "perfsuite: error: --dataset and --trace: give one request source" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workload", "chat"], "--dataset gives the requests: drop --workload and --input-len"),
        (["--input-len", "32", "--output-len", "8"], "--dataset gives the requests"),
    ],
)
def test_load_refuses_a_dataset_with_a_workload_or_lengths(load_cli, tmp_path, flags, message):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "Hi.", "output_tokens": 2})
    status, err = load_cli("--dataset", path, *flags)
    assert status == 2 and f"perfsuite: error: {message}" in err


def test_load_refuses_a_trace_with_a_workload(load_cli, trace):
    status, err = load_cli("--trace", trace, "--workload", "rag")
    assert status == 2 and "perfsuite: error: --trace gives the requests: drop --workload" in err


@pytest.mark.parametrize("flags", [["--input-len", "32"], ["--output-len", "8"]])
def test_load_input_and_output_len_go_together(load_cli, flags):
    status, err = load_cli(*flags)
    assert status == 2
    assert "perfsuite: error: --input-len and --output-len go together" in err


@pytest.mark.parametrize("flags", [["--trace-speedup", "2"], ["--trace-format", "azure"]])
def test_load_trace_flags_need_a_trace(load_cli, flags):
    status, err = load_cli(*flags)
    assert status == 2 and "perfsuite: error: --trace-speedup and --trace-format go with --trace" in err


@pytest.mark.parametrize("flags", [["--dataset-format", "jsonl"], ["--column", "prompt=q"], ["--max-input-len", "64"]])
def test_load_dataset_flags_need_a_dataset(load_cli, flags):
    status, err = load_cli(*flags)
    assert status == 2 and "perfsuite: error: --dataset-format, --column and --max-input-len go with --dataset" in err


@pytest.mark.parametrize("column", ["question", "prompt=", "=question"])
def test_load_column_needs_field_equals_column(load_cli, tmp_path, column):
    status, err = load_cli("--dataset", tmp_path / "ds.parquet", "--column", column)
    assert status == 2
    assert f"perfsuite: error: --column {column!r}: give FIELD=COLUMN, e.g. --column prompt=question" in err


def test_load_names_a_missing_dataset_or_trace(load_cli, tmp_path):
    status, err = load_cli("--dataset", tmp_path / "nope.json")
    assert status == 2 and f"perfsuite: error: dataset {tmp_path / 'nope.json'}: no such file" in err
    status, err = load_cli("--trace", tmp_path / "nope.csv")
    assert status == 2 and f"perfsuite: error: trace {tmp_path / 'nope.csv'}: no such file" in err


def test_load_reports_a_bad_trace_line(load_cli, tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 10), {"timestamp": 5, "input_length": 10})
    status, err = load_cli("--trace", path, "--trace-speedup", "4")
    assert status == 2 and f"perfsuite: error: {path}:2: missing output_length" in err
