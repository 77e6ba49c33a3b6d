"""cc-server with a fault injected in the engine between two sub-requests (tests only).

`python -m tests.faultserver ARGS...` runs cc-server with ARGS; a sub-request whose
reservation id is "boom" raises RuntimeError after the sub-requests before it were applied.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Compiled (mypyc) classes cannot be patched: this helper always runs the pure-Python build.
os.environ["CC_PURE_PYTHON"] = "1"

from cc_server import app
from cc_server.engine import Engine

_original = Engine._sub


def _faulty_sub(self: Engine, op: Any, sub: Any) -> Any:
    if sub.reservation_id == "boom":
        raise RuntimeError("injected fault between two sub-requests")
    return _original(self, op, sub)


Engine._sub = _faulty_sub  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(app.main())
