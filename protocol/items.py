"""`ChargeableItem`, kept interpreted: mypyc cannot compile a subclass of a NamedTuple.

It stays a tuple (`name, properties = item` works, and the codec builds it without
re-validating). `protocol.messages` re-exports it; import it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .messages import PropertyValue


class _Item(NamedTuple):
    name: str | None
    properties: Mapping[str, PropertyValue]


class ChargeableItem(_Item):
    """What is charged: an item name (None in a partial item) and typed properties.

    Immutable; on the wire it is the array [name, {property: value}].
    """

    __slots__ = ()

    def __new__(cls, name: str | None,
                properties: Mapping[str, PropertyValue] | None = None) -> ChargeableItem:
        from .messages import MAX_ID_LENGTH, MAX_PROPERTIES, check_property

        if name is not None and (type(name) is not str or not name
                                 or len(name) > MAX_ID_LENGTH):
            raise ValueError(f"item name must be None or a non-empty str, not {name!r}")
        if properties is None:
            properties = {}
        elif not isinstance(properties, Mapping):
            raise TypeError("properties must be a mapping of name to value")
        if len(properties) > MAX_PROPERTIES:
            raise ValueError(f"an item has at most {MAX_PROPERTIES} properties")
        for key, value in properties.items():
            check_property(key, value)
        return tuple.__new__(cls, (name, dict(properties)))
