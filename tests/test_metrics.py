"""/metrics: valid Prometheus text (checked with prometheus_client's parser), every
family with HELP and TYPE."""

from __future__ import annotations

import asyncio
import urllib.request
from bisect import bisect_left
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import cc_client
from cc_server.auth import hash_password
from cc_server.latency import BUCKETS, Histogram
from cc_server.metrics import LABELS, METRICS, UNDOCUMENTED, prometheus
from cc_server.testing import running_server


def families(text: str) -> dict[str, Any]:
    """name -> family, each name once; the parser raises on text that is not valid."""
    found: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in found, f"family {fam.name} split in two"
        found[fam.name] = fam
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            assert line.split()[3] in ("gauge", "counter", "histogram"), line
    return found


def every_statistic() -> dict[str, Any]:
    """A stats tree holding every documented statistic, and two latency histograms."""
    tree: dict[str, Any] = {}
    for path in METRICS:
        parts = path.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[-1] == "*":
            node["TOO_MANY.x" if len(LABELS[".".join(parts[:-1])]) > 1 else "TOO_MANY"] = 3
        else:
            node[parts[-1]] = 1
    tree["latency"] = {"execute": Histogram().to_dict(), "admin": Histogram().to_dict()}
    tree["server"]["version"] = "cc-server 1"        # text: not a metric
    return tree


def test_every_statistic_is_a_family_with_help_and_type() -> None:
    text = prometheus(every_statistic())
    found = families(text)
    for fam in found.values():
        assert fam.documentation and UNDOCUMENTED not in fam.documentation, fam.name
        assert fam.type in ("gauge", "counter", "histogram"), fam.name
    # the examples: a gauge, and the accepted connections as a counter
    assert found["cc_engine_sessions"].type == "gauge"
    assert found["cc_connections_accepted"].type == "counter"
    assert "# TYPE cc_connections_accepted_total counter" in text
    assert "# HELP cc_engine_sessions " in text
    assert found["cc_latency_execute_seconds"].type == "histogram"
    assert 'cc_security_limits_total{code="TOO_MANY"} 3' in text
    assert 'cc_operations_total{kind="TOO_MANY",outcome="x"} 3' in text


def test_an_unknown_statistic_is_still_valid_but_marked() -> None:
    text = prometheus({"new_section": {"thing": 2.5, "flag": True}})
    found = families(text)
    assert found["cc_new_section_thing"].samples[0].value == 2.5
    assert UNDOCUMENTED in found["cc_new_section_flag"].documentation


def users_file(path: Path) -> str:
    path.write_text(f'[users.ops]\npassword = "{hash_password("pw")}"\n'
                    'roles = ["admin", "charging"]\n')
    path.chmod(0o600)   # the server warns about (and refuses weak hashes in) other files
    return str(path)


async def test_the_live_endpoint_parses_and_documents_every_family(tmp_path: Path) -> None:
    async with running_server(metrics_port=0, data_dir=str(tmp_path / "d"),
                              users=users_file(tmp_path / "users.toml")) as server:
        with pytest.raises(cc_client.AuthenticationFailed):
            async with cc_client.connect(server.url, user="ops", password="wrong",
                                         request_timeout=2):
                pass
        async with cc_client.connect(server.url, user="ops", password="pw") as c:
            await c.admin.create_subscriber("u", D(1))
            with pytest.raises(cc_client.ChargingError):
                await c.admin.create_subscriber("u", D(1))
            assert server.server.metrics is not None
            url = f"http://127.0.0.1:{server.server.metrics.port}/metrics"

            def get() -> str:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body: str = response.read().decode()
                    return body

            text = await asyncio.to_thread(get)
    found = families(text)
    undocumented = [f.name for f in found.values()
                    if not f.documentation or UNDOCUMENTED in f.documentation]
    assert not undocumented, f"add these statistics to metrics.METRICS: {undocumented}"
    assert found["cc_security_auth_failed"].samples[0].value == 1
    assert found["cc_durability_log_records"].type == "counter"
    outcomes = {s.labels["outcome"] for s in found["cc_operations"].samples
                if s.labels["kind"] == "create_subscriber"}
    assert "ok" in outcomes and len(outcomes) == 2, outcomes     # ok, and the refusal


@given(st.floats(min_value=0, max_value=10, allow_nan=False) | st.sampled_from(BUCKETS))
def test_a_latency_lands_in_the_bucket_bisect_gives_it(seconds: float) -> None:
    h = Histogram()
    h.observe(seconds)
    assert h.counts.index(1) == bisect_left(BUCKETS, seconds)
