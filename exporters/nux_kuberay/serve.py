"""The Ray Serve application of a workbook: the ingress and one deployment per stage.

Each stage's deployment carries the stage's params as its ``user_config``, with the production
values the stack gives: a Qdrant stage points at the Qdrant server when there is one, and each
location setting (an endpoint, a collection) replaces the notebook's value at its param path.
The same functions build ``serveConfigV2`` here and ``serve_config.yaml`` in ``nux export``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from nux_kuberay.args import WorkbookServiceArgs
    from nux_kuberay.workbook import ExportedWorkbook

__all__ = [
    "APP_BUILDER",
    "QDRANT_KEY_ENV",
    "SPEC_MOUNT",
    "application",
    "dump_yaml",
    "put",
    "serve_config_v2",
    "stage_locations",
    "user_config",
    "with_user_config",
]

#: The nux_runtime application builder the Serve config names.
APP_BUILDER = "nux_runtime.serve.app:build_app"
#: Where the pods see the frozen spec (the spec ConfigMap, mounted at /etc/nux).
SPEC_MOUNT = "/etc/nux/spec.json"
#: The environment variable a Qdrant stage reads the server's API key from.
QDRANT_KEY_ENV = "QDRANT_API_KEY"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe dumping, multi-line strings as literal blocks (libyaml when it is installed)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(value: Any) -> str:
    """YAML as the exported files write it: block style, keys in the order given."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def put(params: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``params`` with ``path`` (``base_url`` or ``options.base_url``) set to ``value``."""
    head, _, rest = path.partition(".")
    out = dict(params)
    if rest:
        inner = out.get(head)
        out[head] = put(inner if isinstance(inner, Mapping) else {}, rest, value)
    else:
        out[head] = value
    return out


def user_config(params: Mapping[str, Any], *, qdrant_url: str | None = None,
                qdrant: bool = False, locations: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """A stage's ``user_config``: its pinned params, a Qdrant stage (``qdrant``) pointed at the
    server when there is one (its params otherwise name the playground's local store), and each
    location (param path -> value) in place of the notebook's value."""
    config = dict(params)
    if qdrant_url and qdrant:
        config.update(url=qdrant_url, api_key_env=QDRANT_KEY_ENV)
    for path, value in (locations or {}).items():
        config = put(config, path, value)
    return config


def with_user_config(deployment: Mapping[str, Any], config: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """A stage's deployment options with its ``user_config``, after ``ray_actor_options``."""
    out: dict[str, Any] = {}
    for key, value in deployment.items():
        out[key] = value
        if key == "ray_actor_options":
            out["user_config"] = dict(config)
    return out


def application(name: str, deployments: Iterable[Mapping[str, Any]], *, spec_path: str,
                base_dir: str | None = None) -> dict[str, Any]:
    """The Serve application; stages that read data resolve their paths in ``base_dir``."""
    args: dict[str, Any] = {"spec_path": spec_path}
    if base_dir is not None:
        args["base_dir"] = base_dir
    return {"name": name, "route_prefix": "/", "import_path": APP_BUILDER, "args": args,
            "deployments": [dict(d) for d in deployments]}


def stage_locations(stage_settings: Mapping[str, Mapping[str, str]],
                    values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """stage -> param path -> value, for the location settings ``values`` (config keys)."""
    return {stage: {path: values[key] for path, key in paths.items()}
            for stage, paths in stage_settings.items()}


def serve_config_v2(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> str:
    """``serveConfigV2`` of the RayService: the application under the stack's settings."""
    stages = {s["id"] for s in workbook.spec["stages"]}
    locations = stage_locations(workbook.stage_settings,
                                {**workbook.settings, **args.locations})
    qdrant = set(workbook.qdrant_stages)
    deployments = []
    for deployment in workbook.deployments:
        name = deployment["name"]
        if name in stages:
            deployment = with_user_config(deployment, user_config(
                workbook.params(name), qdrant_url=args.qdrant_server or None,
                qdrant=name in qdrant, locations=locations.get(name)))
        deployments.append(deployment)
    app = application(workbook.name, deployments, spec_path=SPEC_MOUNT,
                      base_dir=workbook.data_mount)
    return dump_yaml({"applications": [app]})
