"""The runtime image's inputs: NUX's own wheels, built at export time, and the lock.

``wheels/`` holds ``nux-runtime`` (and any other NUX distribution the runtime's dependency
closure reaches) built from the installed distribution's source folder with the package's own
build backend, at a fixed ``SOURCE_DATE_EPOCH`` from a copy whose file modes are normalized, so
the same source gives byte-identical wheels. ``requirements.lock`` pins every other package of
the closure of ``nux-runtime[serve,<the extras the workbook's components need>]`` to the version
installed where the workbook was evaluated: production runs what was measured. A local version
label (``torch 2.13.0+cpu``) is dropped, so the image takes the build its index gives (a CUDA
torch on a GPU image). The Dockerfile installs exactly these, ``pip install --no-deps``.

Ray is checked here: the lock's Ray (the one installed here), the Ray ``nux-runtime`` pins and
``rayVersion`` of the RayService must be one version, or the export is refused.
"""

from __future__ import annotations

import email
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution, distributions
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from nux_exporters.plan import Plan, stage_extras
from nux_runtime.errors import ExportError, Problem

__all__ = [
    "LOCK_FILE",
    "NUX_DISTRIBUTIONS",
    "RUNTIME",
    "SOURCE_DATE_EPOCH",
    "WHEELS_DIR",
    "Image",
    "Pin",
    "Wheel",
    "build_wheel",
    "check_image",
    "image_files",
    "lock_closure",
    "lock_text",
    "pinned_ray",
    "ray_problems",
    "repack_wheel",
    "runtime_extras",
    "runtime_image",
    "wheel_requires",
]

RUNTIME = "nux-runtime"
NUX_DISTRIBUTIONS = frozenset({"nux", "nux-runtime", "nux-exporters", "nux-widgets"})
WHEELS_DIR = "wheels"
LOCK_FILE = "requirements.lock"
# 1980-01-01, the earliest time a zip entry can carry: wheels do not depend on file times.
SOURCE_DATE_EPOCH = "315532800"
SERVE_EXTRA = "serve"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".*")


@dataclass(frozen=True)
class Pin:
    """One locked package: its name as the distribution spells it and the locked version."""

    name: str
    version: str
    installed: str
    required_by: tuple[str, ...]

    @property
    def line(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Wheel:
    """A NUX distribution built for the image."""

    dist: str
    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# What pip adds to an installed distribution's dist-info; the rest is the wheel's own.
_INSTALL_RECORDS = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


def repack_wheel(dist: Distribution) -> Wheel:
    """The wheel of a distribution installed from a wheel (no source folder): its installed
    files, as its ``RECORD`` lists them, packed again with ``wheel pack`` at
    ``SOURCE_DATE_EPOCH`` (bytecode, scripts outside site-packages and pip's own records left
    out)."""
    name = str(dist.metadata["Name"] or "")
    with tempfile.TemporaryDirectory(prefix="nux-repack-") as tmp:
        unpacked = Path(tmp) / f"{name.replace('-', '_')}-{dist.version}"
        for entry in dist.files or []:
            parts = Path(str(entry)).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts or (
                    parts[0].endswith(".dist-info") and parts[-1] in _INSTALL_RECORDS):
                continue
            target = unpacked.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(str(entry.locate())).read_bytes())
            target.chmod(0o644)
        out = _ensure(Path(tmp) / "out")
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        done = subprocess.run([sys.executable, "-m", "wheel", "pack", "--dest-dir", str(out),
                               str(unpacked)], capture_output=True, text=True, env=env,
                              check=False)
        built = sorted(out.glob("*.whl")) if done.returncode == 0 else []
        if len(built) != 1:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ExportError(problems=[_problem(
                f"packing the installed {name} {dist.version} as a wheel failed: "
                f"{' '.join(tail)}",
                f"install {name} from its source folder (pip install <folder>) and export "
                "again")])
        return Wheel(dist=name, filename=built[0].name, data=built[0].read_bytes())


@dataclass(frozen=True)
class Image:
    """What the Dockerfile installs: the wheels, then the lock (``--no-deps``)."""

    extras: tuple[str, ...]
    pins: tuple[Pin, ...]
    wheels: tuple[Wheel, ...]
    runtime_ray: str | None

    def pin(self, name: str) -> Pin | None:
        key = canonicalize_name(name)
        return next((p for p in self.pins if canonicalize_name(p.name) == key), None)


def runtime_extras(plan: Plan) -> tuple[str, ...]:
    """``serve`` and every extra the workbook's components declare (and those of the ingest
    jobs' stages, which run in the same image), sorted."""
    jobs = {e for job in plan.data.jobs for s in job.spec.stages for e in stage_extras(s)}
    return tuple(sorted({SERVE_EXTRA} | jobs
                        | {e for s in plan.stages for e in stage_extras(s.stage)}))


def _problem(message: str, fix: str, field: str = "image") -> Problem:
    return Problem(code="export-image", field=field, message=message, fix=fix)


def _locked_version(installed: str) -> str:
    """The version the lock names: without a local label, which no package index serves."""
    try:
        return Version(installed).public
    except InvalidVersion:
        return installed


def _from_index(dist: Distribution) -> str | None:
    """Where a distribution came from when it was not a package index (PEP 610), else None."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        url = json.loads(text).get("url")
    except (json.JSONDecodeError, AttributeError):
        return "an unknown location"
    return str(url or "an unknown location")


def lock_closure(root: str, extras: Iterable[str], root_requires: Sequence[str] | None = None
                 ) -> tuple[tuple[Pin, ...], tuple[str, ...], list[Problem]]:
    """The installed dependency closure of ``root[extras]``: the pins of every package outside
    NUX, the NUX distributions reached (``root`` first) and the problems found (a requirement
    that is not installed, a package installed from somewhere no index serves).

    ``root_requires`` are the root's requirements as its shipped wheel states them (an
    editable install's own metadata is as old as its last ``pip install -e``)."""
    # One scan of what is installed (the first found on sys.path wins, as for imports).
    installed: dict[str, Distribution] = {}
    for found in distributions():
        # the dist-info folder's name, without parsing every METADATA file
        folder = getattr(found, "_normalized_name", None) or found.metadata["Name"] or ""
        installed.setdefault(str(canonicalize_name(folder)), found)
    dists: dict[str, Distribution] = {}
    done: dict[str, frozenset[str]] = {}
    required_by: dict[str, set[str]] = {}
    problems: list[Problem] = []
    queue: list[tuple[str, frozenset[str], str]] = [(root, frozenset(extras), "")]
    root_key = str(canonicalize_name(root))
    while queue:
        name, wanted, parent = queue.pop()
        key = str(canonicalize_name(name))
        if parent:
            required_by.setdefault(key, set()).add(parent)
        if key in done and wanted <= done[key]:
            continue
        dist = installed.get(key)
        if dist is None:
            problems.append(_problem(
                f"{parent or 'the export'} requires {name}, which is not installed here",
                f"install it (pip install '{root}[{','.join(sorted(extras))}]') and export "
                "again, so the lock pins the version the workbook runs with"))
            done[key] = wanted
            continue
        dists[key] = dist
        done[key] = done.get(key, frozenset()) | wanted
        own = dist.metadata["Name"] or name
        requires = root_requires if root_requires is not None and key == root_key else None
        for text in (dist.requires or []) if requires is None else requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": e}) for e in ("", *sorted(wanted))):
                continue
            queue.append((req.name, frozenset(req.extras), own))
    nux = [root, *sorted(dists[k].metadata["Name"] for k in dists
                         if k in NUX_DISTRIBUTIONS and k != canonicalize_name(root))]
    pins = []
    for key, dist in sorted(dists.items()):
        if key in NUX_DISTRIBUTIONS:
            continue
        name = str(dist.metadata["Name"] or key)
        source = _from_index(dist)
        if source is not None:
            problems.append(_problem(
                f"{name} {dist.version} was installed from {source}, not a package index: "
                "the image cannot install that version by name",
                f"install {name} from a package index (pip install '{name}=={dist.version}') "
                "and export again"))
        pins.append(Pin(name=name, version=_locked_version(dist.version),
                        installed=dist.version,
                        required_by=tuple(sorted(required_by.get(key, ())))))
    return tuple(pins), tuple(nux), problems


def _source_dir(dist: Distribution) -> Path | None:
    """The source folder an editable or local-folder install was made from."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    url = urllib.parse.urlparse(str(info.get("url", "")))
    if url.scheme != "file" or "dir_info" not in info:
        return None
    path = Path(urllib.request.url2pathname(url.path))
    markers = ("pyproject.toml", "setup.cfg", "setup.py")
    return path if any((path / m).is_file() for m in markers) else None


def _version(name: str) -> str:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return "-"


def _copy_normalized(src: Path, dest: Path) -> str:
    """Copy a source tree without build output and caches, files 0644 and folders 0755 (a
    checkout's umask does not reach the wheel); return the digest of what was copied."""
    shutil.copytree(src, dest, ignore=_IGNORED)
    digest = hashlib.sha256(f"{sys.version}\n{_version('setuptools')}\n".encode())
    for path in sorted(dest.rglob("*")):
        rel = path.relative_to(dest).as_posix()
        if path.is_dir():
            path.chmod(0o755)
            digest.update(f"d {rel}\n".encode())
        else:
            path.chmod(0o644)
            digest.update(f"f {rel}\n".encode() + path.read_bytes())
    dest.chmod(0o755)
    return digest.hexdigest()


_BUILT: dict[str, tuple[str, bytes]] = {}


def _cache_dir(digest: str) -> Path:
    """Where a wheel built from the source tree with this digest is kept between processes."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "nux" / "wheels" / digest


def _cached(digest: str) -> tuple[str, bytes] | None:
    try:
        found = sorted(_cache_dir(digest).glob("*.whl"))
        return (found[0].name, found[0].read_bytes()) if len(found) == 1 else None
    except OSError:
        return None


def _build(name: str, source: Path, copy: Path, out: Path, digest: str) -> tuple[str, bytes]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(out), str(copy)],
        capture_output=True, text=True, env=env, check=False)
    built = sorted(out.glob("*.whl")) if done.returncode == 0 else []
    if len(built) != 1:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ExportError(problems=[_problem(
            f"building the {name} wheel from {source} failed: {' '.join(tail)}",
            f"check that `pip wheel --no-deps --no-build-isolation {source}` works "
            "(setuptools and wheel installed)")])
    wheel = (built[0].name, built[0].read_bytes())
    try:  # keep it for the next process: written whole, then moved into place
        target = _cache_dir(digest)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_ensure(target.parent)))
        (staging / wheel[0]).write_bytes(wheel[1])
        staging.rename(target)
    except OSError:
        shutil.rmtree(locals().get("staging", out), ignore_errors=True)
    return wheel


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_wheel(name: str) -> Wheel:
    """Build the wheel of the installed NUX distribution ``name`` from its source folder
    (one installed from a wheel is packed again from its files: :func:`repack_wheel`).

    The build runs the package's own backend (``pip wheel --no-deps --no-build-isolation``)
    on a normalized copy at ``SOURCE_DATE_EPOCH``. A build is kept by the digest of the source
    it was made from (every file's path and bytes, the Python and setuptools versions), in the
    process and under ``~/.cache/nux/wheels``: the same source gives the same wheel.
    """
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        raise ExportError(problems=[_problem(
            f"{name} is not installed, so its wheel cannot travel with the export",
            f"install {name} and export again")]) from None
    source = _source_dir(dist)
    if source is None:
        return repack_wheel(dist)
    with tempfile.TemporaryDirectory(prefix="nux-wheel-") as tmp:
        copy = Path(tmp) / "src"
        digest = _copy_normalized(source, copy)
        if digest not in _BUILT:
            _BUILT[digest] = _cached(digest) or _build(name, source, copy, Path(tmp) / "out",
                                                        digest)
    filename, data = _BUILT[digest]
    return Wheel(dist=dist.metadata["Name"] or name, filename=filename, data=data)


def wheel_requires(wheel: Wheel) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as archive:
        name = next(n for n in archive.namelist()
                    if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = email.message_from_bytes(archive.read(name))
    return [str(r) for r in message.get_all("Requires-Dist") or []]


def pinned_ray(requires: Iterable[str]) -> str | None:
    """The Ray version a list of requirements pins (``ray[serve]==X; extra == "serve"``)."""
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "ray":
            pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
            if pinned:
                return pinned[0]
    return None


def runtime_image(plan: Plan) -> tuple[Image, list[Problem]]:
    """The image's wheels and lock for ``plan``, and every problem with them (Ray included)."""
    extras = runtime_extras(plan)
    try:
        root = build_wheel(RUNTIME)
    except ExportError as exc:
        return Image(extras=extras, pins=(), wheels=(), runtime_ray=None), list(exc.problems)
    requires = wheel_requires(root)
    pins, nux, problems = lock_closure(RUNTIME, extras, requires)
    others = tuple(build_wheel(name) for name in nux[1:]) if not problems else ()
    image = Image(extras=extras, pins=pins, wheels=(root, *others),
                  runtime_ray=pinned_ray(requires))
    return image, problems + ray_problems(plan, image)


def ray_problems(plan: Plan, image: Image) -> list[Problem]:
    """The image's Ray (the lock's), the runtime's pinned Ray and ``rayVersion`` must agree."""
    ray = image.pin("ray")
    found = []
    if ray is None:
        found.append(_problem("the lock has no Ray: the image would not run Ray Serve",
                              f"install {RUNTIME}[{SERVE_EXTRA}] and export again", "rayVersion"))
    elif ray.version != plan.ray_version:
        found.append(_problem(
            f"the image would install Ray {ray.version} (installed here) but the RayService's "
            f"rayVersion is {plan.ray_version}",
            f"install the Ray {RUNTIME} pins (pip install 'ray[serve]=={plan.ray_version}') "
            "and export again", "rayVersion"))
    if image.runtime_ray is not None and image.runtime_ray != plan.ray_version:
        found.append(_problem(
            f"{RUNTIME} pins Ray {image.runtime_ray} but the RayService's rayVersion is "
            f"{plan.ray_version}", f"reinstall {RUNTIME} and export again", "rayVersion"))
    return found


def lock_text(plan: Plan, image: Image) -> str:
    """requirements.lock: one ``name==version`` a line, sorted, with a header saying what."""
    where = f"Python {sys.version_info.major}.{sys.version_info.minor} on " \
            f"{sys.platform} {platform.machine()}"
    lines = [
        f"# Every package the runtime image of workbook {plan.spec.name!r} installs besides "
        "NUX's own wheels",
        f"# (wheels/): the dependency closure of {RUNTIME}[{','.join(image.extras)}], each "
        "pinned to the version",
        f"# installed where the workbook was evaluated ({where}).",
        "# Install with: pip install --no-deps -r requirements.lock wheels/*.whl",
    ]
    relabeled = [p for p in image.pins if p.installed != p.version]
    if relabeled:
        lines.append("# Evaluated with local builds (the image takes its index's build of the "
                     "same version): "
                     + ", ".join(f"{p.name} {p.installed}" for p in relabeled) + ".")
    lines += [p.line for p in image.pins]
    return "\n".join(lines) + "\n"


def image_files(plan: Plan, image: Image) -> dict[str, str | bytes]:
    """``requirements.lock`` and ``wheels/<file>`` as export files."""
    files: dict[str, str | bytes] = {LOCK_FILE: lock_text(plan, image)}
    for wheel in image.wheels:
        files[f"{WHEELS_DIR}/{wheel.filename}"] = wheel.data
    return files


def check_image(plan: Plan) -> Image:
    """:func:`runtime_image`, raising one ExportError for all its problems."""
    image, problems = runtime_image(plan)
    if problems:
        raise ExportError(problems=problems)
    return image
