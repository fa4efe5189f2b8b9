"""``port``: a container's published ports, as the docker CLI lists them.

    berth port CONTAINER [PRIVATE_PORT[/PROTO]]

Reads NetworkSettings.Ports from inspect: ``80/tcp -> 0.0.0.0:8080`` per binding, sorted by
port then protocol (docker 28's order); with a port, only its host addresses, or docker's
``Error: No public port '80' published for NAME`` (the port as given) and exit 1.
"""

from __future__ import annotations

from .common import Spec
from .flags import CommandError


class NoPublicPort(CommandError):
    prefix = "Error: "


def _host(b: dict) -> str:
    ip = b.get("HostIp") or "0.0.0.0"
    if ":" in ip:
        ip = f"[{ip}]"
    return f"{ip}:{b.get('HostPort', '')}"


def port(ctx, argv) -> int:
    spec = Spec("berth port CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a "
                "specific mapping for the container", [], 1, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    _, args = parsed
    c = ctx.client.get_json(f"/containers/{args[0]}/json")
    ports = (c.get("NetworkSettings") or {}).get("Ports") or {}
    if len(args) == 2:
        want = args[1]
        p, _, proto = want.partition("/")
        key = f"{p}/{proto or 'tcp'}"
        binds = ports.get(key)
        if not binds:
            raise NoPublicPort(f"No public port '{want}' published for {args[0]}")
        ctx.out.write("".join(_host(b) + "\n" for b in binds))
        return 0

    def order(key: str):
        p, _, proto = key.partition("/")
        return (int(p) if p.isdigit() else 0, proto)

    lines = [f"{key} -> {_host(b)}" for key in sorted(ports, key=order)
             for b in ports[key] or []]
    ctx.out.write("".join(line + "\n" for line in lines))
    return 0


COMMANDS = {"port": port}
