"""`cc-admin user add | remove | list`: edit a cc-server users file, locally.

    cc-admin user add gw1 --roles charging [--users-file users.toml] [--password-stdin]

These commands never talk to a server: they write the TOML file that `cc-server --users
FILE` reads at start and again on SIGHUP (send SIGHUP to cc-server, or restart it, to
apply a change). The server defines the format and
checks passwords (`cc_server/auth.py`); the client may not import the server, so the few
lines that make a hash are mirrored here (`hash_password`), and tests/test_auth.py
checks that the server verifies what this writes. Entries this tool does not change are
kept as they are; comments in the file are not.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import json
import os
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any, TextIO

DEFAULT_USERS_FILE = "users.toml"
#: How a change reaches a running server (said by every command that edits the file).
TO_APPLY = "send SIGHUP to cc-server, or restart it, to apply"
ROLES = ("charging", "admin")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1     # cc_server.auth.DEFAULT_N, _R, _P
SALT_BYTES, KEY_BYTES = 16, 32


class UserCommandError(Exception):
    """A user command that cannot run; `usage` tells exit 2 (usage) from 1 (the file)."""

    def __init__(self, message: str, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


# ---------------------------------------------------------------------------- the file

def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$key` with a fresh random salt (base64 without padding)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=128 * r * (n + p + 2) + (1 << 20), dklen=KEY_BYTES)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii").rstrip("=")

    return f"scrypt${n}${r}${p}${b64(salt)}${b64(key)}"


def read_users(path: str) -> dict[str, dict[str, Any]]:
    """The [users.NAME] tables of a users file ({} when it does not exist)."""
    if not Path(path).exists():
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UserCommandError(f"cannot read {path}: {exc.strerror or exc}", False) from None
    except tomllib.TOMLDecodeError as exc:
        raise UserCommandError(f"{path} is not valid TOML: {exc}", False) from None
    users = data.get("users", {})
    if set(data) - {"users"} or not isinstance(users, dict) or \
            not all(isinstance(u, dict) for u in users.values()):
        raise UserCommandError(f"{path} is not a users file ([users.NAME] tables only)",
                               False)
    return users


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dump_users(users: dict[str, dict[str, Any]]) -> str:
    """The TOML text of a users file."""
    lines = ["# cc-server users file, written by `cc-admin user add`. Keep it private.", ""]
    for name in sorted(users):
        lines.append(f"[users.{_toml_string(name)}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in users[name].items()]
        lines.append("")
    return "\n".join(lines)


def write_users(path: str, users: dict[str, dict[str, Any]]) -> None:
    """Replace the file atomically, readable by its owner only."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dump_users(users))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserCommandError(f"cannot write {path}: {exc.strerror or exc}", False) from None


# ---------------------------------------------------------------------------- commands

def parse_roles(text: str) -> frozenset[str]:
    """'charging,admin' -> the set of roles (argparse type)."""
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise argparse.ArgumentTypeError(
            f"invalid roles {text!r}: a comma-separated list of {', '.join(ROLES)}")
    return roles


def read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    """The new password: one line of stdin (--password-stdin), or asked twice."""
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
    else:
        if not stdin.isatty():
            raise UserCommandError("no terminal to ask for the password on; "
                                   "use --password-stdin")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserCommandError("the two passwords differ")
    if not password:
        raise UserCommandError("the password must not be empty")
    return password


def users_file(args: argparse.Namespace) -> str:
    """--users-file, else $CC_USERS_FILE, else ./users.toml."""
    return args.users_file or os.environ.get("CC_USERS_FILE") or DEFAULT_USERS_FILE


def cmd_user_add(args: argparse.Namespace, out: TextIO) -> None:
    """user add USER --roles ROLES"""
    if not args.name or len(args.name) > 256:
        raise UserCommandError("a user name has 1 to 256 characters")
    path = users_file(args)
    users = read_users(path)
    password = read_password(args, sys.stdin)
    new = args.name not in users
    roles = ",".join(sorted(args.roles))
    users[args.name] = {"password": hash_password(password), "roles": sorted(args.roles)}
    write_users(path, users)
    if args.json:
        out.write(json.dumps({"user": args.name, "roles": sorted(args.roles), "file": path,
                              "added": new}) + "\n")
        return
    out.write(f"{'added' if new else 'updated'} user {args.name} ({roles}) in {path}; "
              f"{TO_APPLY}\n")


def cmd_user_remove(args: argparse.Namespace, out: TextIO) -> None:
    """user remove USER"""
    path = users_file(args)
    users = read_users(path)
    if users.pop(args.name, None) is None:
        raise UserCommandError(f"no user {args.name!r} in {path}", usage=False)
    write_users(path, users)
    if args.json:
        out.write(json.dumps({"user": args.name, "file": path, "removed": True}) + "\n")
        return
    out.write(f"removed user {args.name} from {path}; {TO_APPLY}\n")


def cmd_user_list(args: argparse.Namespace, out: TextIO) -> None:
    """user list"""
    path = users_file(args)
    if not Path(path).exists():
        raise UserCommandError(f"no users file {path}", usage=False)
    users = read_users(path)
    for name in sorted(users):
        roles = users[name].get("roles")
        if args.json:
            out.write(json.dumps({"user": name, "roles": roles}) + "\n")
            continue
        out.write(f"{name}\t{','.join(map(str, roles)) if isinstance(roles, list) else '?'}\n")


def add_user_commands(commands: Any) -> None:
    """The `user` command and its actions, on cc-admin's sub-parsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = commands.add_parser(
        "user", help="add, remove or list users of a users file (local, no server)",
        description="Edit the users file of cc-server --users FILE, on this machine; the "
                    f"server reads it at start and again on SIGHUP ({TO_APPLY}).",
        formatter_class=fmt,
        epilog="examples:\n  cc-admin user add gw1 --roles charging\n"
               "  echo \"$PW\" | cc-admin user add ops --roles admin,charging "
               "--password-stdin --users-file /etc/cc/users.toml\n"
               "  cc-admin user list\n\nexit status: 0 success, 1 the file cannot be "
               "read or written, 2 usage error")
    actions = top.add_subparsers(title="user commands", dest="action", metavar="ACTION",
                                 required=True)

    def file_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--users-file", metavar="FILE",
                       help=f"the users file (default: $CC_USERS_FILE or {DEFAULT_USERS_FILE})")
        p.add_argument("--json", action="store_true", help="JSON lines, one object each")

    p = actions.add_parser("add", help="add a user, or set its password and roles",
                           description="Add a user or replace its password and roles. The "
                                       "password is asked for twice (or read from stdin) "
                                       f"and stored as a salted scrypt hash; {TO_APPLY}.")
    p.add_argument("name", metavar="USER", help="the user name (the HELLO's `user`)")
    p.add_argument("--roles", type=parse_roles, required=True,
                   help="comma-separated: charging (containers, listeners), admin "
                        "(operator commands)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    file_option(p)
    p.set_defaults(local=cmd_user_add)
    p = actions.add_parser("remove", help="remove a user",
                           description=f"Remove a user from the file; {TO_APPLY}.")
    p.add_argument("name", metavar="USER")
    file_option(p)
    p.set_defaults(local=cmd_user_remove)
    p = actions.add_parser("list", help="list users and their roles")
    file_option(p)
    p.set_defaults(local=cmd_user_list)
