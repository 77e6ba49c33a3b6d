"""Price plans over real loopback sockets with a manual clock: the peak/off-peak
confirm-and-reserve, plans by client.admin, and refills decided by the server's timers,
logged, and replayed to the same counters."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem
from cc_client.admin import main
from cc_server.config import ServerConfig
from cc_server.testing import ManualClock, ServerThread, running_server

D = Decimal
PARIS = dt.timezone(dt.timedelta(hours=1))       # Europe/Paris in winter
PLANS = Path(__file__).resolve().parent.parent / "examples" / "plans.toml"
DAILY = """
[[plans.standard.allowances]]
counter = "free_sms"
units = 10
every = "day"
"""


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


async def test_a_call_crossing_19h_under_the_manual_clock() -> None:
    clock = ManualClock(at("2026-12-07 18:50"))
    async with running_server(clock=clock, catalog=str(PLANS)) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("alice", D("10.00"), counters={"free_seconds": 0})
        start = client.create_session_start_operation(user_id="alice", service_id="VOICE",
                                                      session_id="call-1")
        start.prepare_reserve("r", ChargeableItem("call", {"duration": 600}), ttl=3600)
        assert (await start.execute())["r"].reserve_result.amount == D("1.00")   # 0.10 peak
        clock.advance(15 * 60)                                              # 19:05
        update = client.create_session_update_operation(user_id="alice", service_id="VOICE",
                                                        session_id="call-1")
        update.prepare_confirm_and_reserve("r", ChargeableItem("call", {"duration": 600}),
                                           None, ttl=-1)
        r = (await update.execute())["r"]
        assert r.cancel_result.amount == D("1.00")     # releases exactly what was held
        assert r.confirm_result.amount == D("1.00")    # rated at 18:50, when usage began
        assert r.reserve_result.amount == D("0.50")    # rated at 19:05: 10 x 0.05
        assert r.reserve_result.transactions[0].rating == "no period: item price: 10 x 0.05"
        alice = await client.admin.get_subscriber("alice")
        assert (alice.balance, alice.reserved) == (D("9.00"), D("0.50"))
        ratings = [t.rating for t in await client.admin.transactions(session_id="call-1")]
        assert ratings == ["period 1 (mon-fri 08:00-19:00): 10 x 0.10", None,
                           "period 1 (mon-fri 08:00-19:00): 10 x 0.10",
                           "no period: item price: 10 x 0.05"]


async def test_plans_by_client_admin_and_unknown_plan() -> None:
    async with running_server(catalog=str(PLANS)) as server, \
            cc_client.connect(server.url) as client:
        bob = await client.admin.create_subscriber("bob", D("5"), plan="premium")
        assert bob.plan == "premium" and bob.counters == {}   # premium has no allowance
        carol = await client.admin.create_subscriber("carol", D("5"))
        assert carol.plan is None and carol.counters == {"free_seconds": D(3600),
                                                         "data_used": D(0)}
        paul = await client.admin.get_subscriber("paul")      # the catalog's seed
        assert (paul.plan, paul.balance) == ("premium", D("20.00"))
        with pytest.raises(cc_client.UnknownPlan):
            await client.admin.create_subscriber("dave", D("5"), plan="gold")
        with pytest.raises(cc_client.UnknownPlan):
            await client.admin.set_plan("carol", "gold")
        assert (await client.admin.set_plan("carol", "premium")).plan == "premium"
        later = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        assert (await client.admin.set_plan("bob", "standard", later)).plan == "premium"
        with pytest.raises(cc_client.UserUnknown):
            await client.admin.get_subscriber("dave")


async def test_refills_by_the_timers_past_midnight_and_a_month_start_replay_alike(
        tmp_path: Path) -> None:
    catalog = tmp_path / "plans.toml"
    catalog.write_text(PLANS.read_text() + DAILY)
    clock = ManualClock(at("2026-12-30 23:00"))
    records: list[bytes] = []
    async with running_server(clock=clock, catalog=str(catalog)) as server, \
            cc_client.connect(server.url) as client:
        server.server.dispatcher.wal = lambda payload: records.append(payload) or 0
        await client.admin.create_subscriber("eve", D("5"), counters={
            "free_seconds": 100, "free_sms": 3, "data_used": 5000})
        await client.admin.set_plan("eve", "premium", dt.datetime(2027, 2, 1, tzinfo=PARIS))
        clock.advance(3600 + 600)                                  # 2026-12-31 00:10
        await server.settle()
        eve = await client.admin.get_subscriber("eve")
        assert eve.counters == {"free_seconds": D(100), "free_sms": D(10),
                                "data_used": D(5000)}
        clock.advance(24 * 3600)                                   # 2027-01-01 00:10
        await server.settle()
        eve = await client.admin.get_subscriber("eve")
        assert eve.counters == {"free_seconds": D(3600), "free_sms": D(10),
                                "data_used": D(0)}
        refills = [(t.time, t.kind, dict(t.counters), t.rating)
                   for t in await client.admin.transactions(user_id="eve")
                   if t.reason == "refill"]
        assert refills == [
            (dt.datetime(2026, 12, 30, 23, 0, tzinfo=dt.UTC), "top_up", {"free_sms": D(7)},
             "refill every day"),
            (dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC), "top_up",
             {"free_seconds": D(3500)}, "refill every month"),
            (dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC), "confirm",
             {"data_used": D(5000)}, "refill every month")]
        journal = server.engine.transactions()
    # replay the log on another server: the same refills, whatever its own timers do
    async with running_server(clock=ManualClock(at("2026-12-30 23:00")),
                              catalog=str(catalog)) as again:
        for payload in records:
            again.server.dispatcher.replay(payload)
        assert again.engine.get_subscriber("eve").counters == eve.counters
        assert again.engine.accounts["eve"].plan_next == ("premium", at("2027-02-01 00:00"))
        assert [t[1:] for t in again.engine.transactions()] == [t[1:] for t in journal]


async def test_plans_and_the_refill_mark_survive_a_restart(tmp_path: Path) -> None:
    catalog = tmp_path / "plans.toml"
    catalog.write_text(PLANS.read_text() + DAILY)
    data = tmp_path / "data"
    clock = ManualClock(at("2026-12-30 23:00"))
    async with running_server(clock=clock, catalog=str(catalog), data_dir=str(data)) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("fay", D("5"), plan="premium")
        await client.admin.create_subscriber("gus", D("5"), counters={"free_sms": 1})
        await client.admin.set_plan("gus", "premium", dt.datetime(2027, 1, 1, tzinfo=PARIS))
    # down over midnight: the restart's first decision refills what the downtime missed
    clock = ManualClock(at("2026-12-31 08:00"))
    async with running_server(clock=clock, catalog=str(catalog), data_dir=str(data)) as server, \
            cc_client.connect(server.url) as client:
        assert (await client.admin.get_subscriber("fay")).plan == "premium"
        gus = await client.admin.get_subscriber("gus")
        assert gus.plan is None and gus.counters["free_sms"] == D(10)
        assert server.engine.accounts["gus"].plan_next == ("premium", at("2027-01-01 00:00"))


def test_cc_admin_plan_commands(capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    with ServerThread(ServerConfig(catalog=str(PLANS))) as server:
        code, out, _ = run("subscriber", "create", "hal", "--balance", "3", "--plan",
                           "premium", "--server", server.url)
        assert code == 0 and re.search(r"^plan: +premium$", out, re.M)
        code, out, _ = run("subscriber", "show", "paul", "--server", server.url)
        assert code == 0 and re.search(r"^plan: +premium$", out, re.M)
        code, out, _ = run("subscriber", "set-plan", "hal", "standard", "--server", server.url)
        assert code == 0 and re.search(r"^plan: +standard$", out, re.M)
        code, _, err = run("subscriber", "set-plan", "hal", "gold", "--server", server.url)
        assert code == 1 and err.startswith("error: UNKNOWN_PLAN: no price plan 'gold'")
        code, _, err = run("subscriber", "set-plan", "hal", "premium", "--from",
                           "2027-01-01T00:00", "--server", server.url)
        assert code == 1 and "--from needs a time zone" in err
    code, out, _ = run("catalog", "show", str(PLANS), "--at", "2026-12-07T18:50")
    assert code == 0 and "period 1 (mon-fri 08:00-19:00) = 0.10 EUR" in out
    code, out, _ = run("catalog", "show", str(PLANS), "--at", "2026-12-07T19:05:00+01:00")
    assert code == 0 and "no period: item price = 0.05 EUR" in out
    code, out, _ = run("catalog", "show", str(PLANS))
    assert code == 0 and "plan standard (default)" in out and "allowance free_seconds: 3600 " \
        "every month" in out
    code, _, err = run("catalog", "show", str(PLANS.with_name("missing.toml")))
    assert code == 2 and "cannot read it" in err


def test_the_sync_client_creates_with_a_plan_and_sets_it() -> None:
    with ServerThread(ServerConfig(catalog=str(PLANS))) as server, \
            cc_client.sync.connect(server.url) as client:
        assert client.admin.create_subscriber("ivy", D("1"), plan="premium").plan == "premium"
        assert client.admin.set_plan("ivy", "standard").plan == "standard"
        with pytest.raises(cc_client.UnknownPlan):
            client.admin.set_plan("ivy", "gold")


async def test_a_catalog_reload_prices_from_then_on_and_replays_alike(tmp_path: Path) -> None:
    catalog = tmp_path / "plans.toml"
    catalog.write_text(PLANS.read_text())
    clock = ManualClock(at("2026-12-07 20:00"))
    records: list[bytes] = []

    async def call(client: cc_client.Client, sid: str) -> Decimal:
        start = client.create_session_start_operation(user_id="jo", service_id="VOICE",
                                                      session_id=sid)
        start.prepare_reserve("r", ChargeableItem("call", {"duration": 60}), ttl=60)
        amount: Decimal = (await start.execute())["r"].reserve_result.amount
        return amount

    async with running_server(clock=clock, catalog=str(catalog)) as server, \
            cc_client.connect(server.url) as client:
        server.server.dispatcher.wal = lambda payload: records.append(payload) or 0
        await client.admin.create_subscriber("jo", D("5"), counters={"free_seconds": 0})
        assert await call(client, "c1") == D("0.05")
        assert not server.server.reload_catalog()                 # unchanged: nothing
        catalog.write_text(PLANS.read_text().replace('price = "0.05"', 'price = "0.07"'))
        assert server.server.reload_catalog()
        assert await call(client, "c2") == D("0.07")
        catalog.write_text("not = [toml")
        assert not server.server.reload_catalog()                 # refused: 0.07 stays
        assert await call(client, "c3") == D("0.07")
        journal = [t[1:] for t in server.engine.transactions()]
    catalog.write_text(PLANS.read_text())                         # the replay starts old
    async with running_server(clock=ManualClock(at("2026-12-07 20:00")),
                              catalog=str(catalog)) as again:
        for payload in records:
            again.server.dispatcher.replay(payload)
        assert [t[1:] for t in again.engine.transactions()] == journal
