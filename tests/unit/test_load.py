"""Load: every field is checked when it is made, and the message names the field and the fix."""

import math

import pytest

from perfsuite.errors import UsageError
from perfsuite.loadgen import Load


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: Load.closed(2, request_timeout_s=0), "request_timeout_s"),
        (lambda: Load.closed(2, request_timeout_s=-5.0), "request_timeout_s"),
        (lambda: Load.closed(2, request_timeout_s=math.nan), "request_timeout_s"),
        (lambda: Load.closed(2, requests=-1), "requests"),
        (lambda: Load.closed(2, requests=2.5), "requests"),
        (lambda: Load.closed(2, warmup_requests=-1), "warmup_requests"),
        (lambda: Load.closed(2, requests=None, duration_s=-1.0), "duration_s"),
        (lambda: Load.closed(2, requests=None, duration_s=math.inf), "duration_s"),
        (lambda: Load.poisson(4.0, concurrency=0), "concurrency"),
        (lambda: Load.constant(4.0, concurrency=-2), "concurrency"),
        (lambda: Load.closed(2, seed=1.5), "seed"),
        (lambda: Load.closed(2, seed="7"), "seed"),
        (lambda: Load.poisson(math.inf), "rate"),
        (lambda: Load.closed(0), "concurrency"),
    ],
)
def test_bad_field_is_named_with_its_value_and_fix(make, field):
    with pytest.raises(UsageError, match=rf"Load\.{field}=") as err:
        make()
    assert any(w in str(err.value) for w in ("use", "must", "needs")), str(err.value)


@pytest.mark.parametrize(
    "load",
    [
        Load.closed(1, requests=0, duration_s=1.0, warmup_requests=0),
        Load.poisson(0.5, concurrency=None, requests=3),
        Load.constant(2.0, concurrency=1, requests=3, seed=-4, request_timeout_s=0.1),
    ],
)
def test_edge_values_that_make_sense_are_accepted(load):
    assert load.to_dict()["arrival"] == load.arrival
