"""Sphinx configuration of the API reference (`make docs`; pages in docs/_build/html)."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)             # the packages of this tree, whatever is installed
os.environ.setdefault("CC_PURE_PYTHON", "1")   # compiled modules carry no signatures

project = "cc-charging"
author = "the cc-charging authors"
copyright = "the cc-charging authors"   # noqa: A001  (the name Sphinx reads)
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
default_role = "code"                # `name` in a docstring is code, as in the README
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_title = "cc-charging API reference"
html_static_path: list[str] = []
