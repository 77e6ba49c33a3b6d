"""`ChargeableItem`, its property types and checks, and the format's hard limits.

Kept interpreted: mypyc cannot compile a subclass of a NamedTuple. The item stays a tuple
(`name, properties = item` works, and the codec builds it without re-validating).
`protocol.messages` re-exports all of it; import it from there. This module imports no
other module of the project.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, NamedTuple, TypeAlias

# Hard limits of the format itself (the server may configure tighter ones).
MAX_ID_LENGTH: Final = 256            # user, session, service, reservation ids, property names
MAX_STRING_LENGTH: Final = 4096       # any other string
MAX_PROPERTIES: Final = 64            # properties per chargeable item
MAX_SUBREQUESTS: Final = 1024         # sub-requests per container
MAX_EXTERNAL_DATA: Final = 4096       # session external data, bytes
MAX_LISTENER_ID: Final = 127

PropertyValue: TypeAlias = str | int | Decimal | bool | dt.datetime
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def check_property(name: object, value: object) -> None:
    """Raise TypeError/ValueError unless (name, value) is a valid item property."""
    if type(name) is not str or not name or len(name) > MAX_ID_LENGTH:
        raise ValueError(f"property name must be a non-empty str of at most "
                         f"{MAX_ID_LENGTH} characters, not {name!r}")
    kind = type(value)
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise ValueError(f"property {name!r}: integer {value} out of the 64-bit range")
    elif kind is Decimal:
        if not value.is_finite():  # type: ignore[attr-defined]
            raise ValueError(f"property {name!r}: Decimal must be finite, not {value}")
    elif kind is str:
        if len(value) > MAX_STRING_LENGTH:  # type: ignore[arg-type]
            raise ValueError(f"property {name!r}: string longer than {MAX_STRING_LENGTH}")
    elif kind is dt.datetime:
        if value.tzinfo is None:  # type: ignore[attr-defined]
            raise ValueError(f"property {name!r}: datetime must be timezone-aware")
    elif kind is not bool:
        hint = " (use decimal.Decimal for fractions)" if kind is float else ""
        raise TypeError(f"property {name!r}: {kind.__name__} is not a property type; "
                        f"use str, int, Decimal, bool or an aware datetime{hint}")



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
