"""Reading request files (perfsuite.sources), Workload.from_file, "source" workloads and `perfsuite samples`.

Covered, with small files written in tmp_path:
- bad input fails with a UsageError naming the file and the line: JSONL (malformed, blank lines
  counted, prompt/messages, output_tokens), ShareGPT (not a list, bad JSON), Mooncake (missing field,
  hash_ids, timestamps), Azure CSV (missing column, bad TIMESTAMP), a missing file, an unknown format;
- ShareGPT skips (no human turn, no answer) counted in SourceFile.skipped, system turns ignored;
- Azure timestamps (seven fractional digits) and Mooncake timestamps rebased to the first request;
- Hugging Face datasets on disk (save_to_disk and parquet, with and without a column mapping);
- a Mooncake property test: any sorted trace reads back with its lengths and hash ids;
- the file's sha256 in Workload.to_dict, and a workloads.json source path that leaves its folder;
- `perfsuite samples` writes files that read back (and the shipped samples are its defaults).
"""

import hashlib
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsuite.cli import main
from perfsuite.errors import UsageError
from perfsuite.samples import SAMPLE_FILES, write_samples
from perfsuite.sources import MOONCAKE_BLOCK_TOKENS, Turn, read_dataset, read_trace
from perfsuite.workloads import Workload, load_workloads

SHIPPED_SAMPLES = Path(__file__).resolve().parents[2] / "perfsuite" / "data" / "samples"


def _write_lines(path: Path, *lines) -> Path:
    """`path` with one line per item: dicts as JSON, strings as written ("" is a blank line)."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def _at(path: Path, line) -> str:
    """The regex for an error located at `path:line`."""
    return re.escape(f"{path}:{line}:")


def _mooncake(ts, n_in, n_out=8, ids=None) -> dict:
    ids = list(range(math.ceil(n_in / MOONCAKE_BLOCK_TOKENS))) if ids is None else ids
    return {"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids}


def _conv(*turns) -> dict:
    return {"conversations": [{"from": who, "value": text} for who, text in turns]}


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


# -- JSONL datasets ------------------------------------------------------------------------------


def test_jsonl_reads_prompts_and_messages(tmp_path):
    path = _write_lines(
        tmp_path / "d.jsonl",
        {"prompt": "Say hello.", "output_tokens": 5},
        "",
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
    )
    file = read_dataset(path)
    assert file.format == "jsonl" and file.skipped == {}
    first, second = file.entries
    assert (first.prompt, first.output_tokens, first.chat, first.where) == ("Say hello.", 5, False, f"{path}:1")
    assert second.chat and second.output_tokens is None and second.where == f"{path}:3"
    assert second.turns == (Turn("system", "Be brief."), Turn("user", "Hi"))


def test_jsonl_malformed_line_names_its_line_counting_blank_lines(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "a", "output_tokens": 1}, "", "   ", '{"prompt": "b",')
    with pytest.raises(UsageError, match=_at(path, 4) + " not valid JSON"):
        read_dataset(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", '["prompt", "a"]')
    with pytest.raises(UsageError, match=_at(path, 1) + " expected a JSON object, got list"):
        read_dataset(path)


@pytest.mark.parametrize(
    "line",
    [
        {"prompt": "a", "messages": [{"role": "user", "content": "a"}]},
        {"output_tokens": 4},
        {"prompt": None, "messages": None},
    ],
    ids=["both", "neither", "both-null"],
)
def test_jsonl_line_needs_exactly_one_of_prompt_and_messages(tmp_path, line):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "fine"}, line)
    with pytest.raises(UsageError, match=_at(path, 2) + ' give exactly one of "prompt" .* or "messages"'):
        read_dataset(path)


@pytest.mark.parametrize("value", ["5", 2.5, 0, -3, True], ids=["str", "float", "zero", "negative", "bool"])
def test_jsonl_output_tokens_must_be_a_positive_integer(tmp_path, value):
    path = _write_lines(tmp_path / "d.jsonl", "", {"prompt": "a", "output_tokens": value})
    with pytest.raises(UsageError, match=_at(path, 2) + " output_tokens must be an integer >= 1, got"):
        read_dataset(path)


def test_jsonl_messages_must_end_with_the_user(tmp_path):
    path = _write_lines(
        tmp_path / "d.jsonl",
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    )
    with pytest.raises(UsageError, match=_at(path, 1) + " the last message must be the user's"):
        read_dataset(path)


# -- ShareGPT ------------------------------------------------------------------------------------


def test_sharegpt_that_is_not_a_list(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(_conv(("human", "q"), ("gpt", "a"))))
    with pytest.raises(UsageError, match=re.escape(f"{path}: a ShareGPT file is a JSON list") + ".*got dict"):
        read_dataset(path)


def test_sharegpt_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text('[\n  {"conversations": []},\n  {"conversations": [}\n]\n')
    with pytest.raises(UsageError, match=_at(path, 3) + " not valid JSON"):
        read_dataset(path)


def test_sharegpt_entry_without_conversations_names_the_entry(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([_conv(("human", "q"), ("gpt", "a")), {"id": "x"}]))
    with pytest.raises(UsageError, match=re.escape(f"{path}:entry 1:") + ' expected {"conversations"'):
        read_dataset(path)


def test_sharegpt_skips_are_counted_and_turns_normalized(tmp_path):
    path = tmp_path / "sg.json"
    data = [
        _conv(("human", "What is 2+2?"), ("gpt", "4")),
        _conv(("gpt", "Hello, how can I help?")),  # no human turn
        _conv(("human", "Anyone there?")),  # no answer
        _conv(("human", "First"), ("human", "Second"), ("gpt", "late answer")),  # no answer after the first
        _conv(("system", "You are terse."), ("human", "Name a colour."), ("gpt", "Red.")),
        _conv(("gpt", "Welcome!"), ("human", "Thanks, a question."), ("gpt", "Go on."), ("human", "Why?")),
        _conv(("system", "only a system turn")),  # no human turn
    ]
    path.write_text(json.dumps(data))
    file = read_dataset(path)
    assert file.format == "sharegpt"
    assert file.skipped == {"no human turn": 2, "no answer after the first human turn": 2}
    assert [e.where for e in file.entries] == [f"{path}:entry 0", f"{path}:entry 4", f"{path}:entry 5"]
    plain, with_system, gpt_first = file.entries
    assert plain.turns == (Turn("user", "What is 2+2?"), Turn("assistant", "4")) and plain.answer == "4"
    assert with_system.turns == (Turn("user", "Name a colour."), Turn("assistant", "Red."))  # system dropped
    assert gpt_first.prompt == "Thanks, a question." and gpt_first.answer == "Go on."
    assert [t.role for t in gpt_first.turns] == ["user", "assistant", "user"]
    assert not any(e.chat for e in file.entries)


# -- Mooncake traces -----------------------------------------------------------------------------


def test_mooncake_timestamps_are_rebased_to_the_first_request(tmp_path):
    path = _write_lines(
        tmp_path / "t.jsonl",
        _mooncake(5000, 600, 10, [7, 8]),
        "",
        _mooncake(5200.5, 100, 3, [7]),
        _mooncake(9000, 1024, 1, [1, 2]),
    )
    file = read_trace(path)
    assert file.format == "mooncake" and file.skipped == {}
    assert [e.timestamp_ms for e in file.entries] == [0.0, 200.5, 4000.0]
    assert [(e.input_tokens, e.output_tokens, e.hash_ids) for e in file.entries] == [
        (600, 10, (7, 8)),
        (100, 3, (7,)),
        (1024, 1, (1, 2)),
    ]
    assert [e.where for e in file.entries] == [f"{path}:1", f"{path}:3", f"{path}:4"]


def test_mooncake_line_missing_a_field(tmp_path):
    bad = _mooncake(10, 100)
    del bad["output_length"]
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 100), bad)
    with pytest.raises(UsageError, match=_at(path, 2) + " missing output_length"):
        read_trace(path)


@pytest.mark.parametrize(
    ("n_in", "ids", "expected"), [(1025, [1, 2], 3), (512, [1, 2], 1), (513, [1], 2)], ids=["few", "many", "edge"]
)
def test_mooncake_hash_ids_must_cover_the_input(tmp_path, n_in, ids, expected):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, n_in, ids=ids))
    message = f"{len(ids)} hash_ids for input_length {n_in}: expected {expected}"
    with pytest.raises(UsageError, match=_at(path, 1) + " " + re.escape(message)):
        read_trace(path)


@pytest.mark.parametrize("ts", [-1, "12", None, True], ids=["negative", "str", "null", "bool"])
def test_mooncake_timestamp_must_be_a_non_negative_number(tmp_path, ts):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 10), _mooncake(ts, 10))
    with pytest.raises(UsageError, match=_at(path, 2) + " timestamp must be a number of milliseconds >= 0"):
        read_trace(path)


def test_mooncake_timestamps_out_of_order_name_the_later_line(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 10), _mooncake(500, 10), "", _mooncake(499, 10))
    with pytest.raises(UsageError, match=_at(path, 4) + " timestamp 499 ms is before the previous line's 500 ms"):
        read_trace(path)


def test_mooncake_equal_timestamps_are_in_order(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(3, 10), _mooncake(3, 20))
    assert [e.timestamp_ms for e in read_trace(path).entries] == [0.0, 0.0]


_gaps = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False, allow_infinity=False))
_requests = st.lists(
    st.tuples(_gaps, st.integers(1, 5000), st.integers(1, 4000), st.booleans(), st.integers(0, 10**9)),
    min_size=1,
    max_size=20,
)


@settings(max_examples=30, deadline=None)
@given(start=_gaps, requests=_requests)
def test_mooncake_any_sorted_trace_reads_back(start, requests):
    lines, ts = [], start
    for gap, n_in, n_out, with_ids, first_id in requests:
        ts += gap
        ids = [first_id + k for k in range(math.ceil(n_in / MOONCAKE_BLOCK_TOKENS))] if with_ids else []
        lines.append({"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids})
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_lines(Path(tmp) / "trace.jsonl", *lines)
        entries = read_trace(path).entries
    assert [(e.input_tokens, e.output_tokens, list(e.hash_ids)) for e in entries] == [
        (x["input_length"], x["output_length"], x["hash_ids"]) for x in lines
    ]
    assert entries[0].timestamp_ms == 0.0
    assert [e.timestamp_ms for e in entries] == [float(x["timestamp"]) - float(lines[0]["timestamp"]) for x in lines]
    assert all(a.timestamp_ms <= b.timestamp_ms for a, b in zip(entries, entries[1:]))


# -- Azure traces --------------------------------------------------------------------------------


def test_azure_seven_fractional_digits_and_relative_ms(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text(
        f"{AZURE_HEADER}\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:47.0000001,396,109\n"
        "2023-11-16 18:15:48,879,5\n"
        "2023-11-16 18:16:46.6805900,91,1\n"
    )
    file = read_trace(path)
    assert file.format == "azure"
    assert [e.timestamp_ms for e in file.entries] == pytest.approx([0.0, 319.41, 1319.41, 60000.0], abs=1e-6)
    assert [(e.input_tokens, e.output_tokens, e.hash_ids) for e in file.entries] == [
        (374, 44, ()),
        (396, 109, ()),
        (879, 5, ()),
        (91, 1, ()),
    ]
    assert [e.where for e in file.entries] == [f"{path}:{n}" for n in (2, 3, 4, 5)]


def test_azure_missing_column(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,10\n")
    with pytest.raises(UsageError, match=_at(path, 1) + " missing column\\(s\\) GeneratedTokens"):
        read_trace(path)


@pytest.mark.parametrize("stamp", ["yesterday", "2023-11-16T25:00:00", "2023-11-16 18:15:46.68x", ""])
def test_azure_bad_timestamp_names_the_line(tmp_path, stamp):
    path = tmp_path / "azure.csv"
    path.write_text(f"{AZURE_HEADER}\n2023-11-16 18:15:46.6805900,10,2\n{stamp},10,2\n")
    with pytest.raises(UsageError, match=_at(path, 3) + " TIMESTAMP .* is not a date and time"):
        read_trace(path)


def test_azure_token_counts_must_be_integers(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text(f"{AZURE_HEADER}\n2023-11-16 18:15:46,10,2\n2023-11-16 18:15:47,ten,2\n")
    with pytest.raises(UsageError, match=_at(path, 3) + " ContextTokens and GeneratedTokens must be integers"):
        read_trace(path)


def test_azure_rows_out_of_order_name_the_later_line(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text(f"{AZURE_HEADER}\n2023-11-16 18:15:46,10,2\n2023-11-16 18:15:45,10,2\n")
    with pytest.raises(UsageError, match=_at(path, 3) + " timestamp -1000 ms is before"):
        read_trace(path)


# -- missing files and unknown formats -----------------------------------------------------------


def test_a_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(UsageError, match=re.escape(f"dataset {missing}: no such file")):
        read_dataset(missing)
    with pytest.raises(UsageError, match=re.escape(f"trace {missing}: no such file")):
        read_trace(missing)
    with pytest.raises(UsageError, match=re.escape(f"dataset {missing}: no such file")):
        Workload.from_file(missing, output_tokens=4)
    with pytest.raises(UsageError, match=re.escape(f"trace {missing}: no such file")):
        Workload.from_file(missing, kind="trace")


def test_unknown_format_names_the_file_and_the_formats(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "a"})
    with pytest.raises(UsageError, match=re.escape(f"{path}: dataset format 'csv': use one of sharegpt, jsonl, hf")):
        read_dataset(path, "csv")
    with pytest.raises(UsageError, match=re.escape(f"{path}: trace format 'sharegpt': use one of mooncake, azure")):
        read_trace(path, "sharegpt")


def test_column_mapping_is_for_hf_datasets_only(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", {"prompt": "a"})
    with pytest.raises(UsageError, match="column mapping applies to Hugging Face datasets"):
        read_dataset(path, columns={"prompt": "question"})


# -- Hugging Face datasets on disk ---------------------------------------------------------------


@pytest.fixture
def hf_files(tmp_path):
    """A small dataset with a "question" column, saved with save_to_disk and as parquet."""
    import datasets

    ds = datasets.Dataset.from_dict(
        {"question": ["What is a tensor?", "Define latency.", "Why batch requests?"], "output_tokens": [8, 16, 4]}
    )
    ds.save_to_disk(str(tmp_path / "questions"))
    ds.to_parquet(str(tmp_path / "questions.parquet"))
    plain = datasets.Dataset.from_dict({"prompt": ["One.", "Two."]})
    plain.to_parquet(str(tmp_path / "plain.parquet"))
    return tmp_path


@pytest.mark.parametrize("name", ["questions", "questions.parquet"])
def test_hf_dataset_with_a_column_mapping(hf_files, name):
    file = read_dataset(hf_files / name, "hf", {"prompt": "question"})
    assert file.format == "hf"
    assert [(e.prompt, e.output_tokens, e.chat) for e in file.entries] == [
        ("What is a tensor?", 8, False),
        ("Define latency.", 16, False),
        ("Why batch requests?", 4, False),
    ]
    assert file.entries[2].where == f"{hf_files / name}:row 2"
    assert read_dataset(hf_files / name, columns={"prompt": "question"}).format == "hf"  # guessed from the name


def test_hf_dataset_without_a_mapping(hf_files):
    file = read_dataset(hf_files / "plain.parquet", "hf")
    assert [(e.prompt, e.output_tokens) for e in file.entries] == [("One.", None), ("Two.", None)]


@pytest.mark.parametrize("name", ["questions", "questions.parquet"])
def test_hf_dataset_without_a_prompt_column_lists_the_columns(hf_files, name):
    path = hf_files / name
    with pytest.raises(UsageError, match=re.escape(f"{path}: no prompt column (columns: question, output_tokens)")):
        read_dataset(path, "hf")


def test_hf_unknown_field_in_the_mapping(hf_files):
    with pytest.raises(UsageError, match=r"unknown field\(s\) \['question'\]"):
        read_dataset(hf_files / "questions", "hf", {"question": "prompt"})


# -- workloads read from files -------------------------------------------------------------------


def test_workload_to_dict_has_the_files_sha256_and_an_edit_changes_it(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 600, 10), _mooncake(100, 40, 3))
    wl = Workload.from_file(path, kind="trace")
    source = wl.to_dict()["source"]
    assert source == {
        "file": "t.jsonl",
        "kind": "trace",
        "format": "mooncake",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert (wl.input_tokens, wl.output_tokens) == ((40, 600), (3, 10))
    _write_lines(path, _mooncake(0, 600, 10), _mooncake(100, 40, 4))  # one output length edited
    edited = Workload.from_file(path, kind="trace")
    assert edited.to_dict()["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert edited.to_dict()["source"]["sha256"] != source["sha256"]
    assert edited.to_dict() != wl.to_dict()  # a baseline taken with the old file no longer matches


def test_workload_sha256_of_a_saved_dataset_folder_changes_with_its_files(hf_files):
    before = Workload.from_file(hf_files / "questions", columns={"prompt": "question"}).to_dict()["source"]
    assert before["kind"] == "dataset" and before["format"] == "hf" and before["columns"] == {"prompt": "question"}
    (hf_files / "questions" / "README.md").write_text("a file added to the folder\n")
    after = Workload.from_file(hf_files / "questions", columns={"prompt": "question"}).to_dict()["source"]
    assert after["sha256"] != before["sha256"]


def test_load_workloads_reads_a_source_beside_the_workloads_file(tmp_path):
    _write_lines(tmp_path / "prompts.jsonl", {"prompt": "Hello there.", "output_tokens": 3})
    (tmp_path / "workloads.json").write_text(
        json.dumps(
            {
                "workloads": {
                    "mine": {
                        "api": "chat",
                        "description": "my prompts",
                        "source": {"path": "prompts.jsonl", "max_input_tokens": 100},
                    }
                }
            }
        )
    )
    wl = load_workloads(tmp_path / "workloads.json")["mine"]
    assert (wl.api, wl.description, wl.source.kind, wl.source.max_input_tokens) == (
        "chat",
        "my prompts",
        "dataset",
        100,
    )
    assert wl.to_dict()["source"]["sha256"] == hashlib.sha256((tmp_path / "prompts.jsonl").read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["../x.jsonl", "sub/../../x.jsonl", "ABSOLUTE"])
def test_load_workloads_refuses_a_source_outside_its_folder(tmp_path, where):
    outside = _write_lines(tmp_path / "x.jsonl", {"prompt": "a", "output_tokens": 1})  # exists: not the error
    folder = tmp_path / "suite"
    folder.mkdir()
    where = str(outside) if where == "ABSOLUTE" else where
    (folder / "workloads.json").write_text(json.dumps({"workloads": {"w": {"source": {"path": where}}}}))
    with pytest.raises(UsageError, match=re.escape(f"workload w: source path {where!r} leaves {folder}")):
        load_workloads(folder / "workloads.json")


def test_load_workloads_refuses_an_unknown_source_option(tmp_path):
    _write_lines(tmp_path / "x.jsonl", {"prompt": "a", "output_tokens": 1})
    (tmp_path / "workloads.json").write_text(
        json.dumps({"workloads": {"w": {"source": {"path": "x.jsonl", "max_len": 9}}}})
    )
    with pytest.raises(UsageError, match=r"workload w: unknown source option\(s\) \['max_len'\]"):
        load_workloads(tmp_path / "workloads.json")


# -- perfsuite samples ---------------------------------------------------------------------------


def test_samples_command_writes_files_that_read_back(tmp_path, capsys):
    out = tmp_path / "samples"
    argv = ["samples", "--out", str(out), "--conversations", "5", "--multi-turn-conversations", "2"]
    assert main(argv + ["--turns", "3", "--trace-requests", "6", "--trace-seconds", "2"]) == 0
    written = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(SAMPLE_FILES.values())
    for name in SAMPLE_FILES.values():
        assert f"wrote {out / name}" in written

    sharegpt = read_dataset(out / SAMPLE_FILES["sharegpt"])
    assert (sharegpt.format, len(sharegpt.entries), sharegpt.skipped) == ("sharegpt", 5, {})
    multi = read_dataset(out / SAMPLE_FILES["multi_turn"])
    assert len(multi.entries) == 2 and all(len(e.turns) == 6 for e in multi.entries)  # 3 exchanges
    trace = read_trace(out / SAMPLE_FILES["mooncake"])
    assert trace.format == "mooncake" and len(trace.entries) == 6
    assert trace.entries[0].timestamp_ms == 0.0
    assert all(len(e.hash_ids) == 2 and e.input_tokens > MOONCAKE_BLOCK_TOKENS for e in trace.entries)


def test_samples_command_refuses_zero_trace_requests(tmp_path, capsys):
    out = tmp_path / "samples"
    assert main(["samples", "--out", str(out), "--trace-requests", "0"]) == 2
    assert "perfsuite: error: --trace-requests 0: give a number >= 1" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_shipped_samples_are_the_defaults(tmp_path):
    for path in write_samples(tmp_path):
        assert path.read_bytes() == (SHIPPED_SAMPLES / path.name).read_bytes(), path.name


def test_a_baseline_taken_with_the_old_file_is_judged_stale(tmp_path):
    from perfsuite.fingerprint import this_machine
    from perfsuite.judge import judge
    from perfsuite.loadgen import Load
    from perfsuite.measurement import Measurement
    from perfsuite.verdict import Verdict

    path = _write_lines(tmp_path / "t.jsonl", _mooncake(0, 600, 10), _mooncake(100, 40, 3))
    old = Workload.from_file(path, kind="trace").to_dict()
    _write_lines(path, _mooncake(0, 600, 10), _mooncake(100, 40, 4))
    new = Workload.from_file(path, kind="trace").to_dict()
    load = Load.replay().to_dict()
    hardware = this_machine().to_dict()
    m = Measurement(
        test_id="t", framework="vllm", framework_version="1", model="m", profile="cpu", device_kind="cpu",
        workload=new, load=load, engine={}, price_per_hour=0.1, price_source="s", provenance={"hardware": hardware},
        metrics={"request_throughput": 5.0, "requests": 2.0, "requests_ok": 2.0, "error_rate": 0.0},
    )  # fmt: skip
    provenance = {"model": "m", "workload": old, "load": load, "hardware": hardware}
    baseline = {"metrics": {"request_throughput": 5.0}, "provenance": provenance}
    judgement = judge(m, baseline)
    assert judgement.verdict is Verdict.STALE_BASELINE
    assert "sha256" in " ".join(judgement.notes)
