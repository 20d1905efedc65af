"""Checks on the Kubernetes objects before anything is written.

Custom resources are checked against the KubeRay v1.7.0 CRD's ``openAPIV3Schema`` (shipped in
``nux_exporters/schemas/``, with the schema's defaults applied first, as the API server does);
core objects with kubernetes-validate. CEL rules (``x-kubernetes-validations``) are the API
server's to run and are not evaluated here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from jsonschema import Draft7Validator

from nux_runtime.errors import Problem

__all__ = ["apply_defaults", "crd_schema", "validate_objects"]

CRDS = {("ray.io/v1", "RayService"): "ray.io_rayservices.yaml"}
KUBERNETES_VERSION = "1.33.0"


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a shipped CRD for ``apiVersion``/``kind``."""
    text = files("nux_exporters").joinpath("schemas", CRDS[(api_version, kind)]).read_text(
        encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(text, Loader=loader)
    wanted = api_version.split("/")[1]
    for entry in crd["spec"]["versions"]:
        if entry["name"] == wanted:
            return entry["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]
    raise KeyError(f"{kind} {api_version} is not in {CRDS[(api_version, kind)]}")


@cache
def _validator(api_version: str, kind: str) -> Draft7Validator:
    return Draft7Validator(crd_schema(api_version, kind))


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of ``value`` with every missing property that has a schema default filled in."""
    value = copy.deepcopy(value)
    _fill(schema, value)
    return value


def _fill(schema: Mapping[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _fill(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name, item in value.items():
                if name not in schema.get("properties", {}):
                    _fill(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _fill(schema["items"], item)


def _path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def validate_objects(objects: list[dict[str, Any]]) -> list[Problem]:
    """Every problem in the objects: CRD schema for custom resources, Kubernetes for the rest."""
    import kubernetes_validate

    problems: list[Problem] = []
    for obj in objects:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        name = obj.get("metadata", {}).get("name", "?")
        if (api_version, kind) in CRDS:
            schema = crd_schema(api_version, kind)
            filled = apply_defaults(schema, obj)
            for error in sorted(_validator(api_version, kind).iter_errors(filled),
                                key=lambda e: list(map(str, e.absolute_path))):
                problems.append(Problem(
                    code="export-kubernetes", field=_path(error.absolute_path),
                    message=f"{kind} {name}: {error.message} (KubeRay v1.7.0 CRD)",
                    fix="fix the cluster setting or stage that sets this field"))
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(Problem(
                code="export-kubernetes", field=_path(exc.absolute_path),
                message=f"{kind} {name}: {exc.message}",
                fix="fix the cluster setting that sets this field"))
        except (kubernetes_validate.InvalidSchemaError,
                kubernetes_validate.SchemaNotFoundError) as exc:
            problems.append(Problem(code="export-kubernetes", field="apiVersion",
                                    message=f"{kind} {name}: {exc}",
                                    fix="use an apiVersion Kubernetes knows"))
    return problems
