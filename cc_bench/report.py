"""The result of a run: one JSON-ready dict (`--json`), and the text report made from it."""

from __future__ import annotations

import json
from typing import Any

from protocol import buildinfo

from .histogram import Histogram
from .settings import Settings
from .workload import CONTAINER_KINDS, Workload

PCTS = (50.0, 90.0, 99.0, 99.9)
PCT_NAMES = ("p50", "p90", "p99", "p99.9")
SCHEMA = "cc-bench/1"
#: above this share of a core the load generator warns that the figures are partly its own
BUSY_PCT = 80


def _latency_ms(h: Histogram) -> dict[str, float]:
    values = h.percentiles(PCTS)
    out = {"min": h.min / 1e6, "mean": h.mean / 1e6}
    out.update({name: values[p] / 1e6 for name, p in zip(PCT_NAMES, PCTS, strict=True)})
    out["max"] = h.max / 1e6
    return {k: round(v, 4) for k, v in out.items()}


def _per_op(cpu: float | None, ops: int) -> float | None:
    return None if cpu is None or not ops else round(cpu * 1e6 / ops, 2)


def _pct_core(cpu: float | None, elapsed: float) -> float | None:
    return None if cpu is None or elapsed <= 0 else round(100 * cpu / elapsed, 1)


def build_result(s: Settings, w: Workload, client_cpu: float, server_cpu: float | None,
                 timeline: list[dict[str, Any]], env: dict[str, Any],
                 server_stats: dict[str, Any] | None, timed_out: bool, *,
                 live: dict[str, Any] | None = None,
                 memory: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Everything about the run, JSON-ready. `live`: the live sessions' figures
    (`LiveSessions.to_dict`); `memory`: the spawned server's RSS/HWM by moment."""
    elapsed = w.elapsed
    per_s = (lambda n: round(n / elapsed, 1)) if elapsed > 0 else (lambda n: 0.0)
    operations: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    containers = Histogram()
    for name, st in w.stats.items():
        h = st.hist
        if name in CONTAINER_KINDS:
            containers.merge(h)
        operations[name] = {"count": h.total, "ops_per_s": per_s(h.total),
                            "errors": st.error_count, "errors_by_code": dict(st.errors),
                            "latency_ms": _latency_ms(h)}
        histograms[name] = h.to_dict()
    is_ping = s.op == "ping"
    main = w.stats["ping"].hist if is_ping else containers
    if not is_ping:
        operations["containers"] = {
            "count": containers.total, "ops_per_s": per_s(containers.total),
            "errors": sum(w.stats[k].error_count for k in CONTAINER_KINDS),
            "errors_by_code": {}, "latency_ms": _latency_ms(containers)}
        histograms["containers"] = containers.to_dict()
    container_ops = 0 if is_ping else containers.total
    achieved = per_s(w.completed)
    summary = {
        "elapsed_s": round(elapsed, 4),
        "ops": main.total, "ops_per_s": per_s(main.total),
        "container_ops": container_ops, "container_ops_per_s": per_s(container_ops),
        "sessions": 0 if is_ping else w.completed,
        "sessions_per_s": 0.0 if is_ping else achieved,
        "offered_rate": s.rate, "achieved_rate": achieved,
        "achieved_ratio": round(achieved / s.rate, 4) if s.rate else None,
        "rate_unit": "pings per second" if is_ping else "sessions per second",
        "latency_ms": _latency_ms(main),
        "errors": sum(st.error_count for st in w.stats.values()),
        "errors_by_code": {k: dict(st.errors) for k, st in w.stats.items() if st.errors},
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_us_per_op": _per_op(client_cpu, main.total),
        "client_cpu_pct_of_core": _pct_core(client_cpu, elapsed),
        # open loop: the pacer's timer wake-ups over the whole run (warm-up included)
        "pacer_wakeups": w.pacer.wakeups if w.pacer is not None else None,
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cpu_us_per_op": _per_op(server_cpu, main.total),
        "server_cpu_pct_of_core": _pct_core(server_cpu, elapsed),
        "notifications": w.stats["notification"].hist.total if s.renewals else 0,
        "renewal_sessions_starved": w.starved,
        "live_sessions": live["opened"] if live else 0,
        "live": live,
        "server_memory": memory,
        "timed_out": timed_out,
        "aborted": w.aborted,
        # the server's own build, from its stats (None: they could not be fetched)
        "server_build": ((server_stats or {}).get("server") or {}).get("build"),
    }
    return {"schema": SCHEMA, "settings": s.to_dict(), "environment": env, "summary": summary,
            "operations": operations, "histograms": histograms, "timeline": timeline,
            "server_stats": server_stats}


def write_json(result: dict[str, Any], path: str) -> None:
    """Write the result to `path` ('-' for stdout)."""
    text = json.dumps(result, indent=1, default=str)
    if path == "-":
        print(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


# ------------------------------------------------------------------------ text

def describe_settings(s: Settings) -> list[str]:
    """The settings block printed before the results."""
    lines = []
    if s.op == "ping":
        lines.append("operation:  ping (PING/PONG through the client and server stacks)")
    else:
        ups = f"{s.updates} update{'s' if s.updates != 1 else ''}"
        prop = s.quantity_property or "<the catalog's quantity property>"
        gy = " (Diameter Gy: CCR-I + CCR-U + CCR-T, one MSCC per reservation)" \
            if s.protocol == "diameter" else ""
        lines.append(f"session:    start + {ups} + stop{gy}, {s.reservations} reservation"
                     f"{'s' if s.reservations != 1 else ''} each; {s.service}/{s.item} "
                     f"{prop}={s.quantity}, ttl {s.ttl:g} s, result type "
                     f"{s.result_type or 'server default'}")
        extra = f" + {-(-s.live_sessions // s.users):,} live reservations' worth" \
            if s.live_sessions else ""
        lines.append(f"users:      {s.users:,} subscribers, balance {s.balance}{extra}")
        if s.live_sessions:
            lines.append(f"live:       {s.live_sessions:,} sessions held open during the run, "
                         f"1 reservation each, ttl {s.live_ttl:g} s")
        if s.renewals:
            lines.append(f"renewals:   every {round(1 / s.renewal_ratio)}th session starved and "
                         f"topped up; listener id {s.listener_id}")
    conns = f"{s.connections} connection{'s' if s.connections != 1 else ''}"
    if s.open_loop:
        what = "pings" if s.op == "ping" else "sessions"
        lines.append(f"load:       open loop, {s.rate:,g} {what} per second offered over "
                     f"{conns}, at most {s.in_flight:,} in flight")
    else:
        unit = "pings" if s.op == "ping" else "sessions"
        lines.append(f"load:       closed loop, {s.in_flight:,} {unit} in flight over {conns}")
    ends = []
    if s.sessions is not None:
        ends.append(f"{s.sessions:,} {'pings' if s.op == 'ping' else 'sessions'}")
    if s.run_duration is not None:
        ends.append(f"{s.run_duration:g} s")
    first = " (whichever first)" if len(ends) > 1 else ""
    lines.append(f"length:     {' or '.join(ends)}{first}, warm-up {s.warmup:g} s, "
                 f"hard limit {s.hard_timeout:g} s")
    lines.append(f"build:      {buildinfo.describe()} (this client's; the server's follows "
                 "the results)")
    return lines


def _cells(name: str, op: dict[str, Any]) -> list[str]:
    lat = op["latency_ms"]
    return [name, f"{op['count']:,}", f"{op['ops_per_s']:,.0f}",
            *(f"{lat[k]:.3f}" for k in (*PCT_NAMES, "max")), f"{op['errors']:,}"]


def format_table(result: dict[str, Any]) -> list[str]:
    """Per operation kind: count, ops/s, p50, p90, p99, p99.9, max, errors."""
    header = ["kind", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
              "errors"]
    ops = result["operations"]
    order = [k for k in ("ping", "start", "update", "stop", "containers", "top_up",
                         "notification") if k in ops]
    rows = [_cells(k, ops[k]) for k in order]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header)]
    out += [fmt.format(*r) for r in rows]
    return out


def _left_lines(env: dict[str, Any], s: Settings) -> list[str]:
    """What the run left on a server that goes on running, and how to remove it."""
    if env["server"]["spawned"] or s.op != "session":
        return []
    prefix, removed = env.get("run_prefix"), env.get("cleanup")
    if removed:
        return [f"cleanup:    removed {removed['subscribers']:,} subscribers with prefix "
                f"{removed['prefix']!r}, cancelled {removed['sessions']:,} open sessions"]
    return [f"left:       the run's subscribers and sessions (ids starting {prefix}-); "
            f"remove them with: cc-bench cleanup --server {env['server']['address']} "
            f"--prefix {prefix}"]


def format_header(s: Settings) -> str:
    """What is about to run (printed first)."""
    from cc_client import __version__

    target = "spawned server" + (f", data dir {s.data_dir}" if s.data_dir else ", in memory") \
        if s.spawn else f"server {s.server}"
    return "\n".join([f"cc-bench {__version__}: {target}", *describe_settings(s)])


def _live_lines(sm: dict[str, Any], s: Settings) -> list[str]:
    """The live sessions and the spawned server's resident memory."""
    lines = []
    live = sm.get("live")
    if live:
        rate = f", {live['open_per_s']:,.0f}/s" if live["open_per_s"] else ""
        closed = f"; {live['closed']:,} closed after" if not s.spawn else ""
        lines.append(f"live:       {live['opened']:,} sessions open during the measurement "
                     f"(opened in {live['open_s']:.1f} s{rate}{closed})")
    memory = sm.get("server_memory") or {}
    first, held, end = (memory.get(k) for k in ("before_live_open", "after_live_open",
                                                 "end_of_measurement"))
    if held and end:
        n = sm["live_sessions"]
        what = f"with {n:,} live sessions open" if n else "before measuring"
        if n and first:
            what += f" ({(held['rss_mib'] - first['rss_mib']) * 1024 / n:,.2f} KiB each)"
        lines.append(f"server RSS: {held['rss_mib']:,.1f} MiB {what}, {end['rss_mib']:,.1f} MiB "
                     f"at the end, peak {end['hwm_mib']:,.1f} MiB")
    elif s.spawn or sm["live_sessions"]:
        lines.append("server RSS: not measured (only with --spawn, on Linux)")
    return lines


def busy_warning(client_pct: float | None) -> str:
    """The warning line when cc-bench was busier than BUSY_PCT of a core (else "")."""
    if client_pct is None or client_pct <= BUSY_PCT:
        return ""
    return (f"warning:    cc-bench itself was busy {client_pct:.0f} % of a core (over "
            f"{BUSY_PCT} %): the throughput and latency are partly the load generator's")


def format_text(result: dict[str, Any], s: Settings) -> str:
    """The results: where, throughput, table, rates, errors, CPU."""
    env, sm = result["environment"], result["summary"]
    srv = env["server"]
    store = f"data dir {srv['data_dir']}" if srv["data_dir"] else "in memory"
    where = f"spawned, pid {srv['pid']}, {store}" if srv["spawned"] else "external"
    lines = [f"server:     {srv['address']} ({where}); client loop {env['loop']}, "
             f"Python {env['python']}, {env['nproc']} CPUs", ""]
    is_ping = s.op == "ping"
    what = "pings" if is_ping else "container operations"
    extra = "" if is_ping else f"; {sm['sessions_per_s']:,.1f} sessions per second"
    lines.append(f"throughput: {sm['ops_per_s']:,.0f} ops/s ({what}{extra}) over "
                 f"{sm['elapsed_s']:.2f} s measured")
    if sm["timed_out"]:
        lines.append("WARNING: the hard time limit ended the run; figures are partial")
    if sm["aborted"]:
        lines.append(f"WARNING: run aborted ({sm['aborted']}); figures are partial")
    lines.append("")
    lines += format_table(result)
    if s.open_loop:
        lines.append("(open loop: start latency counted from each session's intended send time)")
    lines.append("")
    if s.open_loop and sm["offered_rate"]:
        ratio = sm["achieved_ratio"] or 0.0
        lines.append(f"rate:       offered {sm['offered_rate']:,g}, achieved "
                     f"{sm['achieved_rate']:,.1f} {sm['rate_unit']} ({100 * ratio:.1f} %)")
    errors = sm["errors_by_code"]
    if errors:
        parts = [f"{kind} {code} {n:,}" for kind, codes in errors.items()
                 for code, n in sorted(codes.items())]
        lines.append(f"errors:     {sm['errors']:,} ({'; '.join(parts)})")
    else:
        lines.append("errors:     none")
    if s.renewals:
        lines.append(f"renewals:   {sm['renewal_sessions_starved']:,} sessions starved, "
                     f"{sm['notifications']:,} notifications timed from top-up to handler")
    lines += _live_lines(sm, s)
    lines += _left_lines(env, s)
    unit = "ping" if is_ping else "container op"
    if sm.get("server_build"):
        lines.append(f"build:      server {sm['server_build']}, client {buildinfo.build()}")
    if sm["server_cpu_s"] is not None:
        lines.append(f"server CPU: {sm['server_cpu_s']:.2f} s = "
                     f"{sm['server_cpu_us_per_op'] or 0:.1f} us per {unit} "
                     f"({sm['server_cpu_pct_of_core']:.0f} % of one core)")
    else:
        lines.append("server CPU: not measured (only with --spawn)")
    lines.append(f"client CPU: {sm['client_cpu_s']:.2f} s = "
                 f"{sm['client_cpu_us_per_op'] or 0:.1f} us per {unit} "
                 f"({sm['client_cpu_pct_of_core'] or 0:.0f} % of one core)")
    warning = busy_warning(sm["client_cpu_pct_of_core"])
    if warning:
        lines.append(warning)
    machine = env.get("machine")
    if machine:
        ours = sum(sm[k] or 0 for k in ("client_cpu_pct_of_core", "server_cpu_pct_of_core"))
        lines.append(f"machine:    {env['nproc']} CPUs {machine['busy_pct']:.0f} % busy "
                     f"(this run {ours / (env['nproc'] or 1):.0f} %), hypervisor steal "
                     f"{machine['steal_pct']:.1f} %")
    return "\n".join(lines)
