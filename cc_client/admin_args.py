"""cc-admin's numeric argument types: each refuses a value outside its range with an
argparse error (one line, exit 2), never a traceback later on.

    p.add_argument("--limit", type=int_range(1, MAX_LIMIT))
    p.add_argument("--seconds", type=float_range(0, 3600))
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: the largest count a list command takes with --limit (it pages within it)
MAX_LIMIT = 2**31 - 1
#: the largest whole number a fault rule's schedule takes (a msgpack int64)
MAX_COUNT = 2**63 - 1
#: the wire's cap on a fault rule id (ADMIN fault_remove)
MAX_RULE_ID = 2**31
#: a fault rule's longest delay, pause or jitter, seconds (cc_server/faults.py)
MAX_RULE_SECONDS = 3600.0
#: the longest manual clock move, seconds (400 days: PROTOCOL.md, clock_advance)
MAX_CLOCK_STEP = 400 * 86_400.0


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid whole number {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text.strip()} is out of range: give a whole number in {low}..{high}")
        return value
    parse.__name__ = f"int {low}..{high}"
    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in low..high."""
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text.strip()} is out of range: give a number in {low:.15g}..{high:.15g}")
        return value
    parse.__name__ = f"number {low:.15g}..{high:.15g}"
    return parse


# The types cc-admin's options use, by what they count.
LIMIT = int_range(1, MAX_LIMIT)                    # --limit N of the list commands
COUNT = int_range(1, MAX_COUNT)                    # fault rule: times, every
COUNT0 = int_range(0, MAX_COUNT)                   # fault rule: after, seed
LISTENER = int_range(1, 127)                       # a renewal listener id
RATING_GROUP = int_range(0, 0xFFFFFFFF)            # fault rule: Diameter Rating-Group
RESULT_CODE = int_range(1000, 5999)                # fault rule: Diameter Result-Code
RULE_ID = int_range(1, MAX_RULE_ID)                # fault remove ID
PROBABILITY = float_range(0.0, 1.0)
RULE_SECONDS = float_range(0.0, MAX_RULE_SECONDS)  # fault rule: seconds, jitter
CLOCK_SECONDS = float_range(0.0, MAX_CLOCK_STEP)   # clock advance SECONDS
