"""Wiring of the Diameter front-end: `--diameter HOST:PORT`, the `[diameter]` table, the
catalog's rating groups, the start-up line, and the CCR -> container mapping's corners
(a CCR-I that reserves nothing yet)."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

import cc_diameter as d
from cc_diameter import codes as c
from cc_server.app import config_from_args, startup_warnings
from cc_server.config import ServerConfig, load_file, to_toml
from cc_server.gy import GyPeer, operation_id
from cc_server.gy_config import (
    GyConfigError,
    GySettings,
    load_rating_groups,
    parse_listen,
    rating_groups_from,
)
from cc_server.testing import running_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:3868") == ("127.0.0.1", 3868)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("3868", "host:", "host:70000", ":1"):
        with pytest.raises(GyConfigError):
            parse_listen(bad)


def test_the_diameter_table_of_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(textwrap.dedent("""
        [diameter]
        listen = "127.0.0.1:0"
        origin_host = "ocs.example"
        origin_realm = "example"
        peers = ["pgw1.example", "pgw2.example"]
        watchdog = 6
    """))
    config, _ = config_from_args(["--config", str(path)])
    assert config.diameter == "127.0.0.1:0"
    settings = GySettings.from_table(config.diameter_table)
    assert settings.peers == ("pgw1.example", "pgw2.example") and settings.watchdog == 6.0
    again = tmp_path / "again.toml"
    again.write_text(to_toml(config))           # --print-config reads back the same
    values = load_file(str(again))
    assert values["diameter"] == "127.0.0.1:0"
    assert values["diameter_table"] == config.diameter_table


@pytest.mark.parametrize(("table", "words"), [
    ({"watchdog": 0}, "watchdog"),
    ({"origin_hots": "x"}, "unknown setting"),
    ({"peers": "gw"}, "list of Origin-Hosts"),
    ({"on_expiry": "LATER"}, "on_expiry"),
])
def test_bad_diameter_settings_are_refused(table: dict[str, object], words: str) -> None:
    problems = ServerConfig(diameter="127.0.0.1:0", diameter_table=table).problems()
    assert any(words in p for p in problems), problems


def test_the_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--diameter", "nowhere"])
    assert "HOST:PORT" in capsys.readouterr().err


def test_rating_groups_of_a_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(textwrap.dedent("""
        [services.DATA.items.data]
        quantity = "volume"
        price = "0.01"
        [diameter.rating_groups.10]
        service = "DATA"
        item = "data"
        units = "total_octets"
        [diameter.rating_groups.7]
        service = "DATA"
        item = "data"
        units = "time"
        quota = 60
    """))
    groups = load_rating_groups(str(path))
    assert groups[10].units == "total_octets" and groups[10].quota == 1_000_000
    assert groups[7].units == "time" and groups[7].quota == 60
    mb = rating_groups_from({"1": {"service": "D", "item": "d", "per": 1_000_000}}, "t")[1]
    assert mb.quantity(1_500_000) == Decimal("1.5") and mb.units_of(Decimal("1.5")) == 1_500_000
    assert mb.units_of(Decimal("0.0000015")) == 1
    for bad in ({"x": {"service": "D", "item": "d"}}, {"1": {"service": "D"}},
                {"1": {"service": "D", "item": "d", "per": 3}},
                {"1": {"service": "D", "item": "d", "units": "bytes"}},
                {"1": {"service": "D", "item": "d", "quota": 0}}):
        with pytest.raises(GyConfigError):
            rating_groups_from(bad, "t")


def test_operation_ids_differ_by_session_and_number() -> None:
    ids = {operation_id(s, n) for s in ("a;1", "a;2") for n in (0, 1)}
    assert len(ids) == 4 and all(len(i) == 16 for i in ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_start_up_line_names_the_diameter_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cc_server", "--port", "0", "--diameter", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("listening on 127.0.0.1:")
        line = proc.stdout.readline().strip()
        assert line.startswith("diameter listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            cer = d.Capabilities("gw", "test", ["127.0.0.1"], 0, "t",
                                 auth_application_ids=[4]).request(1, 1)
            sock.sendall(d.encode(cer))
            dec = d.MessageDecoder()
            got: list[bytes] = []
            for _ in range(50):
                got += dec.feed(sock.recv(4096))
                if got:
                    break
            assert d.Capabilities.from_message(d.decode(got[0])).result_code == 2001
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_ccr_i_without_quota_starts_the_session_at_its_first_reservation(
        tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(textwrap.dedent("""
        [services.DATA.items.data]
        quantity = "volume"
        price = "0.01"
        [[subscribers]]
        user_id = "alice"
        balance = "5.00"
        [diameter.rating_groups.10]
        service = "DATA"
        item = "data"
    """))
    config = ServerConfig(catalog=str(catalog), diameter="127.0.0.1:0")
    async with running_server(config) as server:
        assert server.server.diameter is not None
        front = server.server.diameter.front
        peer = GyPeer("test")

        def ccr(kind: int, number: int, mscc: list[d.Mscc]) -> d.Message:
            return d.decode(d.encode(d.Ccr("s;1", "gw", "r", "ocs", "ctx", kind, number,
                                           subscription_ids=[(1, "alice")],
                                           mscc=mscc).to_message(number + 1, number + 1)))

        cca = d.Cca.from_message(front.handle_ccr(peer, ccr(1, 0, [])))
        assert cca.result_code == 2001 and "s;1" not in server.engine.sessions
        stranger = d.Ccr("s;2", "gw", "r", "ocs", "ctx", 1, 0, subscription_ids=[(1, "bob")])
        answer = front.handle_ccr(peer, d.decode(d.encode(stranger.to_message(9, 9))))
        assert d.Cca.from_message(answer).result_code == 5030      # known before any quota
        cca = d.Cca.from_message(front.handle_ccr(peer, ccr(2, 1, [
            d.Mscc(rating_group=10, requested=d.Units())])))       # empty RSU: the quota
        assert cca.result_code == 2001
        assert cca.mscc[0].granted == d.Units(total_octets=500)    # 5.00 EUR at 0.01
        assert cca.mscc[0].final_unit_action == c.FUA_TERMINATE
        assert "s;1" in server.engine.sessions
        final_report = [d.Mscc(rating_group=10, used=[d.Units(total_octets=100)])]
        cca = d.Cca.from_message(front.handle_ccr(peer, ccr(2, 2, final_report)))
        assert cca.result_code == 2001 and cca.mscc[0].result_code == 2001
        assert server.engine.accounts["alice"].balance == 4
        # usage of a rating group that has no open reservation any more: 5031, not charged
        cca = d.Cca.from_message(front.handle_ccr(peer, ccr(2, 3, final_report)))
        assert cca.result_code == 2001 and cca.mscc[0].result_code == 5031
        assert server.engine.accounts["alice"].balance == 4
        cca = d.Cca.from_message(front.handle_ccr(peer, ccr(3, 4, [])))
        assert cca.result_code == 2001 and "s;1" not in server.engine.sessions


async def test_the_gateway_example_charges_through_the_example_catalog(
        capsys: pytest.CaptureFixture[str]) -> None:
    examples = EXAMPLES
    spec = importlib.util.spec_from_file_location("gy_gateway", examples / "gy_gateway.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = ServerConfig(catalog=str(examples / "catalog.toml"), diameter="127.0.0.1:0")
    async with running_server(config) as server:
        assert server.server.diameter is not None
        host, port = server.server.diameter.address
        await asyncio.to_thread(module.main, f"{host}:{port}")
        out = capsys.readouterr().out
        assert "CCR-I: Result-Code 2001, RG 10: 2001, granted 5000000 octets" in out
        assert "CCR-T: Result-Code 2001" in out
        alice = server.engine.accounts["alice"]
        assert alice.counters["free_data"] == 100 - 7          # 4 + 3 MB used, free first
        assert module.parse_address([]) == "127.0.0.1:3868"


async def test_a_bug_while_serving_a_ccr_is_answered_5012(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(ServerConfig(diameter="127.0.0.1:0")) as server:
        listener = server.server.diameter
        assert listener is not None

        class Broken:
            """The front-end with a bug in handle_ccr (GyFrontEnd is a native class when
            compiled: its methods cannot be patched, so the listener's front is)."""

            def __init__(self, real: object) -> None:
                self.real = real

            def handle_ccr(self, peer: GyPeer, msg: d.Message) -> d.Message:
                raise RuntimeError("a bug")

            def __getattr__(self, name: str) -> object:
                return getattr(self.real, name)

        monkeypatch.setattr(listener, "front", Broken(listener.front))
        host, port = listener.address
        reader, writer = await asyncio.open_connection(host, port)
        cer = d.Capabilities("gw", "test", ["127.0.0.1"], 0, "t", auth_application_ids=[4])
        ccr = d.Ccr("s;9", "gw", "test", "test", "ctx", 1, 0, subscription_ids=[(1, "x")])
        writer.write(d.encode(cer.request(1, 1)) + d.encode(ccr.to_message(2, 2)))
        dec = d.MessageDecoder()
        got: list[bytes] = []
        for _ in range(100):
            got += dec.feed(await asyncio.wait_for(reader.read(4096), 5))
            if len(got) >= 2:
                break
        writer.close()
        answer = d.decode(got[1])
        assert answer.hop_by_hop == 2
        assert d.fields.result_code(answer) == c.DIAMETER_UNABLE_TO_COMPLY
        assert "internal_error" in caplog.text


async def test_an_open_diameter_port_without_peers_is_warned_about() -> None:
    async with running_server(ServerConfig(diameter="127.0.0.1:0")) as server:
        listener = server.server.diameter
        assert listener is not None
        assert startup_warnings(server.server) == []
        listener.host = "0.0.0.0"                      # as if bound to every interface
        (warning,) = startup_warnings(server.server)
        assert "names no peers" in warning
        listener.settings = replace(listener.settings, peers=("gw",))
        assert startup_warnings(server.server) == []
