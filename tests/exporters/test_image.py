"""The runtime image builds from the exported folder: NUX's wheels, the lock and the Ray check.
The folder served from a fresh virtualenv holding only what the image installs is
``test_rehearsal.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from importlib.metadata import Distribution, distribution, entry_points, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

import nux_exporters.plan as plan_module
from nux_exporters import ExportError, export, make_plan
from nux_exporters.image import (
    LOCK_FILE,
    SOURCE_DATE_EPOCH,
    Image,
    Pin,
    _build,
    _copy_normalized,
    lock_closure,
    ray_problems,
    repack_wheel,
    runtime_extras,
)
from tests.exporters.workbooks import REPO, faq, template

LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _lock(folder: Path) -> dict[str, str]:
    found = {}
    for line in (folder / LOCK_FILE).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            match = LOCKED.match(line)
            assert match, f"not a pin: {line!r}"
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


@pytest.fixture(scope="module")
def extract_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extract-json (the local gemma model and code stages, no data), exported once."""
    return export(template("extract-json")(),
                  tmp_path_factory.mktemp("image") / "extract-json").out_dir


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError`` (optional packages)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt)
                      if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def _runtime_imports(components: set[str]) -> set[str]:
    """Top-level modules outside nux_runtime that the runtime code serving these components
    imports (anywhere in a module, lazily too, unless guarded as optional): every nux_runtime
    module outside ``components``, the workbook's component modules, and
    the nux_runtime modules those import, transitively. Other components' implementations
    (the semantic cache's embedder, off by default) are not followed."""
    root = REPO / "runtime"
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
               for p in (root / "nux_runtime").rglob("*.py")}
    implementations = {ep.value.split(":")[0] for ep in entry_points(group="nux.components")}
    todo = [m for m in modules if not m.startswith("nux_runtime.components.")]
    todo += sorted(components)
    seen: set[str] = set()
    external: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in modules or (
                name in implementations and name not in components):
            continue
        seen.add(name)
        path = root / Path(*name.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(source.read_text(encoding="utf-8"))
        optional = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for full in names:
                if full.startswith("nux_runtime"):
                    todo.append(full)
                elif full.split(".")[0] not in sys.stdlib_module_names and \
                        node.lineno not in optional:
                    external.add(full)
    return external


def _owners(module: str, owners: Mapping[str, list[str]]) -> set[str]:
    """The distribution that installed ``module`` (a namespace package's top-level name has
    several: the one whose files hold the module)."""
    found = owners.get(module.split(".")[0], [module.split(".")[0]])
    if len(found) == 1:
        return set(found)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return set()  # a name imported from a module, not a module
    origin = Path(spec.origin).resolve()
    return {name for name in found
            if any(Path(str(f.locate())).resolve() == origin
                   for f in distribution(name).files or [])}


def test_lock_pins_every_package_the_runtime_imports(extract_export: Path) -> None:
    lock = _lock(extract_export)
    plan = make_plan(template("extract-json")())
    assert runtime_extras(plan) == ("llm", "serve")
    components = {s.stage.component.implementation for s in plan.stages}
    modules = {ep.value.split(":")[0] for ep in entry_points(group="nux.components")
               if ep.name in components}
    owners = packages_distributions()
    imported = {d.lower().replace("_", "-") for m in _runtime_imports(modules)
                for d in _owners(m, owners)}
    assert {"ray", "llama-cpp-python", "fastapi", "pydantic"} <= imported
    missing = sorted(imported - set(lock))
    assert not missing, f"imported by the runtime but not locked: {missing}"
    for name, version in lock.items():
        installed = distribution(name).version
        assert version == Version(installed).public, (name, version, installed)
    assert not {"nux-runtime", "nux", "nux-exporters", "nux-widgets"} & set(lock), \
        "NUX's own distributions travel as wheels, not pins"


def test_lock_pins_the_openai_sdk_an_openai_stage_imports() -> None:
    from nux_kernel import Workbook

    wb = Workbook("qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.openai", inputs=["question"],
             params={"base_url": "http://vllm:8000", "model": "m", "api_key_env": "VLLM_KEY"})
    extras = runtime_extras(make_plan(wb.compile()))
    assert extras == ("openai", "serve")
    pins, _, problems = lock_closure("nux-runtime", extras)
    assert not problems
    locked = {p.name.lower().replace("_", "-") for p in pins}
    owners = packages_distributions()
    imported = {d.lower().replace("_", "-")
                for m in _runtime_imports({"nux_runtime.components.llm_openai"})
                for d in _owners(m, owners)}
    assert "openai" in imported and "openai" in locked
    assert not imported - locked, f"imported by the runtime but not locked: {imported - locked}"


def test_lock_keeps_torch_free_of_its_local_build_label() -> None:
    """torch is installed here as a CPU build (``2.13.0+cpu``); the lock names the version
    alone, so a GPU image's index gives its CUDA build."""
    pins, nux, problems = lock_closure("nux-runtime", ("embed", "serve"))
    assert not problems and nux == ("nux-runtime",)
    torch = next(p for p in pins if p.name == "torch")
    assert torch.line == f"torch=={Version(distribution('torch').version).public}"
    assert "+" not in torch.line
    assert "nux-runtime" in {n for p in pins for n in p.required_by} or torch.required_by


def test_wheel_is_the_runtime_source_built_reproducibly(extract_export: Path,
                                                        tmp_path: Path) -> None:
    (wheel,) = sorted((extract_export / "wheels").glob("*.whl"))
    assert wheel.name == "nux_runtime-0.1.0-py3-none-any.whl"
    source = REPO / "runtime"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("nux_runtime-0.1.0.dist-info/METADATA").decode()
        assert "Name: nux-runtime" in metadata
        for path in sorted(source.joinpath("nux_runtime").rglob("*.py")):
            rel = path.relative_to(source).as_posix()
            assert rel in names, rel
            assert archive.read(rel) == path.read_bytes(), f"{rel} differs from the source"
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "nux_runtime-0.1.0.dist-info/entry_points.txt" in names
    # Two builds from two copies of the source give the same bytes.
    built = []
    for n in ("a", "b"):
        digest = _copy_normalized(source, tmp_path / n / "src")
        built.append(_build("nux-runtime", source, tmp_path / n / "src", tmp_path / n / "out",
                            digest + n))
    assert built[0] == built[1] == (wheel.name, wheel.read_bytes())
    assert SOURCE_DATE_EPOCH == "315532800"


def test_runtime_installed_from_a_wheel_is_packed_again(extract_export: Path,
                                                       tmp_path: Path) -> None:
    """A nux-runtime installed from a wheel (no source folder) travels as its installed files,
    packed again: the same members, byte for byte, as the wheel it was installed from."""
    (wheel,) = sorted((extract_export / "wheels").glob("*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)], check=True)
    installed = Distribution.at(target / "nux_runtime-0.1.0.dist-info")
    packed = repack_wheel(installed)
    assert packed.filename == wheel.name
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(io.BytesIO(packed.data)) as b:
        record = "nux_runtime-0.1.0.dist-info/RECORD"
        assert sorted(a.namelist()) == sorted(b.namelist())
        for member in a.namelist():
            if member != record:
                assert a.read(member) == b.read(member), member
    assert repack_wheel(installed).data == packed.data


def test_dockerfile_installs_the_wheels_and_the_lock_only(extract_export: Path) -> None:
    docker = (extract_export / "Dockerfile").read_text(encoding="utf-8")
    ray = _lock(extract_export)["ray"]
    assert f"FROM rayproject/ray:{ray}-py{sys.version_info.major}{sys.version_info.minor}\n" \
        in docker
    assert re.findall(r"(?m)^COPY (\S+) ", docker) == [LOCK_FILE, "wheels/"]
    installs = re.findall(r"(?ms)^RUN pip install (.*?)(?:&&|\n(?!    ))", docker)
    assert installs == ["--no-cache-dir --no-deps -r /tmp/nux/requirements.lock \\\n"
                        "    /tmp/nux/wheels/nux_runtime-0.1.0-py3-none-any.whl \\\n    "]
    assert "build-essential cmake" in docker  # llama-cpp-python compiles llama.cpp
    services = [d for d in yaml.safe_load_all((extract_export / "kubernetes.yaml").read_text())
                if d and d.get("kind") == "RayService"]
    assert services[0]["spec"]["rayClusterConfig"]["rayVersion"] == ray
    config = yaml.safe_load((extract_export / "serve_config.yaml").read_text())
    for app in config["applications"]:
        for dep in app["deployments"]:
            assert "runtime_env" not in dep.get("ray_actor_options", {}), dep["name"]


def test_ray_that_does_not_match_is_refused(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    plan = make_plan(faq().compile())
    image = Image(extras=("serve",), pins=(Pin("ray", "2.59.1", "2.59.1", ("nux-runtime",)),),
                  wheels=(), runtime_ray=plan.ray_version)
    (problem,) = ray_problems(plan, image)
    assert problem.field == "rayVersion" and "Ray 2.59.1" in problem.message
    # Through export: the RayService would name another Ray than the image installs.
    monkeypatch.setattr(plan_module, "ray_version", lambda: "2.59.1")
    with pytest.raises(ExportError) as caught:
        export(faq().compile(), tmp_path / "out")
    assert {p.field for p in caught.value.problems} == {"rayVersion"}
    assert "rayVersion is 2.59.1" in str(caught.value)
    assert not (tmp_path / "out").exists()
