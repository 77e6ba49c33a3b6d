"""Charging server: engine, transport, renewal, durability."""
