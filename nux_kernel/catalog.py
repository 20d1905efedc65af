"""The vetted catalog: what an organization has approved, and the policy checks built on it.

``catalog.yaml`` maps a component id to its kind, implementation (an entry point in
``nux.components``), parameter schema with the allowed ranges, output schema, default resources,
cost model and vetting record. NUX ships a default catalog beside this module;
``NUX_CATALOG=/path/catalog.yaml`` replaces it for an organization.
"""

from __future__ import annotations

import difflib
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from jsonschema import exceptions as jsonschema_exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nux_kernel.limits import TextLimitError, load_yaml
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import CatalogRef, ComponentRef, CostModel, Resources, Scale, canonical_json

__all__ = ["Catalog", "CatalogEntry", "Vetting", "default_catalog_path", "load_catalog"]

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
MAX_CATALOG_CHARS = 4 * 1024 * 1024


class Vetting(BaseModel):
    """Who approved a component, when, for which data, with which network egress."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str
    date: str
    data_classes: list[str] = Field(default_factory=list)
    egress: str = "none"
    notes: str = ""


class CatalogEntry(BaseModel):
    """One vetted component."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Literal["model", "data", "code"]
    version: str
    implementation: str
    description: str
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    free_params: bool = Field(default=False, description="Accept params the schema does not list.")
    output: dict[str, Any] = Field(default_factory=dict)
    streaming: bool = False
    resources: Resources = Field(default_factory=Resources)
    scale: Scale = Field(default_factory=Scale)
    cost: CostModel = Field(default_factory=CostModel)
    vetting: Vetting
    provides: list[str] = Field(
        default_factory=list,
        description="Template variables the component fills itself (a query engine's {context}).")

    @cached_property
    def hash(self) -> str:
        import hashlib

        # an entry without `provides` hashes as it did before the field existed
        data = self.model_dump(mode="json", exclude=None if self.provides else {"provides"})
        return hashlib.sha256(canonical_json(data).encode()).hexdigest()

    def ref(self) -> ComponentRef:
        return ComponentRef(
            id=self.id, version=self.version, implementation=self.implementation, hash=self.hash
        )

    @cached_property
    def params_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": self.params,
            "required": self.required,
            "additionalProperties": self.free_params,
        }

    @cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.params_schema)

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.params.items() if "default" in v}


class Catalog(BaseModel):
    """The whole catalog: components and the import allow-list for code cells."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    allow_imports: list[str] = Field(default_factory=list)
    withhold_builtins: list[str] = Field(
        default_factory=list,
        description="Builtins code cells may not call (NUX always withholds exec, eval, ...).")
    components: dict[str, CatalogEntry]
    path: str = ""

    @cached_property
    def hash(self) -> str:
        import hashlib

        body = self.model_dump(mode="json", exclude={"path"})
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    def ref(self) -> CatalogRef:
        return CatalogRef(name=self.name, version=self.version, hash=self.hash)

    def get(self, component_id: str) -> CatalogEntry | None:
        return self.components.get(component_id)

    def suggest(self, component_id: str, kind: str | None = None) -> list[str]:
        ids = [c for c, e in self.components.items() if kind is None or e.kind == kind]
        return difflib.get_close_matches(component_id, ids, n=3, cutoff=0.4)

    def import_allowed(self, module: str) -> bool:
        top = module.split(".")[0]
        return any(module == a or top == a or module.startswith(a + ".")
                   for a in self.allow_imports)


def default_catalog_path() -> Path:
    env = os.environ.get("NUX_CATALOG")
    return Path(env).expanduser() if env else DEFAULT_CATALOG


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Load and check a catalog (``NUX_CATALOG`` or the shipped default when ``path`` is None)."""
    p = Path(path) if path is not None else default_catalog_path()
    try:
        stat = p.stat()
    except OSError:
        raise NuxError(
            problems=[
                Problem(
                    code="catalog-missing",
                    message=f"catalog file {p} does not exist",
                    fix="point NUX_CATALOG at your organization's catalog.yaml, or unset it",
                )
            ]
        ) from None
    return _load(str(p.resolve()), stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: str, _mtime: int) -> Catalog:
    try:
        data = Path(path).read_bytes()
        if len(data) > MAX_CATALOG_CHARS:
            raise TextLimitError(f"the catalog is larger than {MAX_CATALOG_CHARS // 1024} KiB")
        raw = load_yaml(data.decode("utf-8"), max_chars=MAX_CATALOG_CHARS, max_nodes=200_000)
    except (TextLimitError, UnicodeDecodeError) as exc:
        reason = exc.message if isinstance(exc, TextLimitError) else "it is not UTF-8 text"
        raise NuxError(problems=[Problem(code="catalog-yaml", message=f"{path}: {reason}",
                                         fix="point at a catalog.yaml written as plain YAML")]
                       ) from None
    except yaml.YAMLError as exc:
        raise NuxError(
            problems=[Problem(code="catalog-yaml", message=f"{path}: {exc}", fix="fix the YAML")]
        ) from None
    if not isinstance(raw, dict):
        raise NuxError(f"catalog {path} must be a mapping with `name`, `version`, `components`")
    components = raw.get("components") or {}
    if not isinstance(components, dict) or not all(
            isinstance(body, dict | None) for body in components.values()):
        raise NuxError(problems=[Problem(
            code="catalog-entry", message=f"{path}: `components` must map ids to entries",
            fix="write `components: {<id>: {kind: ..., version: ..., ...}}`")])
    try:
        entries = {
            cid: CatalogEntry.model_validate({"id": cid, **(body or {})})
            for cid, body in components.items()
        }
        catalog = Catalog.model_validate({**raw, "components": entries, "path": path})
    except ValidationError as exc:
        problems = [
            Problem(
                code="catalog-entry",
                message=f"{path}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}",
                fix="fix the catalog entry",
            )
            for err in exc.errors()
        ]
        raise NuxError(problems=problems) from None
    for entry in catalog.components.values():
        try:
            Draft202012Validator.check_schema(entry.params_schema)
        except jsonschema_exceptions.SchemaError as exc:
            raise NuxError(f"catalog {path}: params of {entry.id!r}: {exc.message}") from None
    return catalog
