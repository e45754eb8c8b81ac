"""perfsuite: load-test LLM serving frameworks from pytest and fail the build on regressions."""

from perfsuite.cost import cost_per_million
from perfsuite.errors import BaselineError, MeasurementError, PerfsuiteError, ServerError, UsageError
from perfsuite.frameworks import EngineSettings
from perfsuite.loadgen import Endpoint, Load
from perfsuite.measurement import Measurement
from perfsuite.slo import SLO
from perfsuite.stages import Stage
from perfsuite.verdict import Verdict
from perfsuite.workloads import Workload

__all__ = [
    "Load",
    "Stage",
    "Workload",
    "Endpoint",
    "EngineSettings",
    "SLO",
    "Measurement",
    "Verdict",
    "cost_per_million",
    "PerfsuiteError",
    "UsageError",
    "BaselineError",
    "ServerError",
    "MeasurementError",
]
