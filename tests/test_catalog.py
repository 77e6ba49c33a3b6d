"""Catalog files: what loads, and clear errors for what does not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cc_server.catalogfile import load_catalog
from cc_server.engine import Catalog, CatalogError
from cc_server.engine.catalog import affordable_quantity, rate
from protocol import codec
from protocol import messages as m
from protocol.errors import InvalidMessage

BASE: dict[str, Any] = {"services": {"DATA": {"items": {"data": {
    "quantity": "volume", "price": "0.01", "allowance": "free_data"}}}}}


def test_builtin_catalog_matches_spec_section_8() -> None:
    cat = Catalog.builtin()
    voice = cat.plan("VOICE", "call")
    assert voice is not None and voice.step == 60 and voice.prices == {"EUR": Decimal("0.05")}
    assert voice.allowance == "free_seconds"
    sms = cat.plan("SMS", "sms")
    assert sms is not None and sms.allowance is None and sms.prices["EUR"] == Decimal("0.10")
    assert cat.plan("DATA", "call") is None


def test_minimal_file_defaults_step_and_currency(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[services.DATA.items.data]\nquantity = "volume"\nprice = "0.02"\n'
                    '[[subscribers]]\nuser_id = "u"\nbalance = "3"\n')
    cat = load_catalog(path)
    plan = cat.plan("DATA", "data")
    assert plan is not None and plan.step == 1 and plan.prices == {"EUR": Decimal("0.02")}
    assert cat.subscribers[0].balance == Decimal(3)


@pytest.mark.parametrize("change, message", [
    ({"services": {}}, "at least one service"),
    ({"extra": 1}, "unknown key"),
    ({"services": {"DATA": {"items": {"data": {"quantity": "v", "price": 0.01}}}}}, "quoted"),
    ({"services": {"DATA": {"items": {"data": {"quantity": "v", "price": "x"}}}}},
     "not a decimal"),
    ({"services": {"DATA": {"items": {"data": {"price": "1"}}}}}, "quantity"),
    ({"services": {"DATA": {"items": {"data": {"quantity": "v"}}}}}, "needs 'price'"),
    ({"services": {"DATA": {"items": {"data": {"quantity": "v", "price": "1", "step": 0}}}}},
     "step must be > 0"),
    ({"currency": "euro"}, "three-letter"),
    ({"currency": "ÄÖÜ"}, "three-letter"),     # the wire refuses it: so does the catalog
    ({"currency": "E1R"}, "three-letter"),
    ({"subscribers": [{"balance": "1"}]}, "user_id"),
])
def test_invalid_catalogs_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Catalog.from_dict({**BASE, **change})


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[services\n")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(bad)


@pytest.mark.parametrize("code", ["ÄÖÜ", "E1R", "Eur", "EU", "EURO", "EUR "])
def test_catalog_and_wire_refuse_the_same_currency_codes(code: str) -> None:
    with pytest.raises(CatalogError, match="three-letter"):
        Catalog.from_dict({**BASE, "currency": code})
    body = codec.encode_body(m.AdminRequest("create_subscriber",
                                            {"user": "u", "balance": Decimal(1),
                                             "currency": code}))[1]
    with pytest.raises(InvalidMessage, match="three-letter"):
        codec.decode_body(m.MsgType.ADMIN, body)
    assert Catalog.from_dict({**BASE, "currency": "JPY"}).plan("DATA", "data") is not None


def test_rate_and_inverse_rate_are_exact() -> None:
    plan = Catalog.builtin().plan("VOICE", "call")
    assert plan is not None
    price = plan.prices["EUR"]
    assert rate(plan, price, Decimal(121), Decimal(0)) == (0, Decimal("0.15"))
    assert rate(plan, price, Decimal(91), Decimal(30)) == (30, Decimal("0.10"))
    assert affordable_quantity(plan, price, Decimal(300), Decimal(0), Decimal("0.12")) == 120
    assert affordable_quantity(plan, price, Decimal(300), Decimal(30), Decimal("0.05")) == 90
    assert affordable_quantity(plan, price, Decimal(50), Decimal(0), Decimal(10)) == 50
