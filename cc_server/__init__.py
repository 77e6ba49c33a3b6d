"""Charging server: engine, transport, renewal, durability."""

import protocol.buildinfo as _buildinfo  # noqa: F401  (first: it picks the compiled or pure build)
