"""Test-control settings: flags, the config file's [[faults]], and their checks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cc_server.app import config_from_args
from cc_server.config import ServerConfig, build, to_toml


def test_flags_set_the_test_controls() -> None:
    config, _ = config_from_args(["--record", "500", "--clock", "manual"])
    assert (config.record, config.clock, config.test_controls) == (500, "manual", True)
    config, _ = config_from_args(["--clock-speed", "60", "--no-test-controls"])
    assert (config.clock_speed, config.test_controls) == (60.0, False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--clock", "manual", "--clock-speed", "2"], "do not go together"),
    (["--no-test-controls", "--record", "10"], "need the test controls"),
    (["--clock-speed", "0"], "--clock-speed (config key clock_speed) must be in 0.001..10000"),
    (["--record", "2000000"], "--record (config key record) must be in 0..1000000"),
    (["--clock", "sundial"], "invalid choice"),
])
def test_bad_test_control_settings_are_usage_errors(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        config_from_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_print_config_keeps_the_fault_tables(tmp_path: Path) -> None:
    rules = ({"action": "drop-reply", "user": "alice*", "times": 1},
             {"action": "delay", "seconds": 0.5, "type": "EXECUTE"})
    text = to_toml(build({"faults": list(rules)}, {}))
    assert tomllib.loads(text)["faults"] == list(rules)
    path = tmp_path / "cc.toml"
    path.write_text(text)
    config, _ = config_from_args(["--config", str(path)])
    assert config.faults == rules
    assert ServerConfig(faults=({"action": "nope"},)).problems() == [
        "faults[0]: action must be one of ['busy', 'close-after', 'close-before', "
        "'delay', 'delay-notify', 'drop-notify', 'drop-reply', 'drop-request', "
        "'duplicate-notify', 'error', 'pause'], not 'nope'"]
