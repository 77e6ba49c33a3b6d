"""cc-bench, the load tester: `cc-bench --help`, or `python -m cc_bench --help`.

Closed loop (`--concurrency` sessions in flight over `--connections` connections) or open
loop (`--rate` sessions per second, latency from each session's intended send time), a
server of its own (`--spawn`) or a running one (`--server`); a table per operation kind,
`--json` with the histograms, `--plot` for a latency chart. It is a plain user of the
public client API.
"""

from .cli import main

__all__ = ["main"]
