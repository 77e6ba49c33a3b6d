"""`ChargeableItem` as the client exports it: a bad item raises a `ChargingError`.

The wire type (`protocol.messages.ChargeableItem`) raises ValueError/TypeError for a bad
item. Built through `cc_client.ChargeableItem`, the same item raises what the server would
answer for it, with the same text, before anything is sent: the limit's own class
(`TooManyProperties`, `StringTooLong`), else `InvalidArgument` / `InvalidArgumentType`
(InvalidRequest subclasses that are also ValueError / TypeError).

There is still one item type. Type checkers see the wire type itself, and at run time every
wire item (for example a `granted_item` decoded from a reply) is an instance of this class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from protocol import messages as m

from .errors import StringTooLong, TooManyProperties, refused

__all__ = ["ChargeableItem"]

if TYPE_CHECKING:
    ChargeableItem = m.ChargeableItem
else:
    class _OneItemType(type):
        """isinstance/issubclass answer as for the wire type: there is one item type."""

        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, m.ChargeableItem)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, m.ChargeableItem)

    class ChargeableItem(m.ChargeableItem, metaclass=_OneItemType):
        """What is charged: an item name (None in a partial item) and typed properties
        (str, int, Decimal, bool or an aware datetime). Immutable."""

        __slots__ = ()

        def __new__(cls, name: str | None,
                    properties: Mapping[str, Any] | None = None) -> ChargeableItem:
            if isinstance(properties, Mapping):
                if len(properties) > m.MAX_PROPERTIES:
                    raise TooManyProperties(f"an item has at most {m.MAX_PROPERTIES} properties")
                for key, value in properties.items():
                    if type(value) is str and len(value) > m.MAX_STRING_LENGTH:
                        raise StringTooLong(
                            f"property {key!r}: string longer than {m.MAX_STRING_LENGTH}")
            try:
                return super().__new__(cls, name, properties)
            except (ValueError, TypeError) as exc:
                raise refused(exc) from None
