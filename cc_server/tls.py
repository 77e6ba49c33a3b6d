"""TLS for cc-server: the server's SSLContext from --tls-cert / --tls-key / --tls-client-ca,
and the TLS handshake on an accepted socket."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from .config import ServerConfig


class TlsError(ValueError):
    """Certificate or key files that cannot be used (the server refuses to start)."""


def server_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without --tls-cert.

    TLS 1.2 at least; with --tls-client-ca every client must present a certificate
    signed by that CA (mutual TLS), otherwise none is asked for.
    """
    if not config.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _check_pem("--tls-cert", config.tls_cert, "BEGIN CERTIFICATE", "a PEM certificate")
    key_flag, key_file = ("--tls-key", config.tls_key) if config.tls_key else \
        ("--tls-cert", config.tls_cert)
    _check_pem(key_flag, key_file, "PRIVATE KEY", "a PEM private key")
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError(f"cannot use {key_flag} {key_file}: it does not belong to "
                           f"--tls-cert {config.tls_cert}") from None
        raise TlsError(f"cannot use --tls-cert {config.tls_cert} / --tls-key "
                       f"{config.tls_key}: {_reason(exc)}") from None
    except OSError as exc:
        raise TlsError(f"cannot use --tls-cert {config.tls_cert} / --tls-key "
                       f"{config.tls_key}: {_reason(exc)}") from None
    if config.tls_client_ca:
        _check_pem("--tls-client-ca", config.tls_client_ca, "BEGIN CERTIFICATE",
                   "a PEM certificate")
        try:
            context.load_verify_locations(cafile=config.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use --tls-client-ca {config.tls_client_ca}: "
                           f"{_reason(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_pem(flag: str, path: str, marker: str, what: str) -> None:
    """TlsError naming the option, the file and the problem, unless `path` is a readable
    file holding `marker`."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise TlsError(f"cannot use {flag} {path}: no such file") from None
    except IsADirectoryError:
        raise TlsError(f"cannot use {flag} {path}: a directory, not {what}") from None
    except OSError as exc:
        raise TlsError(f"cannot use {flag} {path}: {_reason(exc)}") from None
    if marker not in text:
        raise TlsError(f"cannot use {flag} {path}: not {what} (no \"{marker}\" line)")


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


Done = Callable[[asyncio.Transport | None, bytes], None]


class TlsHandshake:
    """The server side of TLS on an accepted socket (`loop.start_tls`).

    The server listens on plain TCP and starts TLS itself, so that a socket counts
    against the connection limits from accept and its TLS handshake shares the one
    handshake deadline with HELLO. `done` is called once: with the TLS transport and the
    bytes that came through TLS before it (see `take`), or with (None, b"") when the
    handshake failed or was aborted (the socket is then closed).

    Until `done`, the connection hands every byte it receives to `take`. uvloop starts
    reading a new socket right after `connection_made`, whatever that did, so bytes the
    client sent first (its ClientHello) may reach the connection before `start_tls` takes
    the socket over; they go to the TLS layer in the same turn of the loop as the
    takeover (`_hand_over`), so before anything read after it. And a client's first
    frames may come through TLS before `start_tls` has returned.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, raw: asyncio.Transport,
                 protocol: asyncio.Protocol, context: ssl.SSLContext, timeout: float,
                 done: Done) -> None:
        self._loop = loop
        self._raw = raw
        self._protocol = protocol
        self._early: list[bytes] = []     # raw, for the TLS layer
        self._through: list[bytes] = []   # decrypted, for the connection
        raw.pause_reading()     # (the default loop keeps the ClientHello in the socket)
        # the TLS layer's own timer is only a backstop: the connection's deadline rules
        self._task = loop.create_task(self._run(context, timeout + 1.0, done))
        loop.call_soon(self._hand_over)   # runs just after the task's first step

    async def _run(self, context: ssl.SSLContext, backstop: float, done: Done) -> None:
        try:
            tls = await self._loop.start_tls(self._raw, self._protocol, context,
                                             server_side=True, ssl_handshake_timeout=backstop)
        except OSError:         # ssl.SSLError, a reset, the TLS layer's timeout
            tls = None
        if tls is None or tls.is_closing():   # aborted (asyncio: None, uvloop: closed)
            self._raw.abort()
            done(None, b"")
            return
        done(tls, b"".join(self._through))

    def take(self, data: bytes) -> None:
        """Bytes the connection received before `done`."""
        if self._raw.get_protocol() is self._protocol:
            self._early.append(data)          # raw: the TLS layer has not taken over
        else:
            self._through.append(data)

    def _hand_over(self) -> None:
        layer: Any = self._raw.get_protocol()
        if layer is self._protocol:            # start_tls has not run yet: next turn
            if not self._raw.is_closing() and not self._task.done():
                self._loop.call_soon(self._hand_over)
            return
        data = memoryview(b"".join(self._early))
        self._early.clear()
        if not data:
            return
        if not hasattr(layer, "buffer_updated"):
            layer.data_received(bytes(data))
            return
        while data:                            # the TLS layers are buffered protocols
            buf = layer.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            layer.buffer_updated(n)
            data = data[n:]

    def abort(self) -> None:
        """Drop the socket now (the handshake then ends with `done(None, b"")`)."""
        self._raw.abort()
