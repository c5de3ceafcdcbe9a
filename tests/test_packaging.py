"""The wheel installs passes/ and backends/ as prunec.passes and prunec.backends."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_maps_top_level_folders_into_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("prunec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "prunec/passes/__init__.py" in names
    assert "prunec/backends/__init__.py" in names
    assert "prunec/backends/eyeriss/eyeriss_v1.yaml" in names
    assert any(n.endswith("entry_points.txt") for n in names)
