"""``--ray``: trials as Ray actor calls on a local or remote Ray cluster.

The tuning loop (:class:`~nux_kernel.tune.loop.TuningLoop`: ask, tell, fail and the
heartbeats) stays in this process; each actor holds a
:class:`~nux_kernel.tune.trials.TrialRunner` (components loaded once, one stage cache) and
scores whole trials. Without ``--address`` a private local Ray is started (2 CPUs, no dashboard,
never another user's cluster) and shut down at the end; a Ray already initialized in this
process is used as it is and left running.

The dispatch is ``ray.wait`` over one future per trial rather than ``ray.util.ActorPool``: the
loop must know which trial an answer or a failure belongs to (its heartbeat stops, it is failed
and retried), and ActorPool neither says which submission raised nor keeps a dead actor out of
the pool, so one lost actor would fail every trial given to it after.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna

from nux_kernel.evaluate.bank import as_cases
from nux_kernel.tune.loop import TuningLoop
from nux_kernel.tune.space import Overrides, SearchSpace
from nux_kernel.tune.storage import Heartbeat
from nux_kernel.tune.trials import TrialOutcome, TrialRunner
from nux_runtime.errors import NuxError, Problem
from nux_runtime.serve.local import init_local_ray
from nux_runtime.spec import WorkbookSpec

__all__ = ["TrialActor", "optimize_ray"]


class TrialActor:
    """One Ray actor: scores trials of one workbook on one bank."""

    def __init__(self, spec_json: str, base_dir: str, cases: list[dict[str, Any]],
                 concurrency: int, notebook: str | None = None) -> None:
        self.runner = TrialRunner(WorkbookSpec.from_json(spec_json), base_dir, as_cases(cases),
                                  concurrency=concurrency, notebook=notebook)

    def run(self, overrides: Overrides) -> dict[str, Any]:
        """The trial's outcome, and which process on which node scored it."""
        return {"outcome": self.runner.run(overrides).to_dict(),
                "worker": f"ray:{socket.gethostname()}:{os.getpid()}"}


def _connect(address: str | None) -> bool:
    """Initialize Ray when this process has not; whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            init_local_ray(2)
    except Exception as exc:
        raise NuxError(problems=[Problem(
            code="ray", message=f"cannot start or reach Ray ({address or 'local'}): "
            f"{type(exc).__name__}: {exc}",
            fix="check --address (ray://host:10001 or host:6379), or drop it for a local Ray")]
        ) from None
    return True


def optimize_ray(run: TuningLoop, study: optuna.Study, space: SearchSpace) -> None:
    """The Ray dispatcher: trials asked and told here, scored by a pool of actors."""
    import ray

    started = _connect(run.options.ray_address)
    remote = ray.remote(num_cpus=1)(TrialActor)
    count = max(2, run.options.workers)
    cases = [c.to_dict() for c in run.cases]
    actors: list[Any] = [remote.remote(run.spec.to_json(), str(run.base_dir), cases,  # type: ignore[attr-defined]
                            run.options.concurrency, run.options.notebook)
                            for _ in range(count)]
    idle = list(actors)
    inflight: dict[Any, tuple[optuna.Trial, Overrides, Heartbeat, Any]] = {}

    def dispatch(asked: tuple[optuna.Trial, Overrides]) -> None:
        trial, overrides = asked
        actor = idle.pop()
        ref = actor.run.remote(overrides)
        inflight[ref] = (trial, overrides, run.heartbeat(trial), actor)

    try:
        while True:
            while idle:
                asked = run.ask(study, space, block=False)
                if asked is None:
                    break
                dispatch(asked)
            if not inflight:
                asked = run.ask(study, space, block=True)
                if asked is None:
                    return
                dispatch(asked)
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                trial, overrides, beat, actor = inflight.pop(ref)
                beat.close()
                idle.append(actor)
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    run.fail(study, trial, exc, overrides)
                    continue
                run.tell(study, trial, overrides, TrialOutcome(**result["outcome"]),
                          worker=result["worker"])
    finally:
        for trial, overrides, beat, _ in inflight.values():
            beat.close()
            run.fail(study, trial, RuntimeError("interrupted"), overrides)
        for actor in actors:
            ray.kill(actor)  # type: ignore[arg-type]
        if started:
            ray.shutdown()
