"""Server settings: one dataclass, filled from defaults, a config file and flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

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
    idle_timeout: float = 0.0               # seconds without a request; 0 = never
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 10_000
    max_in_flight: int = 1024               # unanswered requests per connection
    max_subrequests: int = 64               # sub-requests per container
    write_buffer_high: int = 4 * 1024 * 1024
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
    # housekeeping
    tick: float = 0.05                      # expiry and renewal timer period, seconds
    log_level: str = "info"
    log_format: str = "text"                # text | json
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        """Every setting name."""
        return [f.name for f in fields(cls) if f.name != "extra"]
