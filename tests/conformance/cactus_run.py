"""``cactus run`` that also writes what happened, step by step, as JSON.

    python cactus_run.py OUTCOME.json run -c CONFIG --headless ... ID CLIENT...

Runs cactus-client's own command line unchanged; it only watches for the results evaluation
cactus makes at the end of a run (normal end, failure or timeout) and writes, beside it, each
step's state and reason, the XSD errors and the warnings, for the runner's RESULTS.md. Run with
the Python 3.12 venv that holds cactus-client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cactus_client.results.common as results
from cactus_client.cli.main import cli_entrypoint


def _step(context: Any, step: Any) -> dict[str, Any]:
    progress = context.progress.progress_by_step_id.get(step.id)
    if progress is None:
        return {"id": step.id, "state": "not executed", "reason": ""}
    result = progress.result
    if result is not None:
        if result.is_skipped():
            return {"id": step.id, "state": "skipped", "reason": result.skip_reason}
        if result.is_passed():
            return {"id": step.id, "state": "passed", "reason": ""}
        reason = result.failure_result.description if result.failure_result else ""
        if result.exc is not None:
            reason = f"{type(result.exc).__name__}: {result.exc}"
        return {"id": step.id, "state": "failed", "reason": reason or "failed"}
    # Still repeating (repeat_until_pass) when the run ended: the last attempt says why.
    reason = ""
    if progress.step_execution_completions:
        last = progress.step_execution_completions[-1]
        if last.exc is not None:
            reason = f"{type(last.exc).__name__}: {last.exc}"
        elif last.check_result is not None and not last.check_result.passed:
            reason = last.check_result.description or ""
        elif last.action_result is not None and not last.action_result.completed:
            reason = last.action_result.description or ""
    attempts = len(progress.step_execution_completions)
    return {"id": step.id, "state": "unfinished", "attempts": attempts, "reason": reason}


def _write(path: Path, context: Any, evaluation: Any) -> None:
    outcome = {
        "execution_complete": evaluation.execution_complete,
        "steps": [_step(context, step) for step in context.test_procedure.steps],
        "xsd_errors": [
            {
                "method": r.method,
                "url": str(getattr(r, "url", "notification")),
                "errors": [str(e) for e in r.xsd_errors[:3]],
            }
            for r in context.responses.responses
            if getattr(r, "xsd_errors", None)
        ],
        "warnings": [w.message for w in context.warnings.warnings][:20],
    }
    path.write_text(json.dumps(outcome, indent=2))


def main() -> None:
    path = Path(sys.argv[1])
    sys.argv = ["cactus", *sys.argv[2:]]
    evaluate = results.ResultsEvaluation.__init__

    def evaluate_and_write(self: Any, context: Any, execute_result: Any) -> None:
        evaluate(self, context, execute_result)
        _write(path, context, self)

    results.ResultsEvaluation.__init__ = evaluate_and_write  # type: ignore[method-assign]
    cli_entrypoint()


if __name__ == "__main__":
    main()
