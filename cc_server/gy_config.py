"""The settings of the Diameter front-end: the `[diameter]` table of the config file
(`GySettings`), `--diameter HOST:PORT`, and the catalog's `[diameter.rating_groups.<n>]`
tables (`RatingGroup`). DIAMETER.md documents each key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final

from protocol import messages as m

from .engine.catalog import CatalogError
from .tomlfile import read_toml

UNIT_FIELDS: Final = ("total_octets", "input_octets", "output_octets", "time",
                      "service_specific_units")


class GyConfigError(CatalogError):
    """A `[diameter]` setting or rating group that cannot be used."""


@dataclass(frozen=True)
class RatingGroup:
    """What one Rating-Group is charged as: service, item, the unit AVP that gives the
    item's quantity, the units asked for when a RSU names no amount, and how many AVP
    units make one unit of the item's quantity (`per`, a power of ten: 1_000_000 rates
    octets as MB)."""

    service: str
    item: str
    units: str = "total_octets"
    quota: int = 1_000_000
    per: int = 1

    def quantity(self, units: int) -> int | Decimal:
        """The item's quantity for a number of AVP units (exact)."""
        if self.per == 1:
            return units
        return Decimal(units).scaleb(-(len(str(self.per)) - 1))

    def units_of(self, quantity: object) -> int:
        """AVP units for an item quantity (rounded down)."""
        if self.per == 1 and type(quantity) is int:   # the common case, no Decimal needed
            return quantity
        if not isinstance(quantity, int | Decimal):
            return 0
        return int((Decimal(quantity) * self.per).to_integral_value(ROUND_FLOOR))


def rating_groups_from(table: Any, where: str) -> dict[int, RatingGroup]:
    """The `rating_groups` table: {"10": {service=, item=, units=, quota=}, ...}."""
    if not isinstance(table, Mapping):
        raise GyConfigError(f"{where}: must be a table of rating groups")
    groups: dict[int, RatingGroup] = {}
    for key, spec in table.items():
        at = f"{where}.{key}"
        try:
            number = int(key)
        except ValueError:
            raise GyConfigError(f"{at}: a rating group is a number") from None
        if not 0 <= number < 2**32:
            raise GyConfigError(f"{at}: a rating group is an Unsigned32")
        if not isinstance(spec, Mapping):
            raise GyConfigError(f"{at}: must be a table")
        unknown = set(spec) - {"service", "item", "units", "quota", "per"}
        if unknown:
            raise GyConfigError(f"{at}: unknown key(s) {sorted(unknown)}")
        service, item = spec.get("service"), spec.get("item")
        if not isinstance(service, str) or not isinstance(item, str) or not service \
                or not item:
            raise GyConfigError(f"{at}: needs service and item (strings)")
        units = spec.get("units", "total_octets")
        if units not in UNIT_FIELDS:
            raise GyConfigError(f"{at}.units: one of {', '.join(UNIT_FIELDS)}, not {units!r}")
        quota = spec.get("quota", 1_000_000)
        if isinstance(quota, bool) or not isinstance(quota, int) or quota <= 0:
            raise GyConfigError(f"{at}.quota: a positive integer, not {quota!r}")
        per = spec.get("per", 1)
        if isinstance(per, bool) or per not in [10**k for k in range(10)]:
            raise GyConfigError(f"{at}.per: a power of ten up to 10**9, not {per!r}")
        groups[number] = RatingGroup(service, item, units, quota, per)
    return groups


def load_rating_groups(catalog_path: str | None) -> dict[int, RatingGroup]:
    """The `[diameter.rating_groups.<n>]` tables of a catalog file ({} without one)."""
    if not catalog_path:
        return {}
    data = read_toml(catalog_path, "catalog", GyConfigError)
    table = data.get("diameter", {})
    if not isinstance(table, Mapping) or set(table) - {"rating_groups"}:
        raise GyConfigError(f"catalog {catalog_path}: [diameter] holds only rating_groups")
    return rating_groups_from(table.get("rating_groups", {}),
                              f"catalog {catalog_path}: diameter.rating_groups")


@dataclass(frozen=True)
class GySettings:
    """The `[diameter]` table of the config file (and `--diameter HOST:PORT`)."""

    origin_host: str = "cc-server.localdomain"
    origin_realm: str = "localdomain"
    peers: tuple[str, ...] = ()              # Origin-Hosts allowed; empty: any
    watchdog: float = 30.0                   # Tw, seconds
    validity_time: int = 600                 # Validity-Time granted = reservation TTL
    on_expiry: str = "CANCELED"              # default resolution at TTL expiry
    reject_unknown_mandatory: bool = True    # 5001 for unknown AVPs with the M bit
    max_message: int = 65536
    service: str = "DATA"                    # service of a session no rating group names
    host_ip_address: str = "127.0.0.1"       # Host-IP-Address in our CEA
    ttl_grace: int = 5                       # reservation TTL = Validity-Time + this
    listener_id: int = 127                   # renewal listener id of Diameter sessions (RAR)

    @staticmethod
    def from_table(table: Mapping[str, Any]) -> GySettings:
        """Checked settings from the `[diameter]` table (without `listen`)."""
        known = {f: type(getattr(GySettings(), f)) for f in GySettings.__dataclass_fields__}
        values: dict[str, Any] = {}
        for key, given in table.items():
            name = key.replace("-", "_")
            value = given
            if name not in known:
                raise GyConfigError(f"[diameter]: unknown setting {key!r}; allowed: listen, "
                                    f"{', '.join(sorted(known))}")
            kind = known[name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind is tuple:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise GyConfigError(f"[diameter].{name}: a list of Origin-Hosts")
                value = tuple(value)
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise GyConfigError(f"[diameter].{name} must be {kind.__name__}, not {value!r}")
            values[name] = value
        settings = GySettings(**values)
        problems = []
        if not 0.1 <= settings.watchdog <= 3600:
            problems.append("watchdog must be in 0.1..3600 seconds")
        if not 1 <= settings.validity_time <= 86_400 * 30:
            problems.append("validity_time must be in 1..2592000 seconds")
        parts = settings.host_ip_address.split(".")
        if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
            problems.append("host_ip_address must be an IPv4 address")
        if not 0 <= settings.ttl_grace <= 3600:
            problems.append("ttl_grace must be in 0..3600 seconds")
        if not 0 <= settings.listener_id <= m.MAX_LISTENER_ID:
            problems.append(f"listener_id must be in 0..{m.MAX_LISTENER_ID}")
        if settings.on_expiry not in ("CANCELED", "CONFIRMED"):
            problems.append("on_expiry must be CANCELED or CONFIRMED")
        if not 1024 <= settings.max_message <= 16 * 1024 * 1024:
            problems.append("max_message must be in 1024..16777216 bytes")
        if problems:
            raise GyConfigError("[diameter]: " + "; ".join(problems))
        return settings


def parse_listen(text: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 in brackets) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise GyConfigError(f"--diameter takes HOST:PORT (port 0..65535), not {text!r}")
    return host.strip("[]"), int(port)
