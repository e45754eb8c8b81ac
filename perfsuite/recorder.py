"""What a perf test asks for, without pytest: measure a server, sweep its load, run an engine offline,
record a claim; each measurement judged and kept by the session. Raises perfsuite's errors
(GateFailure when a verdict fails the test, Unavailable when something cannot run here); the pytest
plugin turns those into pytest.fail and pytest.skip in one place."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace

from perfsuite.ab.plan import PlannedServer, PlanRecorder
from perfsuite.cost import add_costs
from perfsuite.errors import GateFailure, PerfsuiteError, Unavailable
from perfsuite.frameworks import EngineSettings, OfflineCapable, RunningServer
from perfsuite.loadgen import Load
from perfsuite.loads import sized_load
from perfsuite.measurement import Measurement
from perfsuite.report import comparison_table
from perfsuite.runner import Run, provenance
from perfsuite.runner import run as run_load_repetitions
from perfsuite.session import PerfSession
from perfsuite.slo import SLO, meets_slo, sustainable_point
from perfsuite.workloads import Workload, get_workload

__all__ = ["Recorder", "SWEEP_KEYS", "claim_coverage"]

# What each point of a load sweep keeps (the report plots them; slo.meets_slo reads them).
SWEEP_KEYS = (
    "request_throughput",
    "output_throughput",
    "goodput",
    "error_rate",
    *(f"{m}_p{p}_ms" for m in ("ttft", "tpot", "e2e") for p in (50, 90, 99)),
)

Runner = Callable[..., Run]  # perfsuite.runner.run's signature; tests pass a fake


def claim_coverage(named: Iterable[str], measured: Iterable[str], verdict: str) -> tuple[str, str]:
    """(verdict, what was missing) for a claim about the frameworks `named`, of which `measured` ran:
    "partly measured" when some did not, naming them; the verdict unchanged when all did."""
    missing = sorted(set(named) - set(measured))
    if not missing:
        return verdict, ""
    return "partly measured", f"{verdict} on what ran; not measured: {', '.join(missing)}"


class Recorder:
    """Measurements for one test (`test_id`) in `session`; `run` does the load repetitions."""

    def __init__(
        self,
        session: PerfSession,
        test_id: str,
        engine: EngineSettings = EngineSettings(),
        run: Runner = run_load_repetitions,
    ) -> None:
        self.session = session
        self.test_id = test_id
        self.engine = engine
        self._run_repetitions = run

    @property
    def profile(self) -> str:
        """The hardware profile's name, for tests whose thresholds depend on it."""
        return self.session.profile.name

    def sized_load(self, arrival: str = "closed") -> Load:
        """The default perf tests' load on this profile (perfsuite.loads: 8 users on the CPU default, as
        many as the KV cache and max_num_seqs take on a GPU), closed or Poisson."""
        return sized_load(self.session.profile.name, arrival)

    def measure(
        self,
        server: RunningServer,
        workload: str | Workload = "chat",
        load: Load | None = None,
        *,
        thresholds: dict[str, str] | None = None,
        slo: SLO | None = None,
        repetitions: int | None = None,
        max_error_rate: float = 0.0,
        variant: str | None = None,
    ) -> Measurement:
        """Measure `server`; `variant` names one of several measurements in one test (its own baseline).
        Any failed request fails the test unless `max_error_rate` allows it."""
        if isinstance(server, PlannedServer):  # planning for perfsuite ab (a fixture that built a Recorder)
            PlanRecorder.of(self.session, self.test_id).measure(
                server, workload, load, thresholds=thresholds, slo=slo, repetitions=repetitions,
                max_error_rate=max_error_rate, variant=variant,
            )  # fmt: skip
        wl = get_workload(workload) if isinstance(workload, str) else workload
        load = load or Load.closed(8, requests=48)
        slo = slo or SLO()
        result = self._run(server, wl, load, slo, repetitions or self.session.options.repetitions, adaptive=True)
        m = self._measurement(server, wl, load.to_dict(), result, slo, variant, max_error_rate)
        return self._record(m, thresholds)

    def sweep(
        self,
        server: RunningServer,
        workload: str | Workload = "chat",
        rates: tuple[float, ...] = (4, 8, 16, 32),
        *,
        requests: int = 24,
        seconds: float = 3.0,
        warmup_requests: int = 4,
        slo: SLO | None = None,
        thresholds: dict[str, str] | None = None,
    ) -> Measurement:
        """Poisson arrivals at each rate in turn, lowest first, one run each of `seconds` of arrivals (at
        least `requests` requests): the throughput-latency curve. A fixed handful of requests would not
        do: a short burst above capacity drains before a queue shows. It stops after the first rate that
        misses `slo` (past the knee every rate only queues longer). The measurement kept is the one at
        the highest rate that met the SLO: that rate, not the peak, is what capacity and cost rest on.
        Every point is in Measurement.sweep["points"] for the report."""
        wl = get_workload(workload) if isinstance(workload, str) else workload
        slo = slo or SLO()
        if not rates:
            raise PerfsuiteError("sweep: give at least one rate")
        points, runs = [], {}
        for i, rate in enumerate(sorted(rates)):
            count = max(requests, math.ceil(rate * seconds))
            load = Load.poisson(rate, requests=count, warmup_requests=warmup_requests, seed=i)
            result = self._run(server, wl, load, slo, 1, adaptive=False)
            points.append({"rate": rate, **{k: round(result.metrics[k], 4) for k in SWEEP_KEYS}})
            runs[rate] = result
            if not meets_slo(points[-1], slo):
                break
        best = sustainable_point(points, slo)
        # No rate met the SLO: a finding about the framework (capacity below the lowest rate), not a broken
        # measurement. The lowest rate's run is kept; the sweep says there is no capacity to cost.
        chosen = runs[(best or points[0])["rate"]]
        load = {
            "arrival": "poisson-sweep",
            "rates": sorted(rates),
            "requests": requests,
            "seconds": seconds,
            "warmup_requests": warmup_requests,
        }
        p = slo.percentile
        if best is None:
            note = (
                f"no swept rate met the SLO (TTFT p{p} <= {slo.ttft_ms:g} ms, TPOT p{p} <= {slo.tpot_ms:g} ms): "
                f"capacity is below {points[0]['rate']:g} req/s"
            )
        elif best is points[-1]:
            note = f"the SLO held at every swept rate: capacity is at least {best['rate']:g} req/s offered"
        else:
            note = f"capacity under the SLO: {best['rate']:g} req/s offered (the next rate missed it)"
        m = self._measurement(server, wl, load, chosen, slo)
        m = replace(
            m,
            sweep={
                "slo": asdict(slo),
                "points": points,
                "rate": best and best["rate"],
                "throughput_rps": best and best["request_throughput"],
                "knee_found": best is not points[-1],  # False: every rate met the SLO, capacity is at least this
            },
            # Measured on this machine: the sustainable rate moves a whole step (64 <-> 96 req/s for vLLM)
            # from run to run, a 30% swing no tolerance can gate. Thresholds still apply; the report draws it.
            ungated="a sweep's sustainable rate moves a whole rate step between runs",
            notes=(*m.notes, note),
        )
        return self._record(m, thresholds)

    def measure_offline(
        self,
        framework: str = "vllm",
        workload: str = "throughput",
        requests: int = 64,
        *,
        thresholds: dict[str, str] | None = None,
    ) -> Measurement:
        """Offline (in-process) throughput of `framework`, e.g. vllm.LLM.generate over a batch of prompts.
        The machine is borrowed from the server pool for the run (no server computes beside it)."""
        s = self.session
        plugin = s.frameworks.get(framework)
        if not isinstance(plugin, OfflineCapable):
            raise Unavailable(f"{framework}: no offline mode")
        if reason := s.why_unavailable(framework):
            raise Unavailable(f"{framework}: {reason}")
        wl = get_workload(workload)
        specs = s.prompts().requests(wl, requests, seed=0)
        out_tokens = wl.output_tokens[1]
        with s.pool.borrow():
            metrics = plugin.offline(s.model, self.engine, s.profile, [x.prompt for x in specs], out_tokens)
        price = s.profile.price_per_hour * self.engine.tensor_parallel_size
        metrics = add_costs(dict(metrics), price)
        metrics.setdefault("error_rate", 0.0)
        m = self._identity(
            f"{framework}-offline",
            plugin.version(),
            self.engine,
            wl,
            {"arrival": "offline", "requests": requests, "output_tokens": out_tokens},
            metrics=metrics,
            repetitions=(metrics,),
        )
        return self._record(m, thresholds)

    def claim(self, claim: str, statement: str, verdict: str, evidence: str, frameworks: Iterable[str] = ()) -> dict:
        """Record what a claim from the literature came to here: held, not held, or not measurable here.
        A claim about `frameworks` of which some did not run is "partly measured"."""
        if frameworks:
            measured = {m.framework for m in self.session.measurements}
            verdict, missing = claim_coverage(frameworks, measured, verdict)
            if missing:
                evidence = f"{evidence} ({missing})"
        entry = {
            "test_id": self.test_id,
            "claim": claim,
            "statement": statement,
            "verdict": verdict,
            "evidence": evidence,
            "profile": self.session.profile.name,
        }
        self.session.claims.append(entry)
        return entry

    # The steps every measurement goes through.

    def _run(self, server: RunningServer, wl: Workload, load: Load, slo: SLO, repetitions: int, adaptive: bool) -> Run:
        """The load repetitions against `server`; an error names the framework. `adaptive`: --perf-budget-s
        may add repetitions (not for a sweep's single run per rate)."""
        s = self.session
        if s.options.workers > 1 and load.workers == 1 and load.arrival != "sessions":  # sessions: one process
            load = replace(load, workers=s.options.workers)
        try:
            return self._run_repetitions(
                server.target(wl.api),
                wl,
                load,
                s.prompts(),
                s.profile,
                devices=server.settings.tensor_parallel_size,
                repetitions=repetitions,
                slo=slo,
                budget_s=s.options.budget_s if adaptive else None,
                max_model_len=server.settings.max_model_len,
                ray_address=s.options.ray_address,
            )
        except PerfsuiteError as exc:
            raise type(exc)(f"{server.framework}: {exc}") from exc

    def _identity(
        self,
        framework: str,
        version: str,
        settings: EngineSettings,
        wl: Workload,
        load: dict,
        variant: str | None = None,
        **numbers,
    ) -> Measurement:
        """A measurement of (test, framework, model, workload, load, engine) with its provenance; `numbers`
        are the Measurement's remaining fields. `variant` names one of several measurements in one test."""
        s = self.session
        engine = settings.to_dict()
        price = s.profile.price_per_hour * settings.tensor_parallel_size
        source = f"{s.profile.price_source} ({s.profile.price_date})"
        return Measurement(
            test_id=self.test_id + (f"@{variant}" if variant else ""),
            framework=framework,
            framework_version=version,
            model=s.model_label,
            profile=s.profile.name,
            device_kind=s.profile.kind,
            workload=wl.to_dict(),
            load=load,
            engine=engine,
            price_per_hour=price,
            price_source=source,
            provenance=provenance(
                framework=framework,
                framework_version=version,
                model=s.model_label,
                workload=wl.to_dict(),
                load=load,
                engine=engine,
                price_per_hour=price,
                price_source=source,
            ),
            **numbers,
        )

    def _measurement(
        self,
        server: RunningServer,
        wl: Workload,
        load: dict,
        result: Run,
        slo: SLO,
        variant: str | None = None,
        allowed_error_rate: float = 0.0,
    ) -> Measurement:
        return self._identity(
            server.framework,
            server.version,
            server.settings,
            wl,
            load,
            variant,
            slo=asdict(slo),
            **result.measurement_fields(),
            allowed_error_rate=allowed_error_rate,
            server_notes=tuple(server.notes),
        )

    def _record(self, m: Measurement, thresholds: dict[str, str] | None) -> Measurement:
        """Judge and keep `m` (perfsuite.session); GateFailure with the verdict table when it fails."""
        m = self.session.record(m, thresholds)
        if m.failed:
            table = comparison_table([r.as_dict() for r in m.judgement.rows]) if m.judgement.rows else ""
            notes = "\n".join(m.judgement.notes)
            raise GateFailure(
                f"perf {m.verdict.value}: {m.test_id} on {m.profile} vs {self.session.baseline_file(m.test_id)}\n"
                + "\n".join(x for x in (table, notes) if x),
                m,
            )
        return m
