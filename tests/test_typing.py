"""Users type-check their gateways: `mypy --strict` sees the public API as we do.

One mypy run (the test environment's, cache in a temporary folder, a few seconds) checks
the examples, a script that uses the API correctly, and one that misspells it: the first
two must pass, and every misspelling must be reported on its own line, nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CORRECT = '''\
from __future__ import annotations

from decimal import Decimal

import cc_client
from cc_client import ChargeableItem, RenewalNotification, ReservationResult
from cc_client.operations import SessionStartOperation
from cc_client.operator import OperatorAPI
from cc_client.results import SessionResult
from protocol import messages as m


def note_error(err: cc_client.SessionNotFound | cc_client.InvalidRequest) -> str:
    return err.code + err.message


async def gateway(address: str) -> None:
    async with cc_client.connect(address, request_timeout=3) as client:
        op = client.create_session_start_operation(user_id="a", service_id="DATA",
                                                   session_id="s")
        op.prepare_reserve("r1", ChargeableItem("data", {"volume": 1}), ttl=30)
        try:
            result: ReservationResult = (await op.execute())["r1"]
        except cc_client.SessionNotFound as e:
            print(note_error(e), e.code)
            return
        if result.granted_item is not None:
            item: ChargeableItem = result.granted_item
            print(item.name)
        sub = await client.admin.top_up("a", Decimal("1.00"))
        print(sub.balance)


def blocking(address: str) -> None:
    def renew(note: RenewalNotification) -> None:
        print(note.session_id)

    with cc_client.sync.connect(address, request_timeout=3) as client:
        client.register_reservation_renewal_listener(1, renew)
        op = client.create_session_update_operation(user_id="a", service_id="DATA",
                                                    session_id="s")
        op.prepare_confirm_and_reserve("r1", ChargeableItem("data", {"volume": 1}), ttl=-1)
        op.prepare_cancel("r2")
        op.set_external_data(b"ctx")
        try:
            print(op.execute()["r1"].ok, op.operation_id.hex())
        except cc_client.SessionNotFound as e:
            print(e.code)
        except cc_client.LimitExceeded as e:
            print(e.message)
        print(client.admin.get_subscriber("a").available)
        print([s.session_id for s in client.admin.find_sessions(user_id="a")])


class FakeHost:
    """A test double: the client's parts need only these members, not a whole Client."""

    def new_operation_id(self) -> bytes:
        return b"op-1"

    async def execute_container(self, msg: m.Execute) -> SessionResult:
        return SessionResult(msg.session_id, [])

    async def call(self, msg_type: int, body: bytes) -> tuple[int, bytes]:
        return msg_type, body

    def error_of(self, msg_type: int, body: bytes) -> cc_client.ChargingError:
        return cc_client.ServerFailure("fake")


async def with_a_fake() -> None:
    host = FakeHost()
    print((await SessionStartOperation(host, "a", "DATA", "s").execute()).ok)
    print(await OperatorAPI(host).stats())
'''

# Each line marked "# E: code" must draw exactly that mypy error; no other line any.
MISSPELT = '''\
from __future__ import annotations

from decimal import Decimal

import cc_client
from cc_client import ChargeableItem


async def gateway(address: str) -> None:
    async with cc_client.connect(address) as client:
        op = client.create_session_start_operation(user_id="a", service_id="DATA",
                                                   session_id="s")
        op.prepare_reseve("r1", ChargeableItem("data", {"volume": 1}), ttl=30)  # E: attr-defined
        await client.admin.top_upp("a", Decimal(1))  # E: attr-defined


def blocking(address: str) -> None:
    with cc_client.sync.connect(address, request_timout=3) as client:  # E: call-arg
        op = client.create_session_start_operation(user_id="a", service_id="DATA",
                                                   session_id="s")
        op.prepare_reseve("r1", ChargeableItem("data", {"volume": 1}), ttl=30)  # E: attr-defined
        op.prepare_confirm("r1")  # E: attr-defined
        op.prepare_reserve("r1", ChargeableItem("data", {"volume": 1}), ttl="30")  # E: arg-type
        client.admin.top_upp("a", Decimal(1))  # E: attr-defined
        balance: str = client.admin.get_subscriber("a").balance  # E: assignment
        try:
            op.execute()
        except cc_client.SessionNotFound as e:
            print(e.cod)  # E: attr-defined
'''


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, str]]]:
    """Run mypy --strict once over all the files; errors by file name: (line, code)."""
    work = tmp_path_factory.mktemp("typing")
    (work / "correct.py").write_text(CORRECT)
    (work / "misspelt.py").write_text(MISSPELT)
    examples = sorted(str(p) for p in EXAMPLES.glob("*.py"))
    assert examples
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(work / "cache"),
         "--show-error-codes", "--no-color-output", "--no-error-summary",
         "correct.py", "misspelt.py", *examples],
        check=False, cwd=work, capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr + run.stdout    # 2 would be a crash
    errors: dict[str, list[tuple[int, str]]] = {}
    for line in run.stdout.splitlines():
        found = re.match(r"(.+?):(\d+): error: .*\[([a-z-]+)\]$", line)
        if found:
            errors.setdefault(Path(found[1]).name, []).append((int(found[2]), found[3]))
        else:
            assert ": note: " in line, line
    return errors


def test_the_examples_pass_mypy_strict(mypy_report: dict[str, list[tuple[int, str]]]) -> None:
    for example in EXAMPLES.glob("*.py"):
        assert mypy_report.get(example.name, []) == [], example.name


def test_correct_use_of_the_public_api_passes(
        mypy_report: dict[str, list[tuple[int, str]]]) -> None:
    assert mypy_report.get("correct.py", []) == []


def test_every_misspelling_is_caught_on_its_line(
        mypy_report: dict[str, list[tuple[int, str]]]) -> None:
    expected = [(number, line.rsplit("# E: ", 1)[1].strip())
                for number, line in enumerate(MISSPELT.splitlines(), 1) if "# E: " in line]
    assert len(expected) == 9
    assert sorted(mypy_report.get("misspelt.py", [])) == expected
