"""The data files of an export: ``data.json``, ``jobs/<job>.json`` and the README's data section.

``data.json`` is the machine-readable list of what the workbook reads (each stage's
collections, databases and files), the production path of each, the stack settings that
locate them and the secrets they need. A job file is what ``python -m nux_runtime.jobs run``
reads (:class:`nux_runtime.jobs.JobFile`).
"""

from __future__ import annotations

import json
from typing import Any

from nux_exporters.dataplan import DATA_DIR, DATA_MOUNT, JOBS_DIR, JOBS_MOUNT, JobPlan
from nux_exporters.plan import OPTIONAL_SECRETS, Plan, config_key
from nux_runtime.jobs import JobFile

__all__ = ["data_document", "data_json", "data_section", "job_json", "location_docs"]


def job_json(job: JobPlan) -> str:
    """``jobs/<job>.json``: the ingest workbook's frozen spec and where its documents are."""
    document = JobFile(name=job.name, workbook=job.notebook, spec=job.spec, targets=job.stages,
                       collections=(job.collection,), data_root=f"../{DATA_DIR}",
                       base_dir=job.base_dir).model_dump(mode="json")
    return json.dumps(document, sort_keys=True, indent=2) + "\n"


def _source(plan: Plan, kind: str, name: str) -> str:
    if kind == "qdrant-collection":
        source = plan.data.collections.get(name, "")
        if source.startswith("job:"):
            return f"ingest job {source[4:]} ({JOBS_DIR}/{source[4:]}.json)"
        return "already in the production Qdrant (external)"
    if kind == "sqlite-file":
        return f"shipped read-only: {DATA_DIR}/{name} (image: {DATA_MOUNT}/{name})"
    if kind == "database-url-secret":
        return f"Pulumi secret {config_key(name)} (environment variable {name})"
    if kind == "database-url":
        return "stack setting"
    return f"shipped: {DATA_DIR}/{name}"


def data_document(plan: Plan) -> dict[str, Any]:
    """What data.json holds."""
    settings_of = {(stage, param): loc.key for loc in plan.data.locations
                   for stage, param in loc.targets}
    reads = []
    for ref in plan.data.refs:
        entry = {**ref.to_dict(), "source": _source(plan, ref.kind, ref.name)}
        if (ref.stage, ref.param) in settings_of:
            entry["setting"] = settings_of[(ref.stage, ref.param)]
        reads.append(entry)
    return {
        "workbook": plan.spec.name,
        "spec_hash": plan.spec.hash,
        "reads": reads,
        "collections": dict(sorted(plan.data.collections.items())),
        "files": [f"{DATA_DIR}/{f.path}" for f in plan.data.files],
        "jobs": [{"name": job.name, "file": f"{JOBS_DIR}/{job.file}", "workbook": job.notebook,
                  "spec_hash": job.spec.hash, "collection": job.collection,
                  "stages": list(job.stages)} for job in plan.data.jobs],
        "settings": {loc.key: {"default": loc.default, "what": loc.what,
                               "params": [f"{s}.{p}" for s, p in loc.targets]}
                     for loc in plan.data.locations},
        "secrets": {env: {"config_key": config_key(env), "optional": env in OPTIONAL_SECRETS,
                          "stages": [s.id for s in plan.stages if env in s.secrets]}
                    for env in plan.secrets},
    }


def data_json(plan: Plan) -> str:
    return json.dumps(data_document(plan), sort_keys=True, indent=2) + "\n"


def location_docs(plan: Plan) -> dict[str, str]:
    """The meaning of each location setting, for the stack file and the README."""
    docs = {loc.key: loc.what + " (the notebook's value by default)"
            for loc in plan.data.locations}
    if plan.data.jobs:
        docs.update(jobCpu="CPU of an ingest job's pod", jobMemory="memory of an ingest job's pod")
    return docs


def data_section(plan: Plan) -> list[str]:
    """The README's "Where the data comes from" section."""
    if not plan.data.refs:
        return []
    out = ["## Where the data comes from", "",
           "Every collection, database and file a stage reads, and how production gets it "
           "(also in `data.json`).", "",
           "| stage | reads | name | production source | setting |", "|---|---|---|---|---|"]
    doc = data_document(plan)
    for entry in doc["reads"]:
        out.append(f"| {entry['stage']} | {entry['kind']} ({entry['access']}) | "
                   f"`{entry['name']}` | {entry['source']} | "
                   f"{'`' + entry['setting'] + '`' if 'setting' in entry else '-'} |")
    out.append("")
    for job in plan.data.jobs:
        out += [
            f"Ingest job `{job.name}` fills collection `{job.collection}` from "
            f"`{job.notebook}` (stages {', '.join(job.stages)}, spec {job.spec.hash[:12]}): "
            f"a Kubernetes Job in the runtime image, run against the production Qdrant before "
            f"the RayService is created, reading the documents the image holds in "
            f"`{DATA_MOUNT}` (`{DATA_DIR}/` here). `pulumi up` runs it again when the "
            "documents or the ingest workbook change (a new image tag). By hand:", "",
            "```sh",
            f"python -m nux_runtime.jobs run {JOBS_DIR}/{job.file}            # this machine: "
            f"the embedded store in {DATA_DIR}/",
            f"python -m nux_runtime.jobs run {JOBS_MOUNT}/{job.file} --set "
            f"{job.stages[0]}.url=http://qdrant:6333 --set {job.stages[0]}.api_key_env="
            "QDRANT_API_KEY",
            "```", ""]
    return out
