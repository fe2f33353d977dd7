"""`pip install ./python` end to end: the wheel builds the C library with CMake (CPU-only here, for
speed), carries it inside the package, and the installed package finds it without SAGEATTN_LIBRARY."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("scikit_build_core", reason="scikit-build-core is not installed: the packaging test is skipped")

PYTHON_DIR = Path(__file__).resolve().parents[1]

SMOKE = """
import numpy as np, sageattn
q = np.random.default_rng(0).standard_normal((1, 2, 16, 64)).astype(np.float16)
o = sageattn.sageattn(q, q, q)
assert o.shape == q.shape and np.isfinite(o).all()
print(sageattn.library_path())
"""


def test_wheel_builds_installs_and_loads(tmp_path):
    env = dict(os.environ, SAGEATTN_ENABLE_CUDA="OFF")
    env.pop("SAGEATTN_LIBRARY", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-C", f"build-dir={tmp_path / 'build'}", "-w", str(tmp_path / "dist"), str(PYTHON_DIR)],
                   env=env, check=True)
    wheel, = (tmp_path / "dist").glob("sageattn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sageattn/lib/libsageattn.so" in names
    assert not [n for n in names if n.endswith(".a") or ".so." in n or n.endswith(".h")]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], env=env, check=True)
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", SMOKE], env=env, cwd=tmp_path, check=True, capture_output=True,
                         text=True)
    assert Path(run.stdout.strip()).is_relative_to(target)
