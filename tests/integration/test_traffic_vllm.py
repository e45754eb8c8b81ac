"""Datasets and traces through `perfsuite load` against a real vLLM server, checked with the server's
own counters (/metrics): the tokens it prefilled and generated, and its prefix-cache hits."""

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from perfsuite import Load, Stage
from perfsuite.cli import main
from perfsuite.loadgen import run_load
from perfsuite.model import build_model, corpus_text
from perfsuite.protocols import OpenAIProtocol
from perfsuite.sources import MOONCAKE_BLOCK_TOKENS, read_trace
from perfsuite.stages import stage_breakdown
from perfsuite.telemetry import parse_metrics
from perfsuite.workloads import PromptBuilder, Workload, get_workload

pytestmark = pytest.mark.perf
SAMPLES = Path(__file__).parents[2] / "perfsuite" / "data" / "samples"


@pytest.fixture(scope="module")
def server(vllm_server):
    return vllm_server


def _counters(server) -> dict[str, float]:
    with urllib.request.urlopen(server.endpoint.base_url + "/metrics", timeout=10) as resp:
        m = parse_metrics(resp.read().decode())
    return {
        "prompt": m["vllm:prompt_tokens_total"],
        "generated": m["vllm:generation_tokens_total"],
        "hits": m["vllm:prefix_cache_hits_total"],
        "queries": m["vllm:prefix_cache_queries_total"],
    }


def _delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before}


def _load(server, model, out: Path, *extra) -> dict:
    argv = ["load", "--url", server.endpoint.base_url, "--model", server.endpoint.model, "--tokenizer", model]
    assert main([*argv, *extra, "--json", str(out)]) == 0
    return json.loads(out.read_text())["measurements"][0]


def test_a_sharegpt_dataset_generates_its_answers_lengths(server, tmp_path):
    running, model = server
    dataset = SAMPLES / "sharegpt.json"
    before = _counters(running)
    m = _load(running, model, tmp_path / "r.json", "--dataset", str(dataset), "--requests", "160", "--warmup", "0")
    seen = _delta(before, _counters(running))
    # What the dataset says: every conversation once (160 requests, 160 usable entries), lengths by the tokenizer.
    tok = AutoTokenizer.from_pretrained(model)
    conversations = json.loads(dataset.read_text())
    answers = sum(len(tok.encode(c["conversations"][1]["value"], add_special_tokens=False)) for c in conversations)
    prompts = sum(len(tok.encode(c["conversations"][0]["value"])) for c in conversations)
    assert m["metrics"]["requests_ok"] == 160 and m["error_count"] == 0
    assert seen["generated"] == answers
    assert seen["prompt"] == prompts
    assert m["workload"]["source"]["sha256"] and "dataset sharegpt.json: 160 requests usable" in m["notes"]


def test_a_mooncake_trace_replays_its_tokens_prefixes_and_timing(server, tmp_path):
    running, model = server
    trace = SAMPLES / "mooncake.jsonl"
    entries = read_trace(trace).entries
    before = _counters(running)
    m = _load(running, model, tmp_path / "r.json", "--trace", str(trace))
    seen = _delta(before, _counters(running))
    assert m["metrics"]["requests_ok"] == len(entries) and m["error_count"] == 0
    assert seen["prompt"] == sum(e.input_tokens for e in entries)
    assert seen["generated"] == sum(e.output_tokens for e in entries)
    # Every request whose shared block was sent before can reuse it: up to 512 tokens each.
    first_seen, shareable = set(), 0
    for e in entries:
        shareable += MOONCAKE_BLOCK_TOKENS if e.hash_ids[0] in first_seen else 0
        first_seen.add(e.hash_ids[0])
    assert 0.8 * shareable <= seen["hits"] <= shareable + 16 * len(entries), (seen, shareable)
    # At its timing: the sends span the trace's span, each close to its own time.
    client = m["client"][0]
    span_s = entries[-1].timestamp_ms / 1e3
    sent_span_s = (client["requests"] - 1) / client["achieved_rate"]
    assert abs(sent_span_s - span_s) < 0.05 * span_s, (sent_span_s, span_s)
    assert client["send_lag_p99_ms"] < 50
    assert m["load"]["arrival"] == "trace" and m["load"]["speedup"] == 1.0


def test_a_trace_sped_up_keeps_its_tokens_and_shortens_its_span(server, tmp_path):
    running, model = server
    trace = SAMPLES / "mooncake.jsonl"
    entries = read_trace(trace).entries[:20]
    before = _counters(running)
    m = _load(running, model, tmp_path / "r.json", "--trace", str(trace), "--trace-speedup", "2", "--requests", "20")
    seen = _delta(before, _counters(running))
    assert seen["prompt"] == sum(e.input_tokens for e in entries)
    client = m["client"][0]
    sent_span_s = (client["requests"] - 1) / client["achieved_rate"]
    assert abs(sent_span_s - entries[-1].timestamp_ms / 2e3) < 0.1


def test_an_azure_trace_replays_its_lengths_at_its_timing(server, tmp_path):
    running, model = server
    rows = [("2023-11-16 18:15:46.6805900", 300, 20), ("2023-11-16 18:15:47.1805900", 120, 8)]
    rows += [("2023-11-16 18:15:47.9000000", 700, 31), ("2023-11-16 18:15:48.6805900", 64, 5)]
    trace = tmp_path / "azure.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{t},{i},{o}\n" for t, i, o in rows))
    before = _counters(running)
    m = _load(running, model, tmp_path / "r.json", "--trace", str(trace))
    seen = _delta(before, _counters(running))
    assert seen["prompt"] == sum(i for _, i, _ in rows) and seen["generated"] == sum(o for _, _, o in rows)
    client = m["client"][0]
    assert abs((client["requests"] - 1) / client["achieved_rate"] - 2.0) < 0.05  # the rows span 2.0 s


def test_in_process_the_same_trace_builds_the_same_prompts_per_seed_and_new_ones_per_repetition():
    model = build_model()
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    wl = Workload.from_file(SAMPLES / "mooncake.jsonl", kind="trace")
    a, b, c = (prompts.requests(wl, 10, seed=s, max_model_len=1024) for s in (0, 0, 1))
    assert [s.prompt for s in a] == [s.prompt for s in b]
    assert a[0].prompt != c[0].prompt  # a repetition's prefixes are fresh: the cache is not warm from the last
    shared = [s for s, e in zip(a, read_trace(SAMPLES / "mooncake.jsonl").entries) if e.hash_ids[0] == 3]
    assert len(shared) > 1 and len({s.prompt[:200] for s in shared}) == 1


def test_later_turns_of_a_session_hit_the_prefix_cache_more_than_first_turns(server, tmp_path):
    running, model = server
    before = _counters(running)
    m = _load(
        running, model, tmp_path / "r.json", "--dataset", str(SAMPLES / "multi-turn.json"),
        "--turns", "4", "--sessions", "8", "--concurrency", "4", "--think-time", "0.1",
    )  # fmt: skip
    seen = _delta(before, _counters(running))
    turns = m["breakdown"]["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4] and all(t["requests_ok"] == 8 for t in turns)
    assert m["metrics"]["requests_ok"] == 32 and m["error_count"] == 0
    # The server's own numbers: what its usage said per request adds up to its counter.
    assert sum(t["cached_tokens"] for t in turns) == seen["hits"] > 0
    first, later = turns[0]["prefix_cache_hit_rate"], [t["prefix_cache_hit_rate"] for t in turns[1:]]
    assert all(rate > first + 0.2 for rate in later), turns
    assert all(0.3 < t["history_reused"] <= 1 for t in turns[1:]), turns
    # Each turn's prompt grew by the history the server had answered.
    assert [t["mean_prompt_tokens"] for t in turns] == sorted(t["mean_prompt_tokens"] for t in turns)


def test_synthetic_sessions_of_exact_lengths(server, tmp_path):
    running, model = server
    m = _load(
        running, model, tmp_path / "s.json", "--input-len", "64", "--output-len", "16", "--turns", "3",
        "--sessions", "4", "--concurrency", "2",
    )  # fmt: skip
    assert [t["requests_ok"] for t in m["breakdown"]["turns"]] == [4, 4, 4]
    assert m["workload"]["turns"] == 3 and m["load"]["arrival"] == "sessions"


def _most_in_flight(records, start: float, stage: int) -> int:
    """The most requests in flight at once among those sent in a stage (3 s each): sends +1, ends -1."""
    sent = [r for r in records if stage * 3 <= r.send - start < (stage + 1) * 3]
    events = sorted([(r.send, 1) for r in sent] + [(r.end, -1) for r in sent])
    level = most = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def test_a_staged_closed_loop_adds_users_per_stage(server):
    running, model = server
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    load = Load.staged(Stage(3, concurrency=1), Stage(3, concurrency=4), warmup_requests=2)
    specs = prompts.requests(get_workload("throughput"), 400)
    result = asyncio.run(run_load(running.endpoint, OpenAIProtocol(), specs, load))
    one, four = stage_breakdown(load.stages, result.records, result.started)
    assert not [r.error for r in result.records if r.error]
    # One user keeps one request in flight, four keep four, and the batch completes more per second.
    # (Not "each slower": this tiny model on the CPU batches four for the price of one, TPOT 2.86 vs 2.87 ms.)
    assert [_most_in_flight(result.records, result.started, stage) for stage in (0, 1)] == [1, 4]
    assert four["request_throughput"] > 1.5 * one["request_throughput"], (one, four)
    # Nothing is sent after the stages end, and the users kept sending until then: each user's next request
    # follows its last answer, so the last send is at most one request's latency before the end (a fixed
    # 0.5 s failed on a slower VM: last send at 5.40 s).
    last_send = max(r.send for r in result.records) - result.started
    longest = max(r.end - r.send for r in result.records if r.send - result.started >= 3)
    assert 6.0 - longest - 0.05 < last_send < 6.0, (last_send, longest)
