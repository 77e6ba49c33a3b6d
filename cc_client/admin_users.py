"""`cc-admin user add | remove | list`: edit a cc-server users file, locally.

    cc-admin user add gw1 --roles charging [--users-file users.toml] [--password-stdin]

These commands never talk to a server: they write the TOML file that `cc-server --users
FILE` reads at start (restart the server to apply). The file format and the password
hash belong to the server (`cc_server/auth.py`); this module is the one place where
cc_client reaches into cc_server, lazily, so that hashing exists exactly once.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, TextIO

DEFAULT_USERS_FILE = "users.toml"
ROLES = ("charging", "admin")


class UserCommandError(Exception):
    """A user command that cannot run; `usage` tells exit 2 (usage) from 1 (the file)."""

    def __init__(self, message: str, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


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
    from cc_server import auth

    path = users_file(args)
    password = read_password(args, sys.stdin)
    try:
        new = auth.set_user(path, args.name, password, args.roles)
    except auth.UsersFileError as exc:
        raise UserCommandError(str(exc), usage=False) from None
    except OSError as exc:
        raise UserCommandError(f"cannot write {path}: {exc.strerror or exc}",
                               usage=False) from None
    roles = ",".join(sorted(args.roles))
    out.write(f"{'added' if new else 'updated'} user {args.name} ({roles}) in {path}; "
              "restart cc-server to apply\n")


def cmd_user_remove(args: argparse.Namespace, out: TextIO) -> None:
    """user remove USER"""
    from cc_server import auth

    path = users_file(args)
    try:
        removed = auth.remove_user(path, args.name)
    except auth.UsersFileError as exc:
        raise UserCommandError(str(exc), usage=False) from None
    if not removed:
        raise UserCommandError(f"no user {args.name!r} in {path}", usage=False)
    out.write(f"removed user {args.name} from {path}; restart cc-server to apply\n")


def cmd_user_list(args: argparse.Namespace, out: TextIO) -> None:
    """user list"""
    from cc_server import auth

    path = users_file(args)
    try:
        users = auth.load_users(path)
    except auth.UsersFileError as exc:
        raise UserCommandError(str(exc), usage=False) from None
    for name in sorted(users):
        out.write(f"{name}\t{','.join(sorted(users[name].roles))}\n")


def add_user_commands(commands: Any) -> None:
    """The `user` command and its actions, on cc-admin's sub-parsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = commands.add_parser(
        "user", help="add, remove or list users of a users file (local, no server)",
        description="Edit the users file of cc-server --users FILE, on this machine; the "
                    "server reads it at start.", formatter_class=fmt,
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

    p = actions.add_parser("add", help="add a user, or set its password and roles",
                           description="Add a user or replace its password and roles. The "
                                       "password is asked for twice (or read from stdin) "
                                       "and stored as a salted scrypt hash.")
    p.add_argument("name", metavar="USER", help="the user name (the HELLO's `user`)")
    p.add_argument("--roles", type=parse_roles, required=True,
                   help="comma-separated: charging (containers, listeners), admin "
                        "(operator commands)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    file_option(p)
    p.set_defaults(local=cmd_user_add)
    p = actions.add_parser("remove", help="remove a user")
    p.add_argument("name", metavar="USER")
    file_option(p)
    p.set_defaults(local=cmd_user_remove)
    p = actions.add_parser("list", help="list users and their roles")
    file_option(p)
    p.set_defaults(local=cmd_user_list)
