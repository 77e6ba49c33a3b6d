"""Diameter Gy onto the engine: a CCR becomes a start, update or stop container, its
outcome becomes the CCA. No IO: `diameter_transport.py` feeds it decoded CCRs.

One credit-control session (Session-Id) is one session here; one Rating-Group is one
reservation in it, reservation id "RG<n>" (a rating group closed and opened again gets
"RG<n>.2", "RG<n>.3", ...). The catalog's `[diameter.rating_groups.<n>]` tables name the
service, the item and the unit AVP that fills the item's quantity. Every choice is in
DIAMETER.md.

Exactly once: the container's operation id is a digest of Session-Id and
CC-Request-Number, so the CCR sent again (with or without the T bit) finds its stored
outcome and gets the same CCA, built again from it (RFC 6733 App. C), never a second
charge and never 5012.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from cc_diameter import codes as c
from cc_diameter.cc import Cca, Ccr, Mscc, Units
from cc_diameter.codec import Avp, Message
from cc_diameter.errors import AvpError
from cc_diameter.fields import error_answer
from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.items import MAX_ID_LENGTH, ChargeableItem

from .dedup import Reply
from .dispatch import Dispatcher  # imported at run time: compiled, the classes must exist
from .engine import Session
from .faults import DiameterTraffic, Request, Rule
from .gy_config import GySettings, RatingGroup

_T_RESULT: Final = int(m.MsgType.EXECUTE_RESULT)
#: whole-request errors of the engine -> top-level Result-Code (anything else: 5012)
TOP_LEVEL: Final[dict[str, int]] = {
    ErrorCode.USER_UNKNOWN: c.DIAMETER_USER_UNKNOWN,
    ErrorCode.SESSION_NOT_FOUND: c.DIAMETER_UNKNOWN_SESSION_ID,
    ErrorCode.UNKNOWN_CHARGEABLE_ITEM: c.DIAMETER_RATING_FAILED,
    ErrorCode.CREDIT_LIMIT_REACHED: c.DIAMETER_CREDIT_LIMIT_REACHED,
    ErrorCode.TOO_MANY_REQUESTS: c.DIAMETER_TOO_BUSY,
}
KINDS: Final = {c.INITIAL_REQUEST: m.ContainerKind.START,
                c.UPDATE_REQUEST: m.ContainerKind.UPDATE,
                c.TERMINATION_REQUEST: m.ContainerKind.STOP}
REQUEST_TYPE_NAMES: Final = {c.INITIAL_REQUEST: "INITIAL", c.UPDATE_REQUEST: "UPDATE",
                              c.TERMINATION_REQUEST: "TERMINATION",
                              c.EVENT_REQUEST: "EVENT"}
_ERROR: Final = frozenset({"error"})
_new_tuple: Final = tuple.__new__     # a Final alias is a C static compiled (buildinfo.py)
_UINT64_MAX: Final = 2**64 - 1
#: enum lookups done once, not per CCR (`Resolution(value)` and `.value` are Python calls)
_RESOLUTIONS: Final[dict[str, m.Resolution]] = {r.value: r for r in m.Resolution}
_KIND_NAMES: Final[dict[m.ContainerKind, str]] = {k: k.value for k in m.ContainerKind}
ENDED_KEPT: Final = 100_000   # ended Diameter sessions remembered for their duplicates


def operation_id(session_id: str, request_number: int) -> bytes:
    """The container's operation id: 16 bytes of digest of Session-Id and the number."""
    return hashlib.blake2b(f"{session_id}\0{request_number}".encode(),
                           digest_size=16).digest()


def new_item(name: str, quantity_name: str, quantity: int | Decimal) -> ChargeableItem:
    """The item {quantity_name: quantity} of `name`, without the public constructor's
    checks when the values are known good (a configured item name and a quantity from a
    decoded Unsigned AVP, or a finite Decimal made from one); anything else goes through
    `ChargeableItem`, which raises as before."""
    if (type(quantity) is Decimal or (type(quantity) is int and 0 <= quantity <= _UINT64_MAX)) \
            and 0 < len(name) <= MAX_ID_LENGTH and 0 < len(quantity_name) <= MAX_ID_LENGTH:
        item: ChargeableItem = _new_tuple(ChargeableItem, (name, {quantity_name: quantity}))
        return item
    return ChargeableItem(name, {quantity_name: quantity})


def _sub(action: m.Action, reservation_id: str, item: ChargeableItem | None = None,
         next_item: ChargeableItem | None = None, ttl: int | None = None,
         resolution: m.Resolution | None = None,
         property_to_inverse: str | None = None) -> m.SubRequest:
    """`m.SubRequest(...)` without its interpreted NamedTuple `__new__`."""
    sub: m.SubRequest = _new_tuple(m.SubRequest, (
        action, reservation_id, item, next_item, ttl, resolution, property_to_inverse))
    return sub


def rating_group_of(reservation_id: str) -> int | None:
    """The Rating-Group of a reservation id "RG<n>" or "RG<n>.<k>"."""
    if not reservation_id.startswith("RG"):
        return None
    head = reservation_id[2:].partition(".")[0]
    return int(head) if head.isdigit() else None


@dataclass
class GyPeer:
    """The dispatcher's view of a Diameter peer; `user` (what fault rules match as
    `conn_user`) is its Origin-Host."""

    name: str
    roles: frozenset[str] = frozenset({"charging"})
    user: str | None = None
    #: the CCR being served, for the fault rules' Diameter fields (dispatch.py reads it)
    traffic: DiameterTraffic | None = None


@dataclass
class GyFrontEnd:
    """Serves CCRs with the dispatcher (and so the engine, the log, exactly-once)."""

    dispatcher: Dispatcher
    settings: GySettings
    rating_groups: dict[int, RatingGroup]
    #: Session-Id -> (user, service) of ended sessions, for their late duplicates
    ended: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    #: Session-Id -> (user, service) of sessions whose CCR-I reserved nothing yet
    pending: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    counts: dict[str, int] = field(default_factory=dict)
    #: Session-Id -> Origin-Host of the peer that sent its latest CCR (where RARs go)
    holders: dict[str, str] = field(default_factory=dict)
    #: a fault rule that fired for the CCR just handled, with the CCA it holds back
    #: (None for a rule that stopped the request before it ran): see `take_fault`
    fault: tuple[Rule, Message | None] | None = None
    _taken: tuple[Rule, Reply | None] | None = None
    #: Rating-Group -> Result-Code a `result_code` fault rule (scope mscc) forces on the
    #: CCR being served: those MSCCs are left out of the container
    _forced: dict[int, int] = field(default_factory=dict)

    def take_fault(self) -> tuple[Rule, Message | None] | None:
        """The fault rule that fired for the CCR just handled (then cleared): the
        transport drops, delays or closes as it says instead of sending the answer."""
        fault, self.fault = self.fault, None
        return fault

    def handle_ccr(self, peer: GyPeer, msg: Message) -> Message | None:
        """The CCA (or error answer) to one CCR; None when a fault rule took it."""
        self.fault = None
        self._forced.clear()
        try:
            answer = self._handle(peer, msg)
        finally:
            peer.traffic = None
        sid = msg.find(c.SESSION_ID)
        host = msg.find(c.ORIGIN_HOST)
        if sid is not None and host is not None:
            key = sid.data.decode("utf-8", "replace")
            if key in self.dispatcher.engine.sessions:
                self.holders[key] = host.data.decode("ascii", "replace")
            else:
                self.holders.pop(key, None)
        return answer

    def _handle(self, peer: GyPeer, msg: Message) -> Message | None:
        local = self.settings
        try:
            ccr = Ccr.from_message(msg, local.reject_unknown_mandatory)
        except AvpError as exc:
            self._count(f"avp_error.{exc.result_code}")
            return error_answer(msg, exc.result_code, local.origin_host, local.origin_realm,
                                exc.message, exc.failed)
        controls = self.dispatcher.controls
        if controls is not None and controls.faults.active:   # only fault rules read it
            peer.traffic = DiameterTraffic(
                "CCR", REQUEST_TYPE_NAMES.get(ccr.request_type),
                tuple(x.rating_group for x in ccr.mscc if x.rating_group is not None),
                ccr.origin_host)
        kind = KINDS.get(ccr.request_type)
        if kind is None:
            forced = self._result_code_rules(peer, msg, ccr, ccr.subscriber(), None, None)
            if forced is not None:
                return forced
            return self._answer(msg, ccr, c.DIAMETER_UNABLE_TO_COMPLY,
                                error="event charging (CC-Request-Type 4) is not supported")
        if ccr.auth_application_id != c.APP_CREDIT_CONTROL:
            return self._answer(msg, ccr, c.DIAMETER_APPLICATION_UNSUPPORTED)
        session = self.dispatcher.engine.sessions.get(ccr.session_id)
        owner = self._owner(ccr, kind, session)
        if owner is None:
            if kind is m.ContainerKind.START:
                failed = Avp.of_group(c.SUBSCRIPTION_ID, [
                    Avp.of_i32(c.SUBSCRIPTION_ID_TYPE, 0), Avp.of_str(c.SUBSCRIPTION_ID_DATA, "")])
                return self._answer(msg, ccr, c.DIAMETER_MISSING_AVP, failed=failed,
                                    error="CCR-Initial without Subscription-Id")
            return self._answer(msg, ccr, c.DIAMETER_UNKNOWN_SESSION_ID,
                                error=f"no session {ccr.session_id!r}")
        user, service = owner
        op = operation_id(ccr.session_id, ccr.request_number)
        stored = self.dispatcher.dedup.get((user, op))
        if stored is not True and stored is not False:
            self._count("repeated")
            return self._cca(msg, ccr, service, stored)
        forced = self._result_code_rules(peer, msg, ccr, user, service, str(kind))
        if forced is not None:
            return forced
        pending = self.pending.get(ccr.session_id)
        if session is None and kind is not m.ContainerKind.START:
            if pending is None:
                return self._outcome(msg, ccr, service, self._run(
                    peer, ccr, kind, op, user, service, None))
            if kind is m.ContainerKind.STOP:       # it never reserved anything: ends here
                del self.pending[ccr.session_id]
                self._ended(ccr.session_id, user, service)
                return self._cca(msg, ccr, service, None)
            kind = m.ContainerKind.START            # its first reservation starts it
        container = self._container(ccr, kind, op, user, service, session)
        if kind is m.ContainerKind.START and not container.subs:
            # the engine starts a session with its first reservation: until then the
            # session is only known here (not across a restart; DIAMETER.md)
            if user not in self.dispatcher.engine.accounts:
                return self._answer(msg, ccr, c.DIAMETER_USER_UNKNOWN,
                                    error=f"no subscriber {user!r}")
            self.pending[ccr.session_id] = (user, service)
            if len(self.pending) > ENDED_KEPT:
                self.pending.popitem(last=False)
            return self._cca(msg, ccr, service, None)
        reply = self._execute(peer, container)
        result = reply if reply is not None else self._held_reply()
        if result is not None and result[0] == _T_RESULT:
            self.pending.pop(ccr.session_id, None)
            if kind is m.ContainerKind.STOP:
                self._ended(ccr.session_id, user, service)
        return self._outcome(msg, ccr, service, reply)

    def _result_code_rules(self, peer: GyPeer, msg: Message, ccr: Ccr, user: str | None,
                           service: str | None, kind: str | None) -> Message | None:
        """Fire the fault rules with a `result_code`: the error answer of a scope
        container one (nothing applied), or None, with the MSCCs a scope mscc one takes
        noted in `_forced`."""
        controls = self.dispatcher.controls
        traffic = peer.traffic
        if controls is None or not controls.faults.active or traffic is None:
            return None
        fired = controls.faults.fire(Request("EXECUTE", user, service, ccr.session_id, kind,
                                             conn_user=peer.user, **traffic.fields()),
                                     _ERROR, result_codes=True)
        for rule in fired:
            self._count("fault.error")
            code = rule.result_code
            assert code is not None
            if rule.scope != "mscc":
                self._forced.clear()
                return self._answer(msg, ccr, code, error=f"injected by fault rule {rule.id}")
            for mscc in ccr.mscc:
                rg = mscc.rating_group
                if rg is not None and rule.rating_group in (None, rg):
                    self._forced.setdefault(rg, code)
        return None

    def _held_reply(self) -> Reply | None:
        taken = self._taken
        return taken[1] if taken is not None else None

    def _outcome(self, msg: Message, ccr: Ccr, service: str,
                 reply: Reply | None) -> Message | None:
        """The CCA, or None with `fault` set when a fault rule took the reply."""
        taken, self._taken = self._taken, None
        if taken is None:
            assert reply is not None
            return self._cca(msg, ccr, service, reply)
        rule, held = taken
        self.fault = (rule, None if held is None else self._cca(msg, ccr, service, held))
        return None

    def _run(self, peer: GyPeer, ccr: Ccr, kind: m.ContainerKind, op: bytes, user: str,
             service: str, session: Session | None) -> Reply | None:
        return self._execute(peer, self._container(ccr, kind, op, user, service, session))

    def _execute(self, peer: GyPeer, container: m.Execute) -> Reply | None:
        self._count(_KIND_NAMES[container.kind])
        reply = self.dispatcher.execute_local(peer, container)
        taken = self.dispatcher.take_fault()
        if taken is not None:
            self._count(f"fault.{taken[0].action}")
            self._taken = taken
        return reply

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _ended(self, session_id: str, user: str, service: str) -> None:
        ended = self.ended
        ended[session_id] = (user, service)
        if len(ended) > ENDED_KEPT:
            ended.popitem(last=False)

    def _owner(self, ccr: Ccr, kind: m.ContainerKind,
               session: Session | None) -> tuple[str, str] | None:
        """(user, service) of the CCR's session; None when it names none."""
        if session is not None and kind is not m.ContainerKind.START:
            return session.user_id, session.service_id
        known = self.ended.get(ccr.session_id) or self.pending.get(ccr.session_id)
        if known is not None and kind is not m.ContainerKind.START:
            return known
        user = ccr.subscriber() or ccr.user_name
        if not user:
            return None
        return user, self._service(ccr)

    def _service(self, ccr: Ccr) -> str:
        """The service of a new session: its first known rating group's."""
        for mscc in ccr.mscc:
            group = self.rating_groups.get(mscc.rating_group) \
                if mscc.rating_group is not None else None
            if group is not None:
                return group.service
        return self.settings.service

    # ------------------------------------------------------------------ CCR -> container

    def _quantity_name(self, group: RatingGroup, service: str) -> str | None:
        """The name of the quantity property of the group's item in `service`; None when
        the group is not charged there (another service, or an item the catalog lacks)."""
        if group.service != service:
            return None
        plan = self.dispatcher.engine.catalog.plan(service, group.item)
        return None if plan is None else plan.quantity

    def _requested(self, group: RatingGroup, units: Units | None) -> int | None:
        if units is None:
            return None
        value = units.get(group.units)
        return group.quota if value is None else value

    @staticmethod
    def _used(group: RatingGroup, used: list[Units]) -> int | None:
        values = [u.get(group.units) for u in used]
        present = [v for v in values if v is not None]
        return sum(present) if present or used else None

    def _container(self, ccr: Ccr, kind: m.ContainerKind, op: bytes, user: str, service: str,
                   session: Session | None) -> m.Execute:
        ttl = self.settings.validity_time + self.settings.ttl_grace
        resolution = _RESOLUTIONS.get(self.settings.on_expiry) \
            or m.Resolution(self.settings.on_expiry)
        subs: list[m.SubRequest] = []
        listed: set[str] = set()
        forced = self._forced
        for mscc in ccr.mscc:
            rg = mscc.rating_group
            group = self.rating_groups.get(rg) if rg is not None else None
            if group is None or rg is None or rg in forced:
                continue
            quantity_name = self._quantity_name(group, service)
            if quantity_name is None:
                continue
            item = group.item
            requested = self._requested(group, mscc.requested)
            used = self._used(group, mscc.used)
            rid, is_open = self._reservation(session, rg)
            listed.add(rid)
            if kind is not m.ContainerKind.START and not is_open and used is not None \
                    and (requested is None or kind is m.ContainerKind.STOP):
                # usage of a rating group with no open reservation: the engine says so
                subs.append(_sub(m.Action.CONFIRM, rid, new_item(
                    item, quantity_name, group.quantity(used))))
                continue
            if kind is m.ContainerKind.START or not is_open:
                if requested is None or kind is m.ContainerKind.STOP:
                    continue
                subs.append(_sub(m.Action.RESERVE, rid, new_item(
                    item, quantity_name, group.quantity(requested)),
                                 None, ttl, resolution, quantity_name))
            elif kind is m.ContainerKind.STOP or requested is None:
                if used is not None or kind is m.ContainerKind.STOP:
                    subs.append(_sub(m.Action.CONFIRM, rid, new_item(
                        item, quantity_name, group.quantity(used or 0))))
            else:
                subs.append(_sub(
                    m.Action.CONFIRM_AND_RESERVE, rid,
                    new_item(item, quantity_name, group.quantity(used or 0)),
                    new_item(item, quantity_name, group.quantity(requested)),
                    ttl, resolution,
                    quantity_name))
        if kind is m.ContainerKind.STOP and session is not None:
            for cs in session.charging_sessions():   # rating groups not reported: cancelled
                if cs.open and cs.reservation_id not in listed:
                    subs.append(_sub(m.Action.CANCEL, cs.reservation_id))
        start = kind is m.ContainerKind.START
        execute: m.Execute = _new_tuple(m.Execute, (
            op, kind, user, service, ccr.session_id, tuple(subs),
            self.settings.listener_id if start else None, None,
            m.ResultType.NO_TRANSACTIONS if start else None, None, None))
        return execute

    @staticmethod
    def _reservation(session: Session | None, rg: int) -> tuple[str, bool]:
        """(reservation id of the rating group, whether it is open): its open one, else a
        new id ("RG<n>", then "RG<n>.2", ...)."""
        base = f"RG{rg}"
        if session is None:
            return base, False
        taken = 0
        for cs in session.charging_sessions():
            if rating_group_of(cs.reservation_id) == rg:
                if cs.open:
                    return cs.reservation_id, True
                taken += 1
        return (base if taken == 0 else f"{base}.{taken + 1}"), False

    # ------------------------------------------------------------------ outcome -> CCA

    def _answer(self, msg: Message, ccr: Ccr, result: int, *, mscc: list[Mscc] | None = None,
                error: str | None = None, failed: Avp | None = None) -> Message:
        local = self.settings
        cca = Cca(ccr.session_id, result, local.origin_host, local.origin_realm,
                  ccr.request_type, ccr.request_number, mscc=mscc or [],
                  error_message=error, failed_avp=failed)
        self._count(f"result.{result}")
        return cca.answer(msg)

    def _cca(self, msg: Message, ccr: Ccr, service: str, reply: Reply | None) -> Message:
        """The CCA from the container's outcome (None: no container was needed)."""
        decoded = m.ExecuteResult(ccr.session_id, ()) if reply is None \
            else codec.decode_body(reply[0], reply[1])
        if isinstance(decoded, m.Error):
            return self._answer(msg, ccr, TOP_LEVEL.get(decoded.code,
                                                         c.DIAMETER_UNABLE_TO_COMPLY),
                                error=decoded.message)
        assert isinstance(decoded, m.ExecuteResult)
        by_rg: dict[int, m.Outcome] = {}
        for outcome in decoded.outcomes:
            rg = rating_group_of(outcome.reservation_id)
            if rg is not None:
                by_rg.setdefault(rg, outcome)
        answers = [self._mscc(ccr, mscc, service, by_rg) for mscc in ccr.mscc]
        return self._answer(msg, ccr, c.DIAMETER_SUCCESS, mscc=answers)

    def _mscc(self, ccr: Ccr, mscc: Mscc, service: str,
              by_rg: dict[int, m.Outcome]) -> Mscc:
        rg = mscc.rating_group
        answer = Mscc(rating_group=rg, service_identifiers=list(mscc.service_identifiers))
        if rg is not None and rg in self._forced:
            answer.result_code = self._forced[rg]       # a fault rule's (scope mscc)
            return answer
        group = self.rating_groups.get(rg) if rg is not None else None
        if group is None or rg is None or self._quantity_name(group, service) is None:
            answer.result_code = c.DIAMETER_RATING_FAILED
            return answer
        outcome = by_rg.get(rg)
        if outcome is None:
            answer.result_code = c.DIAMETER_SUCCESS
            return answer
        if outcome.error is not None:
            answer.result_code = c.DIAMETER_CREDIT_LIMIT_REACHED \
                if outcome.error == ErrorCode.CREDIT_LIMIT_REACHED else c.DIAMETER_RATING_FAILED
            if outcome.error == ErrorCode.CREDIT_LIMIT_REACHED:
                answer.final_unit_action = c.FUA_TERMINATE
            return answer
        answer.result_code = c.DIAMETER_SUCCESS
        granted = outcome.granted_item
        if outcome.reserve_result is not None and granted is not None:
            amount = group.units_of(next(iter(granted.properties.values()), 0))
            answer.granted = _units(group.units, amount)
            answer.validity_time = self.settings.validity_time
            requested = self._requested(group, mscc.requested)
            if requested is not None and amount < requested:
                answer.final_unit_action = c.FUA_TERMINATE   # the last units: no more after
        return answer


def _units(name: str, amount: int) -> Units:
    units = Units()
    setattr(units, name, amount)
    return units


__all__ = ["GyFrontEnd", "GyPeer", "operation_id", "rating_group_of"]
