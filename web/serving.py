"""Who may reach the studio, and what they may do there.

On loopback only this machine's users can connect, and every tab is on.  Binding any
other interface is a deliberate act: it needs credentials (``--auth USER:PASSWORD``,
an auth file, or ``$STUDIO_WEB_AUTH``, handed to Gradio's ``auth``) or an explicit
``--no-auth``, and it turns the Train tab off unless ``--allow-training`` is given.
:func:`decide` turns the flags into an :class:`Exposure` or a one-line StudioError;
it imports no Gradio, so ``studio web`` refuses before anything starts.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError

AUTH_ENV = "STUDIO_WEB_AUTH"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Exposure:
    """How the server is exposed: ``credentials`` for Gradio's ``auth`` (empty: none),
    whether the Train tab is built, and a warning to print before serving (or None)."""

    host: str
    credentials: tuple[tuple[str, str], ...]
    training: bool
    warning: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or an empty string may mean any interface


def parse_credentials(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """``USER:PASSWORD`` pairs, one per line (blank lines skipped); StudioError naming
    ``source`` but never repeating a password."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        user, colon, password = line.partition(":")
        if not colon or not user.strip() or not password:
            raise StudioError(f"{source} line {number}: give USER:PASSWORD (a user name, a colon, a password)")
        pairs.append((user.strip(), password))
    if not pairs:
        raise StudioError(f"{source} holds no USER:PASSWORD line")
    return tuple(pairs)


def read_credentials(
    auth: Iterable[str] = (), auth_file: Path | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[tuple[str, str], ...]:
    """Every pair from ``--auth`` values, ``$STUDIO_WEB_AUTH`` and an auth file (one
    pair per line in both)."""
    pairs: list[tuple[str, str]] = []
    for value in auth:
        pairs += parse_credentials(value, "--auth")
    if environ.get(AUTH_ENV, "").strip():
        pairs += parse_credentials(environ[AUTH_ENV], f"${AUTH_ENV}")
    if auth_file is not None:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise StudioError(
                f"cannot read the auth file {auth_file} ({error.__class__.__name__}): "
                "give a text file with one USER:PASSWORD per line"
            ) from None
        pairs += parse_credentials(text, f"auth file {auth_file}")
    return tuple(pairs)


def decide(
    host: str,
    *,
    auth: Iterable[str] = (),
    auth_file: Path | None = None,
    no_auth: bool = False,
    allow_training: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> Exposure:
    """The exposure the flags ask for, or StudioError when binding ``host`` would expose
    the studio by accident.  Training is on for loopback; elsewhere only when allowed."""
    credentials = read_credentials(auth, auth_file, environ)
    if credentials and no_auth:
        raise StudioError(f"--no-auth contradicts --auth, the auth file or ${AUTH_ENV}: give one or the other")
    if is_loopback(host):
        return Exposure(host, credentials, training=True)
    if not credentials and not no_auth:
        raise StudioError(
            f"--host {host} exposes the studio to other machines: add --auth USER:PASSWORD "
            f"(or --auth-file FILE, or ${AUTH_ENV}), or --no-auth to serve without a password"
        )
    warning = None
    if no_auth:
        warning = f"warning: serving on {host} without a password: anyone who can reach this port can use every tab" + (
            ", training included" if allow_training else ""
        )
    return Exposure(host, credentials, training=allow_training, warning=warning)
