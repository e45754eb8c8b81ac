"""The `perfsuite` command: cost arithmetic, approving a run's results as baselines, and the load
generator against an endpoint that is already running."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path

from tabulate import tabulate

from perfsuite import jsonfile
from perfsuite.baseline import baseline_path, load_baseline, make_baseline, measurement_path, promote, successor
from perfsuite.cost import cost_per_million
from perfsuite.errors import BaselineError, PerfsuiteError, UsageError

__all__ = ["main"]


def _cost(args: argparse.Namespace) -> int:
    per_req = cost_per_million(args.price_per_hour, args.rps)
    rows = [
        ["requests/s", f"{args.rps:g}"],
        ["price per hour", f"${args.price_per_hour:g}"],
        ["cost per 1M requests", f"${per_req:,.2f}"],
    ]
    if args.output_tokens:
        rows.append(
            [
                "cost per 1M output tokens",
                f"${cost_per_million(args.price_per_hour, args.rps * args.output_tokens):,.4f}",
            ]
        )
    print(tabulate(rows, tablefmt="plain", disable_numparse=True))
    return 0


def read_results(path: str | os.PathLike) -> dict:
    """A results file written by --perf-results, checked enough to approve from."""
    p = Path(path)
    data = jsonfile.load(p, "results file", UsageError, hint="pass the file --perf-results wrote")
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
        raise UsageError(f"{p}: no 'measurements' list; pass the file --perf-results wrote")
    for i, m in enumerate(data["measurements"]):
        for key in ("test_id", "profile", "metrics"):
            if key not in m:
                raise UsageError(f"{p}: measurements[{i}] has no field {key!r}")
    return data


def _measurement(path, d: dict):
    """A results file's measurement as a Measurement; UsageError naming the file and test otherwise."""
    from perfsuite.measurement import Measurement

    try:
        return Measurement.from_dict(d)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: measurement {d.get('test_id', '?')!r}: {exc}") from None


def _min_tolerance(profile: str) -> dict[str, float]:
    from perfsuite.hardware import resolve_profile

    try:
        return resolve_profile(profile).min_tolerance
    except UsageError:
        return {}  # a profile from a user's own catalog: no noise floor known here


def _above_bound(m: dict) -> str | None:
    """The problem if a measurement's throughput is above the physical bound stored with it (computed
    where it was measured, on the device it ran on); None when it is within, or has no bound."""
    from perfsuite.roofline import Bound, check_within_bound

    if not m.get("roofline"):
        return None
    try:
        bound = Bound.from_dict(m["roofline"])
    except (KeyError, TypeError) as exc:
        raise UsageError(
            f"{m['test_id']}: its 'roofline' entry is incomplete ({exc}); pass the file as written"
        ) from None
    return check_within_bound(m["metrics"], bound)


def _across_hardware(path: Path, old: dict, measured) -> str | None:
    """Why the baseline `old` at `path` must not be replaced by `measured` (other hardware), or None."""
    from perfsuite.judge import hardware_differences

    deciding, _ = hardware_differences(old, measured)
    if not deciding:
        return None
    then = old.get("provenance", {}).get("hardware")
    now = measured.provenance.get("hardware")
    return (
        f"{measured.test_id}: {path} was taken on other hardware ({'; '.join(deciding)}); baseline's fingerprint "
        f"{json.dumps(then)}, the measurement's {json.dumps(now)}; --across-hardware replaces it anyway"
    )


def _approve(args: argparse.Namespace) -> int:
    data = read_results(args.results)
    chosen = [
        (i, m)
        for i, m in enumerate(data["measurements"])
        if not args.test or any(t in str(m["test_id"]) for t in args.test)
    ]
    if not chosen:
        raise UsageError(f"{args.results}: no measurement matches {args.test}")
    rows = []
    # Build every document first: nothing is written unless all of them are good.
    plans, refused = [], []
    for i, m in chosen:
        try:
            baseline_path(args.baseline_dir, m["profile"], m["test_id"], where=f"measurements[{i}]")
            measured = _measurement(args.results, m)
            if why := measured.why_not_a_baseline():
                rows.append([m["test_id"], m["profile"], f"skipped: {why}"])
                continue
            if measured.provenance.get("hardware") is None:
                rows.append([m["test_id"], m["profile"], "skipped: no hardware fingerprint (older results): re-run it"])
                continue
            path = measurement_path(args.baseline_dir, measured, where=f"measurements[{i}]")
        except BaselineError as exc:
            raise BaselineError(f"{args.results}: {exc}; nothing written") from None
        problem = _above_bound(m)
        if problem:
            raise BaselineError(f"{args.results}: {m['test_id']} not approved, {path} not written: {problem}")
        old = load_baseline(path)
        if old is not None and not args.across_hardware and (why := _across_hardware(path, old, measured)):
            refused.append(why)
        plans.append((path, successor(measured, old, _min_tolerance(m["profile"])), old, m))
    if refused:
        raise BaselineError(f"{args.results}: nothing written:\n" + "\n".join(refused))
    for path, doc, old, m in plans:
        if not args.dry_run:
            promote(path, doc, old)
        rows.append([m["test_id"], m["profile"], ("would write " if args.dry_run else "wrote ") + str(path)])
    print(tabulate(rows, headers=["test", "gpu", "baseline"], disable_numparse=True))
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    """This machine's hardware fingerprint as JSON."""
    from perfsuite.fingerprint import this_machine

    print(json.dumps(this_machine().to_dict(), indent=2))
    return 0


def _metric_names(framework: str):
    """The /metrics names of `framework`, or of every installed framework for an unknown endpoint."""
    from dataclasses import fields

    from perfsuite.frameworks import load_frameworks
    from perfsuite.telemetry import MetricNames

    plugins = load_frameworks()
    chosen = [plugins[framework]] if framework in plugins else list(plugins.values())
    known = [p.metric_names for p in chosen if hasattr(p, "metric_names")]
    return MetricNames(**{f.name: tuple(n for k in known for n in getattr(k, f.name)) for f in fields(MetricNames)})


def _check_url(url: str, key_env: str) -> None:
    """A UsageError unless `url` is an http(s) base URL with a host and nothing secret in it (no
    user:password@, no query): the URL is recorded in the results. The URL is echoed only when safe."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        raise UsageError(
            f"--url: credentials in the URL are refused (the URL is recorded in the results); "
            f"put the token in ${key_env} (sent as a bearer token) and give the URL without them"
        )
    if parts.query or parts.fragment:
        raise UsageError(
            f"--url: give a base URL without a query or fragment (a token there would be recorded); "
            f"put a token in ${key_env}"
        )
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--url {url!r}: give an http or https URL, e.g. http://127.0.0.1:8000")
    try:
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: bad port ({exc})") from None
    if not parts.hostname:
        raise UsageError(f"--url {url!r}: no host; e.g. http://127.0.0.1:8000")


def _load(args: argparse.Namespace) -> int:
    _check_url(args.url, args.api_key_env)
    from transformers import AutoTokenizer

    from perfsuite.hardware import resolve_profile
    from perfsuite.judge import judge
    from perfsuite.loadgen import Endpoint
    from perfsuite.measurement import Measurement
    from perfsuite.model import corpus_text
    from perfsuite.protocols import OpenAIProtocol
    from perfsuite.report import metrics_table
    from perfsuite.runner import Target, TelemetrySources, provenance, run
    from perfsuite.slo import SLO
    from perfsuite.workloads import PromptBuilder

    if not Path(args.tokenizer).exists():
        raise UsageError(f"--tokenizer {args.tokenizer}: no such folder; give the served model's tokenizer folder")
    profile = resolve_profile(args.gpu)
    workload, load = _load_traffic(args)
    if args.workers != 1:
        load = replace(load, workers=args.workers)
    headers = None
    key = os.environ.get(args.api_key_env)
    if key:
        headers = {"Authorization": f"Bearer {key}"}
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(args.tokenizer), corpus_text(), args.seed)
    url = args.url.rstrip("/")
    telemetry = TelemetrySources(
        metrics_url=None if args.no_metrics else url + "/metrics",
        metric_names=_metric_names(args.framework),
        enabled=not args.no_metrics,
    )
    target = Target(Endpoint(url, args.model), OpenAIProtocol(workload.api), telemetry, headers=headers)
    slo = SLO(args.slo_ttft_ms, args.slo_tpot_ms)
    max_model_len = args.max_model_len or _served_max_model_len(url, args.model, headers)
    result = run(
        target,
        workload,
        load,
        prompts,
        profile,
        repetitions=args.repetitions,
        slo=slo,
        max_model_len=max_model_len,
        ray_address=args.ray,
    )
    price_source = f"{profile.price_source} ({profile.price_date})"
    m = Measurement(
        test_id=f"load:{args.model}:{workload.name}:{load.label()}",
        framework=args.framework,
        framework_version="",
        model=args.model,
        profile=profile.name,
        device_kind=profile.kind,
        workload=workload.to_dict(),
        load=load.to_dict(),
        engine={},
        price_per_hour=profile.price_per_hour,
        price_source=price_source,
        provenance=provenance(
            framework=args.framework, model=args.model, workload=workload.to_dict(), load=load.to_dict(), endpoint=url
        ),
        slo=asdict(slo),
        **result.measurement_fields(),
    )
    m = _load_bound(m, args.tokenizer, profile)
    m = m.judged(judge(m, None))
    print(metrics_table(m.metrics))
    for note in m.notes:
        print(f"note: {note}")
    if m.failed:
        print(f"perfsuite: {m.verdict.value}: " + "; ".join(m.judgement.notes), file=sys.stderr)
    if args.json:
        jsonfile.write_atomic(args.json, {"schema": 1, "profile": profile.name, "measurements": [m.to_dict()]})
        print(f"wrote {args.json}")
    return 1 if m.failed else 0


def _load_traffic(args: argparse.Namespace):
    """The workload and load `perfsuite load` sends: a named workload, synthetic lengths (--input-len,
    --output-len), a dataset (--dataset) or a trace replayed at its timing (--trace); with --turns,
    multi-turn sessions (Load.sessions) of the dataset's conversations or of synthetic turns."""
    from perfsuite.loadgen import Load
    from perfsuite.workloads import Workload, get_workload

    if args.turns is not None and args.turns < 1:
        raise UsageError(f"--turns {args.turns}: give a number of turns >= 1")
    if args.turns is None and (args.sessions is not None or args.think_time):
        raise UsageError("--sessions and --think-time go with --turns (multi-turn sessions)")
    if args.trace and args.turns:
        raise UsageError("--turns: a trace is replayed request by request; sessions come from --dataset or synthetic")
    api = args.api or ("chat" if args.turns else "completions")

    sources = [name for name, given in (("--dataset", args.dataset), ("--trace", args.trace)) if given]
    if len(sources) > 1:
        raise UsageError("--dataset and --trace: give one request source")
    if sources and (args.input_len or args.workload):
        raise UsageError(f"{sources[0]} gives the requests: drop --workload and --input-len")
    columns = dict(_key_value(c, "--column") for c in args.column or [])
    if args.trace:
        workload = Workload.from_file(args.trace, kind="trace", format=args.trace_format)
        load = Load.replay(
            args.trace_speedup,
            requests=args.requests,
            duration_s=args.duration,
            warmup_requests=args.warmup or 0,
            request_timeout_s=args.timeout,
            seed=args.seed,
        )
        return workload, load
    if args.dataset:
        workload = Workload.from_file(
            args.dataset, kind="dataset", format=args.dataset_format, api=api, columns=columns,
            output_tokens=args.output_len, max_input_tokens=args.max_input_len,
        )  # fmt: skip
    elif args.input_len or args.output_len:
        if not (args.input_len and args.output_len):
            raise UsageError("--input-len and --output-len go together (synthetic prompts of exact lengths)")
        workload = Workload(
            f"random-{args.input_len}-{args.output_len}", "synthetic prompts of exact lengths", "random",
            api, (args.input_len, args.input_len), (args.output_len, args.output_len),
        )  # fmt: skip
    else:
        workload = get_workload(args.workload or "chat")
    common = dict(
        requests=args.requests if args.requests is not None or args.duration else 64,
        duration_s=args.duration,
        warmup_requests=8 if args.warmup is None else args.warmup,
        request_timeout_s=args.timeout,
        seed=args.seed,
    )
    if args.trace_speedup != 1.0 or args.trace_format:
        raise UsageError("--trace-speedup and --trace-format go with --trace")
    if not args.dataset and (args.dataset_format or args.column or args.max_input_len):
        raise UsageError("--dataset-format, --column and --max-input-len go with --dataset")
    if args.turns:
        workload = replace(workload, turns=args.turns)
        sessions = 8 if args.sessions is None else args.sessions
        load = Load.sessions_of(
            args.concurrency, sessions, args.think_time, warmup_requests=args.warmup or 0,
            request_timeout_s=args.timeout, seed=args.seed,
        )  # fmt: skip
        return workload, load
    if args.arrival == "closed":
        return workload, Load.closed(args.concurrency, **common)
    return workload, Load(arrival=args.arrival, rate=args.rate, concurrency=args.max_concurrency, **common)


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise UsageError(f"{flag} {text!r}: give FIELD=COLUMN, e.g. {flag} prompt=question")
    return key, value


def _served_max_model_len(url: str, model: str, headers: dict | None) -> int | None:
    """The server's max_model_len from its /v1/models (vLLM reports it), or None where it does not say."""
    request = urllib.request.Request(url + "/v1/models", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            served = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    for entry in served.get("data", []) if isinstance(served, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == model and isinstance(entry.get("max_model_len"), int):
            return entry["max_model_len"]
    return None


def _samples(args: argparse.Namespace) -> int:
    from perfsuite.samples import SampleSizes, write_samples

    counts = {
        "--conversations": args.conversations,
        "--multi-turn-conversations": args.multi_turn_conversations,
        "--turns": args.turns,
        "--trace-requests": args.trace_requests,
    }
    for flag, n in counts.items():
        if n < 1:
            raise UsageError(f"{flag} {n}: give a number >= 1")
    if not args.trace_seconds > 0:
        raise UsageError(f"--trace-seconds {args.trace_seconds}: give a number of seconds > 0")
    sizes = SampleSizes(
        args.conversations, args.multi_turn_conversations, args.turns, args.trace_requests, args.trace_seconds,
        seed=args.seed,
    )  # fmt: skip
    for path in write_samples(args.out, sizes):
        print(f"wrote {path}")
    return 0


def _load_bound(m, tokenizer: str, profile):
    """`m` with its efficiency against the roofline, when the tokenizer folder holds the model's
    config.json, and `above_bound` when it beats the bound. The endpoint's engine settings are unknown
    here: the bound assumes none (the loosest). On the cpu profile the probe runs beside the endpoint's
    server, which makes it read low; the best figures stored for this CPU are used when higher."""
    from perfsuite.roofline import Device, measurement_bound

    config = Path(tokenizer) / "config.json"
    if not config.exists():
        return m.with_notes(f"no roofline bound: no config.json in {tokenizer}")
    try:
        device = Device.from_profile(profile)
        bound = measurement_bound(config, device, m.workload, m.load, {}, m.metrics)
    except (ValueError, KeyError, ImportError, RuntimeError, OSError) as exc:
        return m.with_notes(f"no roofline bound: {exc}")
    note = f"physical bound {bound.requests_per_s:,.2f} req/s on {device.name}, limited by {bound.limited_by}"
    return m.against_bound(bound, device.name).with_notes(note)


def _compare(args: argparse.Namespace) -> int:
    """Judge every measurement of NEW against the same test's measurement in OLD."""
    from perfsuite.judge import judge
    from perfsuite.report import comparison_table

    old = {(m["profile"], m["test_id"]): m for m in read_results(args.old)["measurements"]}
    new = read_results(args.new)["measurements"]
    summary, failed = [], False
    for m in new:
        key = (m["profile"], m["test_id"])
        if key not in old:
            summary.append([m["test_id"], m["profile"], "only in new"])
            continue
        problems = [f"{side}: {p}" for side, x in ((args.old, old[key]), (args.new, m)) if (p := _above_bound(x))]
        if problems:  # numbers above the physical bound are a measurement error, not a result to judge
            failed = True
            print(f"{m['test_id']} on {m['profile']}: refused\n" + "\n".join(problems) + "\n")
            summary.append([m["test_id"], m["profile"], "refused: above the physical bound"])
            continue
        base = make_baseline(_measurement(args.old, old[key]), min_tolerance=_min_tolerance(m["profile"]))
        j = judge(replace(_measurement(args.new, m), judgement=None), base)
        failed |= j.fails
        print(f"{m['test_id']} on {m['profile']}: {j.verdict.value}")
        print(comparison_table([r.as_dict() for r in j.rows if r.verdict != "info" or args.all]))
        print("\n".join(j.notes) + "\n")
        summary.append([m["test_id"], m["profile"], j.verdict.value])
    seen = {(m["profile"], m["test_id"]) for m in new}
    summary += [[t, p, "only in old"] for (p, t) in old if (p, t) not in seen]
    print(tabulate(summary, headers=["test", "gpu", "verdict"], disable_numparse=True))
    return 1 if failed else 0


def _merge(args: argparse.Namespace) -> int:
    """Join results files from several runners into one, with one selection matrix."""
    from perfsuite.report import matrix_table, selection_matrix

    measurements, claims, origin = [], [], {}
    for path in args.results:
        data = read_results(path)
        for m in data["measurements"]:
            key = (m["profile"], m["test_id"])
            if key in origin:
                raise UsageError(
                    f"{m['test_id']} on {m['profile']} is in both {origin[key]} and {path}; "
                    "merge results of different runners (or profiles)"
                )
            origin[key] = path
            measurements.append(m)
        claims += data.get("claims", [])
    profiles = sorted({m["profile"] for m in measurements})
    merged = {
        "schema": 1,
        "profile": ",".join(profiles),
        "measurements": measurements,
        "matrix": selection_matrix(measurements),
        "claims": claims,
        "merged_from": list(args.results),
    }
    jsonfile.write_atomic(args.output, merged)
    print(matrix_table(merged["matrix"]))
    print(f"wrote {args.output}: {len(measurements)} measurements from {len(args.results)} files")
    return 0


def _roofline(args: argparse.Namespace) -> int:
    from importlib import resources

    from perfsuite.hardware import resolve_profile
    from perfsuite.roofline import Device, ModelShape, roofline, run_dtype_bytes

    if args.model == "llama-3.1-8b":
        config = json.loads(resources.files("perfsuite").joinpath("data/models/llama-3.1-8b.json").read_text())
    elif args.model == "tiny":
        from perfsuite.model import build_model

        config = json.loads((build_model() / "config.json").read_text())
    elif Path(args.model).exists():
        path = Path(args.model)
        config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    else:
        raise UsageError(f"--model {args.model}: give a model folder or config.json, tiny, or llama-3.1-8b")
    profile = resolve_profile(args.gpu)
    try:
        device = Device.from_profile(profile, args.devices)
        dtype_bytes = run_dtype_bytes(config.get("torch_dtype") or config.get("dtype"), args.dtype)
    except ValueError as exc:
        raise UsageError(f"--gpu={args.gpu} --dtype={args.dtype}: {exc}") from None
    if profile.kind == "cpu":
        from perfsuite.probe import cpu_peak

        print(f"CPU probe: {cpu_peak().describe()}")
    model = ModelShape.from_config(config, dtype_bytes=dtype_bytes)
    b = roofline(model, device, args.input_tokens, args.output_tokens, args.concurrency, args.shared_prefix_tokens)
    print(b.explanation)
    price = profile.price_per_hour * args.devices
    print(
        f"At ${price:g}/h, the lowest possible cost is ${cost_per_million(price, b.requests_per_s):,.2f} "
        f"per 1M requests."
    )
    return 0


def _calc(args: argparse.Namespace) -> int:
    """Monthly cost of a traffic self-hosted at a measured capacity, against every API model."""
    from perfsuite.calculator import Traffic, calculate, capacity_from_results, load_catalogs
    from perfsuite.slo import SLO

    catalogs = load_catalogs(args.prices)
    traffic = Traffic.of(args.requests_per_month, args.peak_rps, args.input_tokens, args.output_tokens)
    if (args.throughput is None) == (args.results is None):
        raise UsageError("capacity: give --throughput REQ_PER_S, or --results FILE with --framework NAME")
    notes = []
    if args.results:
        if not args.framework:
            raise UsageError("--results needs --framework (the framework whose capacity to use)")
        slo = None
        if args.slo_ttft_ms or args.slo_tpot_ms:
            slo = SLO(args.slo_ttft_ms or 1000.0, args.slo_tpot_ms or 100.0, args.slo_percentile)
        cap = capacity_from_results(read_results(args.results), args.framework, args.measured_on, slo)
        throughput, measured_on = cap["throughput_rps"], cap["profile"]
        notes.append(f"capacity: {throughput:.4g} req/s per replica, {cap['basis']}, from {cap['test_id']}")
    else:
        throughput, measured_on = args.throughput, None
    gpu = args.gpu or measured_on
    if args.price_per_hour is not None:
        price, priced = args.price_per_hour, "--price-per-hour"
    elif gpu:
        from perfsuite.hardware import load_catalog

        gpu = load_catalog()[1].get(gpu, gpu)
        price = catalogs.hardware_price(gpu)
        hw = catalogs.hardware[gpu]
        priced = f"{gpu}, {hw['price_source']}, {hw['price_date']}"
    else:
        raise UsageError("price: give --gpu PROFILE (catalog price) or --price-per-hour")
    if measured_on and gpu and gpu != measured_on:
        notes.append(f"capacity measured on {measured_on} but priced as {gpu}: check that is what you mean")
    models = catalogs.api_models
    if args.api:
        unknown = [a for a in args.api if a not in models]
        if unknown:
            raise UsageError(f"--api {', '.join(unknown)}: not in the model catalog; known: {', '.join(models)}")
        models = {k: models[k] for k in args.api}
    r = calculate(traffic, throughput, price, models, args.devices)
    if args.json:
        print(jsonfile.dumps(r | {"notes": notes, "price_basis": priced}))
        return 0
    sh, t = r["self_hosted"], r["traffic"]
    rows = [
        ["requests per month", f"{t['requests_per_month']:,.0f} (average {t['average_rps']:.4g} req/s)"],
        ["peak", f"{t['peak_rps']:.4g} req/s"],
        ["tokens per request", f"{t['input_tokens']:g} in, {t['output_tokens']:g} out"],
        ["capacity per replica", f"{throughput:.4g} req/s"],
        ["price", f"${price:g}/h per device x {args.devices} device(s) ({priced})"],
        ["replicas", f"{sh['replicas']} (peak utilization {sh['utilization']:.0%})"],
        ["self-hosted monthly cost", f"${sh['monthly_cost']:,.2f} (730 h)"],
        ["self-hosted per 1M requests", f"${sh['cost_per_1m_requests']:,.2f}"],
        ["self-hosted per 1M tokens", f"${sh['cost_per_1m_tokens']:,.4f}"],
        ["at full utilization, per 1M requests", f"${sh['full_utilization_cost_per_1m_requests']:,.2f}"],
    ]
    print(tabulate(rows, tablefmt="plain", disable_numparse=True))
    body = [
        [
            f"{a['provider']} {a['model']}",
            a["tier"],
            f"${a['monthly_cost']:,.2f}",
            f"{'-' if a['delta'] < 0 else '+'}${abs(a['delta']):,.2f}",
            "-" if a["delta_pct"] is None else f"{a['delta_pct']:+.1f}%",
            "never" if a["break_even_requests_per_month"] is None else f"{a['break_even_requests_per_month']:,}",
        ]
        for a in r["api"].values()
    ]
    print()
    print(
        tabulate(
            body,
            headers=["API model", "tier", "API monthly", "delta (self - API)", "delta %", "break-even req/month"],
            disable_numparse=True,
        )
    )
    for n in notes:
        print(f"note: {n}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """perf-report.md and perf-report.html from a results file."""
    from perfsuite.report_html import write_reports

    md, page = write_reports(read_results(args.results), args.out, prices=args.prices, baseline_dir=args.baseline_dir)
    print(f"wrote {md}\nwrote {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perfsuite", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("cost", help="cost per 1M requests (and output tokens) at a rate and an hourly price")
    c.add_argument("--price-per-hour", type=float, required=True, help="dollars per hour for the hardware")
    c.add_argument("--rps", type=float, required=True, help="requests per second served")
    c.add_argument("--output-tokens", type=float, default=None, help="output tokens per request (for $/1M tokens)")
    c.set_defaults(func=_cost)

    a = sub.add_parser("approve", help="promote a results file's measurements into baselines, without re-running")
    a.add_argument("results", help="the JSON written by pytest --perf-results")
    a.add_argument("--baseline-dir", default="baselines", help="baseline folder (default: baselines)")
    a.add_argument("--test", action="append", help="only test ids containing this text (repeatable)")
    a.add_argument("--dry-run", action="store_true", help="show what would be written")
    a.add_argument(
        "--across-hardware",
        action="store_true",
        help="replace a baseline even when it was taken on other hardware (its deciding fingerprint differs)",
    )
    a.set_defaults(func=_approve)

    fp = sub.add_parser("fingerprint", help="this machine's hardware fingerprint (provenance.hardware), as JSON")
    fp.set_defaults(func=_fingerprint)

    cp = sub.add_parser("compare", help="the verdict table of NEW against OLD, two results files")
    cp.add_argument("old", help="results file taken as the baseline")
    cp.add_argument("new", help="results file judged against it")
    cp.add_argument("--all", action="store_true", help="show ungated metrics too")
    cp.set_defaults(func=_compare)

    mg = sub.add_parser("merge", help="join results files from several runners into one, with one matrix")
    mg.add_argument("results", nargs="+", help="results files (e.g. an a100 job's and an h100 job's)")
    mg.add_argument("-o", "--output", required=True, help="the merged results file to write")
    mg.set_defaults(func=_merge)

    r = sub.add_parser("roofline", help="the physical upper bound on requests/s for a model on a hardware profile")
    r.add_argument(
        "--model", default="llama-3.1-8b", help="model folder or config.json, tiny (the local model) or llama-3.1-8b"
    )
    r.add_argument("--gpu", default="a100", help="hardware profile (default a100); cpu probes this machine")
    r.add_argument("--dtype", default="auto", help="dtype the engine runs (default auto: at most 2 bytes a weight)")
    r.add_argument("--shared-prefix-tokens", type=int, default=0, help="prompt tokens shared by every request")
    r.add_argument("--devices", type=int, default=1, help="tensor-parallel devices (default 1)")
    r.add_argument("--input-tokens", type=int, default=4096)
    r.add_argument("--output-tokens", type=int, default=512)
    r.add_argument("--concurrency", type=int, default=256, help="sequences in flight at most (default 256)")
    r.set_defaults(func=_roofline)

    k = sub.add_parser(
        "calc",
        help="monthly cost of a traffic self-hosted at a measured capacity vs API models (docs/report.md)",
    )
    k.add_argument("--requests-per-month", type=float, help="traffic: requests per month")
    k.add_argument("--peak-rps", type=float, help="traffic: peak requests/s the replicas are sized for")
    k.add_argument("--input-tokens", type=float, required=True, help="input tokens per request")
    k.add_argument("--output-tokens", type=float, required=True, help="output tokens per request")
    k.add_argument("--throughput", type=float, help="capacity: requests/s one replica serves within the SLO")
    k.add_argument("--results", help="capacity from this results file (its load sweep under the SLO)")
    k.add_argument("--framework", help="with --results: the framework")
    k.add_argument("--measured-on", help="with --results: the profile it was measured on (default: any)")
    k.add_argument("--slo-ttft-ms", type=float, help="with --results: TTFT target (default: the sweep's SLO)")
    k.add_argument("--slo-tpot-ms", type=float, help="with --results: TPOT target (default: the sweep's SLO)")
    k.add_argument("--slo-percentile", type=int, default=90, choices=[50, 90, 99], help="SLO percentile (90)")
    k.add_argument("--gpu", help="hardware profile whose catalog price to use (default: the measured one)")
    k.add_argument("--price-per-hour", type=float, help="or: your own price per device-hour")
    k.add_argument("--devices", type=int, default=1, help="devices per replica (default 1)")
    k.add_argument("--api", action="append", help="API model key to compare with (repeatable; default all)")
    k.add_argument("--prices", help="JSON file of your own hardware and API prices (docs/report.md)")
    k.add_argument("--json", action="store_true", help="print the result as JSON")
    k.set_defaults(func=_calc)

    rp = sub.add_parser("report", help="write perf-report.md and perf-report.html from a results file")
    rp.add_argument("results", help="the JSON written by pytest --perf-results (or perfsuite merge)")
    rp.add_argument("--out", required=True, help="folder to write the two files to")
    rp.add_argument("--prices", help="JSON file of your own hardware and API prices")
    rp.add_argument("--baseline-dir", default="baselines", help="baselines for the trend plots (default baselines)")
    rp.set_defaults(func=_report)

    ld = sub.add_parser("load", help="drive load against a running OpenAI-compatible endpoint and print metrics")
    ld.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    ld.add_argument("--model", required=True, help="model name the server serves")
    ld.add_argument("--tokenizer", required=True, help="folder of the served model's tokenizer (exact lengths)")
    ld.add_argument("--workload", default=None, help="chat, rag or throughput (default chat)")
    ld.add_argument("--api", choices=["completions", "chat"], help="for --dataset, --input-len (default completions)")
    ld.add_argument("--input-len", type=int, help="synthetic prompts of exactly this many tokens (with --output-len)")
    ld.add_argument("--output-len", type=int, help="output tokens (synthetic; or for dataset lines that give none)")
    ld.add_argument(
        "--dataset", help="requests from a dataset file: ShareGPT JSON, JSONL, or a Hugging Face dataset on disk"
    )
    ld.add_argument("--dataset-format", choices=["sharegpt", "jsonl", "hf"], help="default: from the file name")
    ld.add_argument("--column", action="append", help="hf datasets: FIELD=COLUMN (prompt, messages, output_tokens)")
    ld.add_argument("--max-input-len", type=int, help="datasets: drop prompts longer than this (counted)")
    ld.add_argument("--max-model-len", type=int, help="drop requests longer than this (default: what /v1/models says)")
    ld.add_argument("--trace", help="replay a trace at its timing: Mooncake JSONL or the Azure LLM inference CSV")
    ld.add_argument("--trace-format", choices=["mooncake", "azure"], help="default: .csv is azure, else mooncake")
    ld.add_argument("--trace-speedup", type=float, default=1.0, help="replay this many times faster (default 1)")
    ld.add_argument("--turns", type=int, help="multi-turn sessions of this many turns (a dataset's: at most)")
    ld.add_argument("--sessions", type=int, help="with --turns: conversations measured (default 8)")
    ld.add_argument("--think-time", type=float, default=0.0, help="with --turns: seconds between turns (default 0)")
    ld.add_argument("--arrival", choices=["closed", "poisson", "constant"], default="closed")
    ld.add_argument("--concurrency", type=int, default=8, help="closed loop: concurrent users (default 8)")
    ld.add_argument("--rate", type=float, default=None, help="poisson/constant: requests per second")
    ld.add_argument("--max-concurrency", type=int, default=None, help="poisson/constant: cap on requests in flight")
    ld.add_argument(
        "--requests", type=int, default=None, help="measured requests per repetition (default 64; a trace: all)"
    )
    ld.add_argument("--duration", type=float, default=None, help="or: seconds of sending per repetition")
    ld.add_argument("--warmup", type=int, default=None, help="warm-up requests, not counted (default 8; a trace: 0)")
    ld.add_argument("--repetitions", type=int, default=1)
    ld.add_argument(
        "--workers", type=int, default=1, help="load-generator processes (default 1): add them when one cannot keep up"
    )
    ld.add_argument("--ray", metavar="ADDRESS", help="run the workers as Ray actors there: auto, host:port, ray://...")
    ld.add_argument("--timeout", type=float, default=120.0, help="per-request deadline in seconds")
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("--gpu", default="cpu", help="hardware profile for the cost figures (default cpu)")
    ld.add_argument(
        "--framework",
        default="external",
        help="framework serving the endpoint (its /metrics names; default: any installed one's)",
    )
    ld.add_argument("--slo-ttft-ms", type=float, default=1000.0)
    ld.add_argument("--slo-tpot-ms", type=float, default=100.0)
    ld.add_argument(
        "--api-key-env",
        default="PERFSUITE_API_KEY",
        help="environment variable holding a bearer token, if the endpoint needs one",
    )
    ld.add_argument("--no-metrics", action="store_true", help="do not scrape URL/metrics")
    ld.add_argument("--json", help="write the measurement to this results file")
    ld.set_defaults(func=_load)

    sm = sub.add_parser(
        "samples", help="write sample request files made from local text (ShareGPT, multi-turn, Mooncake)"
    )
    sm.add_argument("--out", required=True, help="folder to write sharegpt.json, multi-turn.json and mooncake.jsonl to")
    sm.add_argument("--conversations", type=int, default=160, help="ShareGPT conversations (default 160)")
    sm.add_argument("--multi-turn-conversations", type=int, default=24, help="multi-turn conversations (default 24)")
    sm.add_argument("--turns", type=int, default=4, help="exchanges per multi-turn conversation (default 4)")
    sm.add_argument("--trace-requests", type=int, default=40, help="requests in the Mooncake trace (default 40)")
    sm.add_argument("--trace-seconds", type=float, default=10.0, help="the trace's time span (default 10)")
    sm.add_argument("--seed", type=int, default=0)
    sm.set_defaults(func=_samples)

    from perfsuite.ab.cli import add_parser as add_ab_parser

    add_ab_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "duration", None):
        args.requests = None
    try:
        return args.func(args)
    except PerfsuiteError as exc:
        print(f"perfsuite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
