"""The selection matrix on a real run's results: a framework that could not run here gets a row that
says why, and no numbers."""

import json
from pathlib import Path

from perfsuite.report import matrix_table, selection_matrix

REAL = Path(__file__).parents[1] / "data" / "results-cpu-vllm-real-run.json"


def test_an_unmeasured_framework_is_a_row_with_the_reason():
    measurements = json.loads(REAL.read_text())["measurements"]
    why = "the TGI image ghcr.io/huggingface/text-generation-inference:3.3.7 is not present locally"
    rows = selection_matrix(measurements, {"tgi": why, "vllm": "never shown: vllm was measured"})
    by = {r["framework"]: r for r in rows}
    assert by["vllm"].get("not_measured") is None and by["vllm"]["request_throughput"] > 0
    assert by["tgi"]["not_measured"] == why and by["tgi"]["request_throughput"] is None
    assert by["tgi"]["profile"] == by["vllm"]["profile"] == "cpu"
    table = matrix_table(rows)
    tgi_line = next(line for line in table.splitlines() if line.startswith("tgi"))
    assert f"not measured: {why}" in tgi_line and tgi_line.split()[2] == "-"
