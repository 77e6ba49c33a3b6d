"""The client's TLS context from file options (`--tls-ca`, `--tls-cert`, `--tls-key`),
with errors that name the option, the file and the problem, in one line:

    --tls-ca ca.pem: no such file
    --tls-cert client.pem: not a PEM certificate (no "BEGIN CERTIFICATE" line)
    --tls-key other.key: does not belong to --tls-cert client.pem
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsOptionError(ValueError):
    """A TLS option that cannot be used (the message names the file and the problem)."""


def _read(flag: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise TlsOptionError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise TlsOptionError(f"{flag} {path}: a directory, not a PEM file") from None
    except PermissionError:
        raise TlsOptionError(f"{flag} {path}: not readable (permission denied)") from None
    except OSError as exc:
        raise TlsOptionError(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def client_context(tls: bool = False, ca: str | None = None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext | None:
    """A TLS context checking the server (against `ca`, else the system's CAs) and
    presenting `cert`/`key` when given; None for plain TCP (no option given).
    Raises TlsOptionError naming the option, the file and the problem."""
    if key and not cert:
        raise TlsOptionError(f"--tls-key {key}: needs --tls-cert (the certificate it signs)")
    if not (tls or ca or cert):
        return None
    if ca and "BEGIN CERTIFICATE" not in _read("--tls-ca", ca):
        raise TlsOptionError(f"--tls-ca {ca}: not a PEM certificate (no \"BEGIN "
                             "CERTIFICATE\" line)")
    try:
        context = ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        raise TlsOptionError(f"--tls-ca {ca}: not a usable CA certificate "
                             f"({_ssl_reason(exc)})") from None
    if cert:
        if "BEGIN CERTIFICATE" not in _read("--tls-cert", cert):
            raise TlsOptionError(f"--tls-cert {cert}: not a PEM certificate (no \"BEGIN "
                                 "CERTIFICATE\" line)")
        key_flag, key_file = ("--tls-key", key) if key else ("--tls-cert", cert)
        if "PRIVATE KEY" not in _read(key_flag, key_file):
            raise TlsOptionError(f"{key_flag} {key_file}: no PEM private key in it"
                                 + ("" if key else " (give it with --tls-key)"))
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                raise TlsOptionError(f"{key_flag} {key_file}: does not belong to --tls-cert "
                                     f"{cert}") from None
            raise TlsOptionError(f"--tls-cert {cert}"
                                 + (f" / --tls-key {key}" if key else "")
                                 + f": not usable ({_ssl_reason(exc)})") from None
        except OSError as exc:
            raise TlsOptionError(f"--tls-cert {cert}: cannot be used "
                                 f"({exc.strerror or exc})") from None
    return context
