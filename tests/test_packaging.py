"""A non-editable install ships conf/ inside the wheel and finds it there."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds a wheel with pip
def test_wheel_ships_the_configs_and_the_installed_app_uses_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("dlexp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("dlexp/conf/")}
    source = {f"dlexp/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert source and source <= shipped

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)  # a wheel is a zip laid out like site-packages
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run(
        [sys.executable, "-c", "import dlexp.config.files as c; print(c.CONFIG_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.stdout.strip() == str(target / "dlexp" / "conf")
    job = subprocess.run(
        [sys.executable, "-m", "dlexp", "--cfg", "job", "model=softmax"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert job.returncode == 0, job.stderr
    assert "name: softmax" in job.stdout
