"""The testing recipes of examples/ (README "Testing your client against cc-server") pass
under plain pytest with the installed plugin's fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RECIPES = sorted(EXAMPLES.glob("test_recipe_*.py"))


def test_every_recipe_passes() -> None:
    assert len(RECIPES) == 6
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p",
                          "no:cacheprovider", "--rootdir", str(EXAMPLES),
                          *map(str, RECIPES)],
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0 and f"{len(RECIPES)} passed" in run.stdout, run.stdout[-3000:]
