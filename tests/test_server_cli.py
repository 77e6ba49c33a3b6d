"""cc-server's command line: ranges of every numeric setting, config-file paths, usage
errors, --help, the listening errors, and JSON log values."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cc_server.app import build_parser, config_from_args
from cc_server.config import PATH_SETTINGS, RANGES, ServerConfig, field_types
from cc_server.logs import JsonFormatter
from tests.serverproc import ServerProcess

NUMERIC = [name for name, (kind, _) in field_types().items() if kind in (int, float)]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The stderr of a command line that must be a usage error (exit 2)."""
    with pytest.raises(SystemExit) as info:
        config_from_args(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def outside(name: str) -> list[str]:
    """Values just outside the range of a setting, as command-line text."""
    low, high, _ = RANGES[name]
    if field_types()[name][0] is int:
        return [str(int(low) - 1), str(int(high) + 1)]
    return [str(low - 1 if low == 0 else low / 2), str(high * 2), "nan", "inf"]


def test_every_numeric_setting_has_a_range_that_holds_its_default() -> None:
    assert sorted(RANGES) == sorted(NUMERIC), "a numeric setting without a range"
    defaults = ServerConfig()
    for name in NUMERIC:
        low, high, _ = RANGES[name]
        default = getattr(defaults, name)
        assert default is None or low <= default <= high, name


@pytest.mark.parametrize("name", NUMERIC)
def test_each_flag_and_key_is_refused_outside_its_range(
        name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    flag = f"--{name.replace('_', '-')}"
    low, high, _ = RANGES[name]
    for text in outside(name):
        err = refused(capsys, [flag, text])
        assert f"{flag} (config key {name}) must be in " in err, err
        assert "usage:" not in err
        path = tmp_path / "cc.toml"
        path.write_text(f"{name} = {text}\n")
        assert f"{flag} (config key {name}) must be in " in refused(
            capsys, ["--config", str(path)])
    for edge in (low, high):      # the ends of the range are allowed
        text = str(int(edge)) if field_types()[name][0] is int else str(edge)
        config, _ = config_from_args([flag, text, "--port", "0"] if name != "port"
                                     else [flag, text])
        assert getattr(config, name) == edge


def test_port_70000_is_refused_with_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, ["--port", "70000"])
    assert "--port (config key port) must be in 0..65535" in err and "not 70000" in err
    assert "--max-frame (config key max_frame) must be in 1024..2147483648" in refused(
        capsys, ["--max-frame", str(2**31 + 1)])
    assert "--metrics-port must differ from --port" in refused(
        capsys, ["--port", "9600", "--metrics-port", "9600"])


def test_usage_errors_are_one_line_and_a_pointer_to_help(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("bogus = 1\n")
    for argv in (["--port", "x"], ["--no-such-flag"], ["--config", str(path)],
                 ["--heartbeat", "-1"]):
        lines = refused(capsys, argv).splitlines()
        assert len(lines) == 2 and lines[0].startswith("cc-server: error: "), lines
        assert lines[1] == "Run 'cc-server --help' for the usage."


def test_help_says_each_default_once() -> None:
    parser = build_parser()
    for action in parser._actions:
        text = action.help or ""
        assert text.count("default") <= 1 and "(default: None)" not in text, text
    text = " ".join(parser.format_help().split())
    assert "(default: the built-in catalog) --" in text    # was "... (default: None)"
    assert "relative paths in it are relative to its folder" in text


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "cc.toml").write_text(
        'catalog = "plans.toml"\nusers = "sub/users.toml"\ndata-dir = "state"\n'
        'tls_cert = "/abs/cert.pem"\ntls_key = "key.pem"\ntls_client_ca = "../ca.pem"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config, _ = config_from_args(["--config", "../etc/cc.toml", "--tls-key", "flag.pem"])
    assert Path(config.catalog or "") == folder / "plans.toml"
    assert Path(config.users or "") == folder / "sub" / "users.toml"
    assert Path(config.data_dir or "") == folder / "state"
    assert config.tls_cert == "/abs/cert.pem"
    assert Path(config.tls_client_ca or "").resolve() == tmp_path / "ca.pem"
    assert config.tls_key == "flag.pem"          # a flag stays relative to the cwd
    expected = {"catalog", "users", "data_dir", "tls_cert", "tls_key", "tls_client_ca"}
    assert expected == PATH_SETTINGS


def test_a_busy_metrics_port_is_named_as_the_metrics_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "cc_server", "--port", "0",
                              "--metrics-port", str(port)],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port} (--metrics-host/--metrics-port): " \
               "address already in use" in out.stderr, out.stderr
        out = subprocess.run([sys.executable, "-m", "cc_server", "--port", str(port)],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port} (--host/--port): address already in use" \
               in out.stderr, out.stderr


def test_json_log_values_have_json_types() -> None:
    record = logging.LogRecord(
        "cc_server", logging.INFO, __file__, 1,
        "event=x tls=%s ok=%s none=%s n=%d ratio=%.2f big=%s odd=%s id=%s",
        (False, True, None, 7, 0.5, "1e999", "1_000", "s-01"), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["tls"] is False and line["ok"] is True and line["none"] is None
    assert line["n"] == 7 and line["ratio"] == 0.5
    assert (line["big"], line["odd"], line["id"]) == ("1e999", "1_000", "s-01")


def test_the_started_line_in_json_says_tls_as_a_boolean() -> None:
    sp = ServerProcess("--log-format", "json").start()
    assert sp.stop() == 0
    started = next(json.loads(line) for line in sp.log if '"started"' in line)
    assert started["tls"] is False and isinstance(started["port"], int)
