"""Where studies live: a SQLite file beside the workbook, or any Optuna RDB URL.

Storages record a heartbeat for every running trial; a trial whose process died (killed, lost
machine) stops beating, is marked failed after the grace period by the next process that looks,
and :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues it again with the same
params.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from nux_kernel.tune.objectives import Objectives
from nux_runtime.errors import NuxError, Problem

__all__ = ["RECORD", "BeatingStorage", "Heartbeat", "best_trial", "default_storage", "finished",
           "load_study", "open_storage", "pareto_front", "quiet", "record"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide Optuna's notes that heartbeats and stale-trial retries are experimental, and that
    heartbeats are meant for ``Study.optimize``: NUX drives them itself, through ask/tell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


def default_storage(base_dir: str | Path) -> str:
    path = Path(base_dir).resolve() / ".nux" / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_connect(path: str) -> Callable[[], sqlite3.Connection]:
    """Connections in WAL mode with ``synchronous=NORMAL``: a commit is one write, not several
    fsyncs, and a killed process loses nothing it committed (a power cut may lose the last
    commits); readers never wait for the writer, so several workers share the file."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return connect


class BeatingStorage(RDBStorage):
    """An RDB storage whose running trials beat from the moment they start running.

    Optuna records a trial's first heartbeat only once its runner starts beating; a process
    killed in between would leave a running trial no one can ever find stale. Here the first
    beat is written right when a trial is created running or taken from the queue.
    """

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None
                         ) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial_id)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            self.record_heartbeat(trial_id)
        return changed

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, after giving a first beat to every running trial that has
        none: a process killed between creating a trial and its first beat left it so, and
        from this beat on it goes stale like any other if no one keeps beating for it."""
        stale = super()._get_stale_trial_ids(study_id)
        with _create_scoped_session(self.scoped_session) as session:
            unbeaten = [trial_id for (trial_id,) in session.query(models.TrialModel.trial_id)
                        .filter(models.TrialModel.study_id == study_id,
                                models.TrialModel.state == TrialState.RUNNING,
                                ~models.TrialModel.heartbeats.any())]
        for trial_id in unbeaten:
            self.record_heartbeat(trial_id)
        return stale


def open_storage(url: str, *, heartbeat_s: float = 5.0) -> RDBStorage:
    """An RDB storage with heartbeats and the retry of failed (interrupted) trials."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        kwargs["engine_kwargs"] = {"creator": _sqlite_connect(url.removeprefix("sqlite:///"))}
    elif url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        with quiet():
            return BeatingStorage(url, heartbeat_interval=max(1, round(heartbeat_s)),
                              grace_period=max(3, round(heartbeat_s * 3)),
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=3),
                              **kwargs)
    except Exception as exc:  # a bad URL, an unreachable server, a missing driver
        raise NuxError(problems=[Problem(
            code="storage", message=f"cannot open the study storage {url!r}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            fix="give an Optuna RDB URL such as sqlite:///studies.db or "
                "postgresql+psycopg://user@host/db")]) from None


def load_study(name: str, storage: str | RDBStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        store = storage if isinstance(storage, RDBStorage) else open_storage(storage)
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise NuxError(problems=[Problem(
            code="study", message=f"no study {name!r} in the storage",
            fix=f"run `nux tune` first; studies there: {', '.join(names) or 'none'}")]) from None


RECORD = "nux"


def record(trial: FrozenTrial) -> dict[str, Any]:
    """What NUX recorded on a trial: overrides, worker, metrics, constraints, cache figures."""
    value = trial.user_attrs.get(RECORD)
    return value if isinstance(value, dict) else {}


def finished(trials: Sequence[FrozenTrial]) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible best trials (the Pareto front for several objectives)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    feasible = [t for t in complete if all(c <= 0 for c in record(t).get("constraints", []))]
    if not feasible:
        return []
    if len(study.directions) == 1:
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        return [max(feasible, key=lambda t: (sign * t.values[0], -t.number))]
    signs = [1.0 if d.name == "MAXIMIZE" else -1.0 for d in study.directions]
    scored = [(t, [s * v for s, v in zip(signs, t.values, strict=True)]) for t in feasible]

    def dominated(mine: list[float]) -> bool:
        return any(all(o >= m for o, m in zip(other, mine, strict=True)) and other != mine
                   for _, other in scored)

    return [t for t, values in scored if not dominated(values)]


def best_trial(study: optuna.Study, objectives: Objectives | None = None) -> FrozenTrial | None:
    """The trial to pin: on the front, the best quality, then the lowest of the rest."""
    front = pareto_front(study)
    if not front:
        return None
    index = objectives.quality_index() if objectives is not None else 0
    sign = [1.0 if d.name == "MAXIMIZE" else -1.0 for d in study.directions]

    def rank(t: FrozenTrial) -> tuple[float, ...]:
        first = sign[index] * t.values[index]
        rest = tuple(sign[i] * v for i, v in enumerate(t.values) if i != index)
        return (first, *rest, -t.number)

    return max(front, key=rank)


class Heartbeat:
    """Beats for one running trial until closed (a thread; what ``study.optimize`` does)."""

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self._stop = threading.Event()
        interval = storage.get_heartbeat_interval() or 5
        storage.record_heartbeat(trial_id)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:  # the trial finished meanwhile, or the storage blinked
                    continue

        self._thread = threading.Thread(target=beat, name=f"nux-heartbeat-{trial_id}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
