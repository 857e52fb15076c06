"""Opset/IR choice for a target onnxruntime, against onnxruntime's published table."""

from __future__ import annotations

import pytest

from onnxport.graph import opsets
from onnxport.errors import InputError


@pytest.mark.parametrize(
    ("ort", "expected"),
    [("1.12", (8, 17)), ("1.14", (8, 18)), ("1.16", (9, 19)), ("1.16.3", (9, 19)), ("1.17", (9, 20)),
     ("1.20", (10, 21)), ("1.22", (11, 23))],
)
def test_capability_follows_the_compatibility_table(ort, expected):
    assert opsets.capability(ort) == expected


@pytest.mark.parametrize(("ir", "opset", "expected"), [(8, 17, "1.12"), (9, 20, "1.17"), (7, 14, "1.8"),
                                                        (10, 21, "1.18")])
def test_min_ort_for(ir, opset, expected):
    assert opsets.min_ort_for(ir, opset) == expected


def test_installed_runtime_runs_at_least_what_the_table_says():
    ir, opset = opsets.capability(opsets.installed_ort_version())
    assert (ir, opset) >= (11, 23)


def test_bad_version_is_an_input_error():
    with pytest.raises(InputError, match="MAJOR.MINOR"):
        opsets.capability("latest")
