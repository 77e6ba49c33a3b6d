"""The TLS options, as cc-admin has them: `--tls`, `--tls-ca`, `--tls-cert`, `--tls-key`."""

from __future__ import annotations

import argparse
import os
import ssl


def add_tls_options(group: argparse._ArgumentGroup) -> None:
    """Add the four options to a parser's argument group."""
    group.add_argument("--tls", action="store_true",
                       help="connect with TLS, checking the server against the system's CAs "
                            "(default: plain TCP)")
    group.add_argument("--tls-ca", metavar="FILE",
                       help="connect with TLS, checking the server against this CA (PEM) "
                            "(default: none)")
    group.add_argument("--tls-cert", metavar="FILE",
                       help="client certificate (PEM) for a server that asks for one "
                            "(default: none)")
    group.add_argument("--tls-key", metavar="FILE",
                       help="private key of --tls-cert (default: none: the key is in the "
                            "--tls-cert file)")


def tls_context(tls: bool, ca: str | None, cert: str | None,
                key: str | None) -> ssl.SSLContext | None:
    """The client's TLS context from the options (None: plain TCP). ValueError, naming
    the option and the file, when a file cannot be used."""
    if key and not cert:
        raise ValueError("--tls-key needs --tls-cert")
    if not (tls or ca or cert):
        return None
    for flag, path in (("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)):
        if path and not os.path.isfile(path):
            raise ValueError(f"{flag} {path}: no such file")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--tls-ca {ca}: not a usable CA file ({exc})") from None
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--tls-cert {cert}" + (f" --tls-key {key}" if key else "") +
                             f": not a usable certificate and key ({exc})") from None
    return context
