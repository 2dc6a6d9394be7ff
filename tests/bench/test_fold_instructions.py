"""The instruction-count benchmark: what it runs under valgrind folds without a refusal, and it
will not count a kernel that runs from source."""

from __future__ import annotations

import pytest

from benchmarks import fold_instructions as fi
from engine import compiled


@pytest.mark.parametrize("kind", ["enroll", "move", "system"])
def test_the_counted_workload_runs(kind: str) -> None:
    fi.inner(devices=100, events=50, kind=kind)  # raises if the fold refuses a command


def test_it_refuses_a_kernel_from_source(capsys: pytest.CaptureFixture[str]) -> None:
    if compiled.kernel() == "compiled":
        pytest.skip("this tree runs compiled")
    assert fi.main(["--devices", "10"]) == 2
    assert "make compile" in capsys.readouterr().err
