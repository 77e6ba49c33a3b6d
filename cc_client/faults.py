"""`client.admin.faults`: a server's fault rules (its test controls; role `admin`).

For example::

    async with await client.admin.faults.add("drop-reply", kind="update", times=1) as rule:
        ...                                   # the rule is removed when the block ends
    rule = await client.admin.faults.add("busy", kind="start")   # rule.id, rule.fields
    await rule.remove()
    for listed in await client.admin.faults.list():
        print(listed["id"], listed["action"], listed["fired"])

`add` returns a `FaultRule`, the client's twin of the in-process `server.faults.add(...)`
handle: its `id` (it also is that int), `fields`, `remove()` and use as a context
manager (`async with` here, `with` on the blocking client).

Rule fields (every one optional but `action`): the match `user`, `service`, `session`
(globs for user and session), `kind`, `sub_action`, `type`, `listener`, `conn_user`;
the schedule `times`, `every`, `probability`, `seed`, `after`; the action's `code`,
`scope`, `seconds`, `jitter`. A server started with `--no-test-controls` refuses every
call with FORBIDDEN.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from .operator import OperatorAPI

#: other names accepted for rule fields (the argument names of `client.admin.record`)
ALIASES = {"user_id": "user", "session_id": "session"}


def rule_fields(action: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The rule map: `action` and the fields given (aliases renamed, None left out)."""
    rule = {ALIASES.get(k, k): v for k, v in fields.items() if v is not None}
    if action is not None:
        rule["action"] = action
    return rule


class RuleId(int):
    """A fault rule as the server added it: an int (its id) with its `fields`. The
    async `FaultRule` and the blocking `SyncFaultRule` add `remove()` and the context
    manager."""

    fields: dict[str, Any]

    def __new__(cls, fields: dict[str, Any]) -> Self:
        rule = super().__new__(cls, int(fields["id"]))
        rule.fields = fields
        return rule

    @property
    def id(self) -> int:
        """The rule id."""
        return int(self)

    @property
    def action(self) -> str:
        """The rule's action."""
        return str(self.fields["action"])


class FaultRule(RuleId):
    """A rule added with `client.admin.faults.add`: an int (its id) that can remove
    itself. `fields` is the rule as the server added it. `async with` removes it when
    the block ends."""

    _faults: FaultsAPI

    def __new__(cls, faults: FaultsAPI, fields: dict[str, Any]) -> Self:
        rule = super().__new__(cls, fields)
        rule._faults = faults
        return rule

    async def remove(self) -> bool:
        """Remove the rule; False when it was already gone."""
        return await self._faults.remove(self.id)

    async def __aenter__(self) -> FaultRule:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.remove()


class FaultsAPI:
    """Add, list, remove and clear a server's fault rules."""

    def __init__(self, admin: OperatorAPI) -> None:
        self._admin = admin

    async def add(self, action: str | None = None, **fields: Any) -> FaultRule:
        """Add a rule; returns it as a `FaultRule` (an int, its id; InvalidRequest for a
        bad field). `user_id` and `session_id` are other names of `user` and `session`."""
        added: dict[str, Any] = await self._admin._run("fault_add",
                                                       rule=rule_fields(action, fields))
        return FaultRule(self, added)

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
