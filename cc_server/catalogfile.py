"""Reading a catalog file: the server's side of the catalog (the engine parses a dict)."""

from __future__ import annotations

import os

from .engine.catalog import Catalog, CatalogError
from .tomlfile import read_toml


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Read a TOML catalog file (format in the README); `CatalogError` if unreadable or
    invalid, naming the file. Its `[diameter]` table (the rating groups of the Diameter
    front-end) is read by `gy.load_rating_groups`."""
    data = read_toml(path, "catalog", CatalogError)
    data.pop("diameter", None)
    return Catalog.from_dict(data, str(path))
