"""Server settings: one dataclass, filled from defaults, a config file and flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from protocol import messages as m
from protocol.frames import DEFAULT_MAX_FRAME


@dataclass(slots=True)
class ServerConfig:
    """Every setting of cc-server, with its default."""

    host: str = "127.0.0.1"
    port: int = 9500
    catalog: str | None = None
    data_dir: str | None = None
    users: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    loop: str = "auto"                      # auto | uvloop | asyncio
    # transport
    heartbeat: float = 5.0                  # seconds; a peer silent for 3 of them is dead
    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0             # seconds without a request; 0 = never
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 10_000
    max_in_flight: int = 1024               # unanswered requests per connection
    write_buffer_high: int = 4 * 1024 * 1024
    # request limits (at most the wire format's own caps, protocol.messages.MAX_*)
    max_subrequests: int = 64               # sub-requests per container
    max_external_data: int = m.MAX_EXTERNAL_DATA
    max_id_length: int = m.MAX_ID_LENGTH
    max_string_length: int = m.MAX_STRING_LENGTH
    max_properties: int = m.MAX_PROPERTIES
    # authentication back-off: failures per peer address within the window
    auth_max_failures: int = 5
    auth_failure_window: float = 60.0
    auth_backoff_max: float = 5.0
    # exactly once
    dedup_window: float = 600.0
    dedup_max_entries: int = 2_000_000
    # journal kept in memory
    journal_retain: int = 2_000_000
    # durability (--data-dir): a background snapshot after this many log bytes
    snapshot_every: int = 64 * 1024 * 1024
    # renewal notifications
    renewal_send_timeout: float = 0.5
    renewal_resend_interval: float = 1.0
    renewal_resend_attempts: int = 10
    max_pending_notifications: int = 10_000  # per listener id; more are dropped and counted
    # housekeeping
    tick: float = 0.05                      # expiry and renewal timer period, seconds
    log_level: str = "info"
    log_format: str = "text"                # text | json
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        """Every setting name."""
        return [f.name for f in fields(cls) if f.name != "extra"]

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty: nothing)."""
        found = []
        at_least = {"heartbeat": 0.001, "handshake_timeout": 0.001, "idle_timeout": 0.0,
                    "max_frame": 1024, "max_connections": 1, "max_in_flight": 1,
                    "write_buffer_high": 1024, "max_pending_notifications": 1,
                    "auth_max_failures": 1, "auth_failure_window": 0.001,
                    "auth_backoff_max": 0.0, "tick": 0.001}
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                found.append(f"{name} must be at least {low:g}")
        if self.max_frame > 2**31:
            found.append("max_frame must be at most 2 GiB")
        for name, cap in FORMAT_CAPS.items():
            if not 1 <= getattr(self, name) <= cap:
                found.append(f"{name} must be in 1..{cap} (the wire format's own cap)")
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            found.append("--tls-client-ca needs --tls-cert and --tls-key")
        return found


#: Limits that may only be tightened, with the wire format's cap.
FORMAT_CAPS = {"max_subrequests": m.MAX_SUBREQUESTS, "max_id_length": m.MAX_ID_LENGTH,
               "max_string_length": m.MAX_STRING_LENGTH, "max_properties": m.MAX_PROPERTIES,
               "max_external_data": m.MAX_EXTERNAL_DATA}
