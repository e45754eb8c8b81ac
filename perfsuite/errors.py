"""The few exceptions perfsuite raises. Each message says what was wrong, where, and what to do."""

from __future__ import annotations


class PerfsuiteError(Exception):
    """Base class for every error perfsuite raises on purpose."""


class UsageError(PerfsuiteError):
    """A bad option or argument: unknown profile, missing model, wrong GPU."""


class BaselineError(PerfsuiteError):
    """A baseline file that cannot be read or does not match the schema."""


class ServerError(PerfsuiteError):
    """A serving framework that did not start, died, or stopped answering."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        if log_tail:
            message = f"{message}\n--- last lines of the server log ---\n{log_tail}"
        super().__init__(message)
        self.log_tail = log_tail


class MeasurementError(PerfsuiteError):
    """A load run whose numbers cannot be trusted (token counts off, every request failed)."""


class Unavailable(PerfsuiteError):
    """A framework, or a mode of one, that cannot run on this machine: the test is skipped with the reason."""


class GateFailure(PerfsuiteError):
    """A measurement whose verdict fails its test (a regression, a breached threshold, a measurement error)."""

    def __init__(self, message: str, measurement) -> None:
        super().__init__(message)
        self.measurement = measurement
