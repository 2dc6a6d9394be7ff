"""The mypyc build of the hot modules (engine/compiled.py): it builds, it runs compiled, it gives
what the sources give, and an extension older than its source refuses to start.

The build happens in a copy of the tree (this checkout keeps running its sources), and the
kernel's, the shards' and the embedded runtime's tests run again there, on the compiled modules:
the same assertions, including the scenario replays against their expected lines.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import compiled

REPO = Path(__file__).resolve().parents[2]
COPIED = ("engine", "topics", "csip", "gateway", "fleet", "tests", "benchmarks")
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.so", "compiled.json", ".runs", ".venv*", ".hypothesis", "build"
)
# Suites that run again on the compiled modules: the kernel (rules, properties, scenarios,
# memo), the worker's sharded kernel, and the embedded runtime through the registry.
SUITES = ("tests/kernel", "tests/kafka/test_shards.py", "tests/runtime")
SKIPPED = ("--ignore=tests/kernel/test_compiled.py",)  # not itself, again


def _compiler() -> str | None:
    """Why this machine cannot build C extensions, or None if it can."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'CC unset'})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    return None


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}


def _copy(to: Path) -> Path:
    to.mkdir()
    for name in COPIED:
        shutil.copytree(REPO / name, to / name, ignore=IGNORED)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, to / name)
    return to


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    missing = _compiler()
    if missing:
        pytest.skip(f"cannot build C extensions here: {missing}")
    root = _copy(tmp_path_factory.mktemp("compiled") / "tree")
    done = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace", "-j", "2"],
        cwd=root,
        env={**_env(root), "CSIP_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield root


def _python(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_hot_module_runs_compiled_from_the_build(built: Path) -> None:
    code = (
        "import importlib, json\n"
        "from engine import compiled\n"
        "for module in compiled.MODULES:\n"
        "    importlib.import_module(module)\n"
        "from engine.kernel.device import EMPTY, Phase, Track\n"
        "import sys\n"
        "refused = []\n"
        "for record, name in ((Track('A', 'P', Phase.SCHEDULED), 'mrid'), (EMPTY, 'programs')):\n"
        "    try:\n"
        "        setattr(record, name, 'changed')\n"
        "    except AttributeError:\n"
        "        refused.append(name)\n"
        "print(json.dumps({'kernel': compiled.kernel(), 'status': compiled.status(),\n"
        "  'files': [sys.modules[m].__file__ for m in compiled.MODULES], 'refused': refused}))"
    )
    done = _python(built, code)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["kernel"] == "compiled"
    assert seen["status"] == dict.fromkeys(compiled.MODULES, True)
    assert all(file.startswith(str(built)) for file in seen["files"])  # the copy's, not ours
    assert seen["refused"] == ["mrid", "programs"]  # Final: immutable at run time when compiled


def test_the_kernel_shards_and_runtime_tests_pass_on_the_compiled_modules(built: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SKIPPED, *SUITES],
        cwd=built,
        env=_env(built),
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary


def test_an_extension_older_than_its_source_refuses_to_start(built: Path) -> None:
    source = built / "engine" / "kernel" / "draw.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# edited after make compile\n")
        done = _python(built, "import engine")
        assert done.returncode != 0
        assert "StaleBuild" in done.stderr and "draw.py changed since `make compile`" in done.stderr
    finally:
        source.write_text(original)
    assert _python(built, "import engine").returncode == 0


# -- the check itself, on a tree of files (no compiler needed) ---------------------------------


def _fake_tree(root: Path) -> Path:
    for module in compiled.MODULES:
        path = compiled.source(module, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n")
    return root


def _fake_extension(root: Path, module: str) -> Path:
    path = compiled.source(module, root)
    extension = path.with_name(path.stem + importlib.machinery.EXTENSION_SUFFIXES[0])
    extension.write_bytes(b"\0")
    return extension


def test_sources_alone_pass_the_check(tmp_path: Path) -> None:
    compiled.check(_fake_tree(tmp_path))
    assert not compiled.built(tmp_path)


def test_an_extension_without_a_record_of_its_source_is_refused(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path)
    _fake_extension(root, "engine.kernel.engine")
    with pytest.raises(compiled.StaleBuild, match="no readable"):
        compiled.check(root)


def test_an_extension_is_accepted_while_its_source_is_the_one_recorded(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path)
    compiled.write_stamp(root)
    _fake_extension(root, "engine.kernel.engine")
    compiled.check(root)
    assert compiled.built(root)
    compiled.source("engine.kernel.device", root).write_text("# not compiled: may change\n")
    compiled.check(root)
    compiled.source("engine.kernel.engine", root).write_text("# changed\n")
    with pytest.raises(compiled.StaleBuild, match=r"engine\.py changed since `make compile`"):
        compiled.check(root)
