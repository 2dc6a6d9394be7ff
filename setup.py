"""Only for the optional mypyc build of the hot modules (``engine/compiled.py``).

``pyproject.toml`` holds the project's metadata. With ``CSIP_COMPILE=1`` (``make compile``, or
``CSIP_COMPILE=1 pip install --no-build-isolation .`` with mypy installed, as the container image
does) the modules of ``engine.compiled.MODULES`` are compiled to C extensions; without it this is
a plain install of the sources.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("CSIP_COMPILE") == "1":
    from mypyc.build import mypycify

    # By path, not ``import engine``: that would check the build this is about to replace.
    spec = importlib.util.spec_from_file_location("_csip_compiled", Path("engine/compiled.py"))
    assert spec is not None and spec.loader is not None
    compiled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compiled)
    compiled.write_stamp(Path.cwd())
    ext_modules = mypycify(
        [str(compiled.source(m, Path("."))) for m in compiled.MODULES], opt_level="3"
    )

setup(ext_modules=ext_modules, package_data={"engine": ["compiled.json"]})
