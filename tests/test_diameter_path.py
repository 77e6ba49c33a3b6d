"""benchmark/diameter_path.py at a tiny size: it serves every CCR and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmark" / "diameter_path.py"


def test_runs_and_prints_the_ratio() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sessions", "20", "--users", "3",
                           "--batch", "4"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^[\d.]+ us per CCR \(I, U, U, T\) \(80 timed, 4 per read\)$", out,
                     re.M), out
    assert re.search(r"^[\d.]+ us per CCR-U \(.*\) \(40 timed, 4 per read\)$", out, re.M), out
    assert re.search(r"[\d.]+ us per container \(80 containers, 4 per read\)", out), out
    assert re.search(r"^ratio [\d.]+ \(CCR-U / container; target <= 1.5\)$", out, re.M), out
