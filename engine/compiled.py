"""The hot modules, optionally compiled with mypyc: the same source, about 1.8x faster folds.

Every command of ``csip.commands`` goes through the registry, the program engine and the shard
engines of each worker, and all of it is Python. ``make compile`` (``CSIP_COMPILE=1 python
setup.py build_ext --inplace``) compiles ``MODULES`` with mypyc into C extensions beside their
sources; ``pip install .`` with ``CSIP_COMPILE=1`` does the same for an installed copy (the
container image does). Nothing else changes: the extension of ``engine/kernel/engine.py`` is
that file, type-checked and compiled, and without a build every module runs as plain Python.

An extension beside its source shadows the source, so a source edited after ``make compile``
would not run. The build therefore writes ``STAMP`` (the SHA-256 of each source it compiled),
and ``check()``, called when ``engine`` is first imported, refuses to start if an extension's
source changed since: run ``make compile`` again, or ``make uncompile`` to run the sources.

This module itself is never compiled: ``setup.py`` reads ``MODULES`` from it by path.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
from pathlib import Path

# What a fold runs for every command (command decoding, kernel, registry, shard routing: the
# partitioning function of ``topics`` too) and the encoding of its outputs' records, in
# dependency order.
MODULES: tuple[str, ...] = (
    "topics.partition",
    "engine.kernel.identity",
    "engine.kernel.draw",
    "engine.kernel.modes",
    "engine.kernel.model",
    "engine.kernel.outputs",
    "engine.kernel.inputs",
    "engine.kernel.catalog",
    "engine.kernel.device",
    "engine.kernel.engine",
    "engine.kernel.codec",
    "engine.state.commands",
    "engine.state.registry",
    "engine.runtime.kafka.shards",
    "engine.runtime.kafka.fold",
    "engine.runtime.kafka.encode",
)

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the ``engine`` package
STAMP = Path(__file__).resolve().parent / "compiled.json"


class StaleBuild(ImportError):
    """A compiled module's source changed after it was compiled."""


def source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def extensions(module: str, root: Path = ROOT) -> list[Path]:
    """The compiled extension files of ``module`` beside its source (none when not built)."""
    path = source(module, root)
    return [
        path.with_name(path.stem + suffix)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if path.with_name(path.stem + suffix).exists()
    ]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_stamp(root: Path = ROOT) -> Path:
    """Record the sources about to be compiled (``setup.py`` calls this before building)."""
    stamp = root / "engine" / STAMP.name
    sources = {module: digest(source(module, root)) for module in MODULES}
    stamp.write_text(json.dumps({"sources": sources}, indent=1, sort_keys=True) + "\n")
    return stamp


def built(root: Path = ROOT) -> bool:
    """Whether this tree has a build (``make compile``): what its processes will run."""
    return any(extensions(module, root) for module in MODULES)


def check(root: Path = ROOT) -> None:
    """Raise ``StaleBuild`` if an extension here was compiled from another source than the one
    beside it (or with no record of its source)."""
    built = [module for module in MODULES if extensions(module, root)]
    if not built:
        return
    stamp = root / "engine" / STAMP.name
    try:
        recorded: dict[str, str] = json.loads(stamp.read_text())["sources"]
    except (OSError, ValueError, KeyError) as exc:
        raise StaleBuild(
            f"compiled modules {', '.join(built)} but no readable {stamp} ({exc}): "
            "run `make compile` again, or `make uncompile` to run the sources"
        ) from None
    changed = [m for m in built if recorded.get(m) != digest(source(m, root))]
    if changed:
        raise StaleBuild(
            f"{', '.join(str(source(m, root)) for m in changed)} changed since `make compile`: "
            "run `make compile` again, or `make uncompile` to run the sources"
        )


def status() -> dict[str, bool]:
    """For each of ``MODULES`` already imported: whether it runs compiled."""
    out: dict[str, bool] = {}
    for module in MODULES:
        loaded = sys.modules.get(module)
        if loaded is not None:
            out[module] = Path(getattr(loaded, "__file__", "") or "").suffix in (".so", ".pyd")
    return out


def kernel() -> str:
    """``"compiled"``, ``"interpreted"`` or ``"partly compiled"``: what the imported hot
    modules run as (for logs, ``/status`` and metrics)."""
    states = set(status().values())
    if states == {True}:
        return "compiled"
    if True in states:
        return "partly compiled"
    return "interpreted"
