"""TLS for cc-server: the server's SSLContext from --tls-cert / --tls-key / --tls-client-ca."""

from __future__ import annotations

import ssl

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
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use --tls-cert {config.tls_cert} / --tls-key "
                       f"{config.tls_key}: {_reason(exc)}") from None
    if config.tls_client_ca:
        try:
            context.load_verify_locations(cafile=config.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use --tls-client-ca {config.tls_client_ca}: "
                           f"{_reason(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
