"""``--workers K``: K processes on one study (this one and K-1 children).

Each child reads the frozen spec and the options from a JSON file and runs
the tuning loop (:func:`~nux_kernel.tune.loop.run_studies` with
:func:`~nux_kernel.tune.loop.optimize_local`) with its own worker index (its own sampler seed);
the shared storage hands out trial numbers, and the budget is counted in the storage, so the
processes together run ``trials`` trials.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from nux_kernel.evaluate.bank import Case, as_cases
from nux_kernel.tune.loop import TrialReport, TuneOptions, optimize_local, run_studies
from nux_kernel.tune.storage import default_storage
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["main", "run_workers"]


def run_workers(spec: WorkbookSpec, base_dir: Path, options: TuneOptions, *,
                cases: Sequence[Case | Mapping[str, Any]] | None = None,
                on_trial: TrialReport | None = None) -> optuna.Study:
    count = options.workers
    options = TuneOptions.from_dict({**options.to_dict(), "workers": 1,
                                     "storage": options.storage or default_storage(base_dir)})
    logs = base_dir / ".nux" / "tune"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[tuple[subprocess.Popen[bytes], Path]] = []
    payload_cases = [c.to_dict() for c in as_cases(cases)] if cases is not None else None
    with tempfile.TemporaryDirectory(dir=logs) as scratch:
        for index in range(1, count):
            job = Path(scratch) / f"worker-{index}.json"
            job.write_text(json.dumps({
                "spec": json.loads(spec.to_json()), "base_dir": str(base_dir),
                "options": {**options.to_dict(), "worker_index": index},
                "cases": payload_cases}), encoding="utf-8")
            log = logs / f"worker-{index}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "nux_kernel.tune.workers",
                                         str(job)], stdout=fh, stderr=subprocess.STDOUT)
            children.append((proc, log))
        try:
            study = run_studies(spec, base_dir, options, optimize_local, cases=cases,
                                on_trial=on_trial)
        finally:
            codes = [(proc.wait(), log) for proc, log in children]
    failed = [log for code, log in codes if code != 0]
    if failed:
        tail = failed[0].read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise NuxError(problems=[Problem(
            code="tune-worker", message=f"{len(failed)} worker process(es) failed: "
            f"{' | '.join(tail)}", fix=f"see {failed[0]}")])
    return study


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    spec = WorkbookSpec.model_validate(job["spec"])
    options = TuneOptions.from_dict(job["options"])
    try:
        run_studies(spec, job["base_dir"], options, optimize_local, cases=job["cases"])
    except NuxError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
