"""Who can reach a server: one rule for `glmtune api` and `glmtune webui`.

A server bound to a loopback address answers this machine only. Bound anywhere else (0.0.0.0, a LAN
address, a host name) or opened through a public share link, anyone who reaches it can generate, start
jobs and read the workspace, so it needs a key or a password, or the user's explicit
--allow-unauthenticated.
"""

import ipaddress

from glmtune.errors import ConfigError

ALLOW_FLAG = "--allow-unauthenticated"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and localhost; everything else may be reachable from other machines."""
    name = host.strip().removeprefix("[").removesuffix("]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def reachable_from_others(host: str, share: bool = False) -> bool:
    return share or not is_loopback(host)


def check_exposure(
    command: str, host: str, authenticated: bool, allow_unauthenticated: bool, auth_hint: str, share: bool = False
) -> None:
    """Refuse to serve other machines without auth unless the user said so; `auth_hint` says how to add auth."""
    if authenticated or allow_unauthenticated or not reachable_from_others(host, share):
        return
    reach = "a public share link" if share else f"--host {host}"
    raise ConfigError(
        f"{reach} lets other machines use `glmtune {command}` and it has no auth: {auth_hint}, "
        f"or pass {ALLOW_FLAG} to serve it open"
    )
