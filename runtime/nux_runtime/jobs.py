"""Batch jobs of an exported workbook: ``python -m nux_runtime.jobs run JOB.json``.

An export writes one job file per Qdrant collection its served stages read (``jobs/<job>.json``):
the frozen spec of the ingest workbook that fills the collection, the stages to run, and where
its documents are. This module runs such a file with the runtime's own components, in the same
image (or virtualenv) as the served stages, and imports nothing but ``nux_runtime``:

    python -m nux_runtime.jobs run jobs/ingest-handbook.json              # the embedded store
    python -m nux_runtime.jobs run /opt/nux/jobs/ingest-handbook.json \\
        --set ingest.url=http://qdrant:6333 --set ingest.api_key_env=QDRANT_API_KEY

Relative paths in the spec resolve against ``<data root>/<base_dir>``; the data root is the
``data/`` folder beside ``jobs/`` unless ``--data`` names another. ``--set STAGE.PARAM=VALUE``
changes one param for this run (a production Qdrant URL, a collection name); VALUE is read as
JSON when it parses, as text otherwise. Each stage call takes the stage-call policy the
playground and the served app take (:mod:`nux_runtime.stagecall`: retries of transient errors,
the stage's ``timeout_s``; an ingest has no default timeout). The job prints each target
stage's report as one JSON line; it exits 1 when a stage fails (the error on stderr) and 2 on a
bad job file or argument.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nux_runtime.components.base import RuntimeContext
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.stagecall import Outcome, StagePolicy, StageRunner, failure
from nux_runtime.walker import walk

__all__ = ["JOB_VERSION", "JobFile", "load_job", "main", "parse_set", "run_job"]

JOB_VERSION = "1"


class JobFile(BaseModel):
    """One exported batch job: a frozen spec, the stages to run, where its files are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_version: Literal["1"] = "1"
    name: str = Field(description="The job's name (also the Kubernetes Job's suffix).")
    kind: Literal["ingest"] = "ingest"
    workbook: str = Field(description="The notebook the spec was compiled from (for people).")
    spec: WorkbookSpec
    targets: tuple[str, ...] = Field(description="The stages to run (and what they need).")
    collections: tuple[str, ...] = Field(default=(), description="Collections the job writes.")
    data_root: str = Field(default="../data",
                           description="The data folder, relative to the job file.")
    base_dir: str = Field(default=".", description="The workbook's folder inside the data "
                          "folder: the spec's relative paths resolve there.")


def load_job(path: Path) -> JobFile:
    """Read a job file; a NuxError naming the file when it is not one."""
    try:
        return JobFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise NuxError(f"cannot read the job file {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise NuxError(f"{path} is not a NUX job file: {where}: {first['msg']}") from None


def parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ingest.url=http://q:6333"]`` -> ``{"ingest": {"url": "http://q:6333"}}``."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        stage, dot, param = target.partition(".")
        if not sep or not dot or not stage or not param:
            raise NuxError(f"cannot read --set {item!r}: write STAGE.PARAM=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        found.setdefault(stage, {})[param] = value
    return found


def _with_params(spec: WorkbookSpec, changes: Mapping[str, Mapping[str, Any]]) -> WorkbookSpec:
    unknown = sorted(set(changes) - set(spec.by_id))
    if unknown:
        raise NuxError(f"--set names no stage {', '.join(unknown)} "
                       f"(stages: {', '.join(spec.by_id)})")
    if not changes:
        return spec
    document = spec.model_dump(mode="json")
    for stage in document["stages"]:
        stage["params"] = {**stage["params"], **changes.get(stage["id"], {})}
    return WorkbookSpec.model_validate(document)


def run_job(job_path: str | Path, *, changes: Mapping[str, Mapping[str, Any]] | None = None,
            data_root: str | Path | None = None,
            env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run a job file's target stages; ``{stage: value}``, or a StageError for the first that
    failed."""
    path = Path(job_path).expanduser().resolve()
    job = load_job(path)
    spec = _with_params(job.spec, changes or {})
    root = Path(data_root).expanduser() if data_root is not None else path.parent / job.data_root
    base_dir = (root / job.base_dir).resolve()
    context = RuntimeContext(base_dir=base_dir) if env is None else RuntimeContext(
        base_dir=base_dir, env=dict(env))
    runners: dict[str, StageRunner] = {}
    policy = StagePolicy(spec.output)  # the served app's timeouts and retries, no validation

    async def call(stage: StageSpec, inputs: dict[str, Any]) -> Any:
        runner = runners.get(stage.id)
        if runner is None:
            runner = runners[stage.id] = StageRunner(stage, context=context)

        async def attempt(_: int) -> Outcome:
            return await asyncio.to_thread(runner.run, inputs)

        outcome = await policy.call(stage, attempt)
        if not outcome.get("ok"):
            raise failure(stage, outcome)
        return outcome.get("value")

    try:
        result = asyncio.run(walk(spec, {}, call, targets=job.targets, inline=True))
    finally:
        for runner in runners.values():
            runner.close()
    for stage in job.targets:
        outcome = result.outcomes.get(stage)
        if outcome is None or outcome.status != "ok":
            if outcome is not None and outcome.error is not None:
                raise outcome.error
            reason = outcome.reason if outcome is not None else "not run"
            raise StageError(stage, f"did not run: {reason}")
    return {stage: result.outcomes[stage].value for stage in job.targets}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nux_runtime.jobs",
        description="Run a batch job of an exported NUX workbook (an ingest).")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a job file (jobs/<job>.json)")
    run.add_argument("job", help="the job file")
    run.add_argument("--set", dest="changes", action="append", default=[],
                     metavar="STAGE.PARAM=VALUE",
                     help="change one param for this run (repeat), e.g. ingest.url=http://q:6333")
    run.add_argument("--data", dest="data_root", default=None,
                     help="the data folder (default: data/ beside jobs/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        changes = parse_set(args.changes)
        reports = run_job(args.job, changes=changes, data_root=args.data_root)
    except StageError as exc:
        print(f"job {args.job}: stage {exc.stage}: {exc.cause}", file=sys.stderr)
        return 1
    except NuxError as exc:
        print(f"job {args.job}: {exc}", file=sys.stderr)
        return 2
    for stage, value in reports.items():
        print(json.dumps({"stage": stage, "output": value}, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
