"""`client.admin.faults`: a server's fault rules (its test controls; role `admin`).

For example::

    rule_id = await client.admin.faults.add("drop-reply", kind="update", times=1)
    for rule in await client.admin.faults.list():
        print(rule["id"], rule["action"], rule["fired"])

Rule fields (every one optional but `action`): the match `user`, `service`, `session`
(globs for user and session), `kind`, `sub_action`, `type`, `listener`, `conn_user`;
the schedule `times`, `every`, `probability`, `seed`, `after`; the action's `code`,
`scope`, `seconds`, `jitter`. A server started with `--no-test-controls` refuses every
call with FORBIDDEN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .operator import OperatorAPI


class FaultsAPI:
    """Add, list, remove and clear a server's fault rules."""

    def __init__(self, admin: OperatorAPI) -> None:
        self._admin = admin

    async def add(self, action: str, **fields: Any) -> int:
        """Add a rule; returns its id (InvalidArgument-like refusal for a bad field)."""
        rule = {k: v for k, v in {"action": action, **fields}.items() if v is not None}
        added: dict[str, Any] = await self._admin._run("fault_add", rule=rule)
        return int(added["id"])

    async def list(self) -> list[dict[str, Any]]:
        """Every rule as a map, with how often it `matched` and `fired`."""
        rules: list[dict[str, Any]] = await self._admin._run("fault_list")
        return rules

    async def remove(self, rule_id: int) -> bool:
        """Remove one rule; False when there was none with that id."""
        return bool(await self._admin._run("fault_remove", id=rule_id))

    async def clear(self) -> int:
        """Remove every rule; how many there were."""
        return int(await self._admin._run("fault_clear"))
