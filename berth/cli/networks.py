"""Network commands: network create, ls, inspect, rm, prune, connect, disconnect.

Output, flags and client-side checks are the docker CLI 28's (cli/command/network): ``ls``
sorts by name naturally and formats rows as ``*network.networkContext``; ``create`` groups
``--subnet``/``--ip-range``/``--gateway``/``--aux-address`` into IPAM pools before sending,
with its error words; ``rm`` and ``inspect`` go on past a missing network and exit 1.
"""

from __future__ import annotations

from berth import fastjson

from .client import APIError
from .common import Spec, confirm, dump_json, prune_call
from .flags import CommandError, Flag
from .format import render
from .system import parse_filter_flags

HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
           "CreatedAt": "CREATED AT"}


class CreateError(CommandError):
    pass


def _kv(values: list[str]) -> dict[str, str]:
    """docker's MapOpts: ``k=v`` (a bare ``k`` is ``k=""``)."""
    return dict(v.partition("=")[::2] for v in values)


def _ipv4_net(text: str, what: str):
    import ipaddress

    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        if what == "subnet":
            raise CreateError(f"invalid subnet: invalid CIDR address: {text}") from None
        raise CreateError(f'invalid argument "{text}" for "--{what}" flag: invalid CIDR '
                          f'address: {text}') from None


def _ip(text: str, flag: str):
    import ipaddress

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise CreateError(f'invalid argument "{text}" for "--{flag}" flag: invalid string '
                          f'being converted to IP address: {text}') from None


def ipam_config(subnets: list[str], ranges: list[str], gateways: list[str],
                aux: dict[str, str]) -> list[dict]:
    """createIPAMConfig of the docker CLI: one pool per subnet, each range/gateway/aux
    address in the subnet that holds it."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise CreateError("every ip-range or gateway must have a corresponding subnet")
    nets = []
    for s in subnets:
        sn = _ipv4_net(s, "subnet")
        for other, _ in nets:
            if sn.version == other.version and (sn.subnet_of(other) or other.subnet_of(sn)):
                raise CreateError("multiple overlapping subnet configuration is not supported")
        nets.append((sn, {"Subnet": s}))
    for r in ranges:
        rn = _ipv4_net(r, "ip-range")
        hit = [(sn, d) for sn, d in nets if rn.version == sn.version and
               rn.network_address in sn]
        if not hit:
            raise CreateError(f"no matching subnet for range {r}")
        for _, d in hit:
            if "IPRange" in d:
                raise CreateError(f"cannot configure multiple ranges ({r}, {d['IPRange']}) on "
                                  f"the same subnet ({d['Subnet']})")
            d["IPRange"] = str(rn)
    for g in gateways:
        ga = _ip(g, "gateway")
        hit = [(sn, d) for sn, d in nets if ga.version == sn.version and ga in sn]
        if not hit:
            raise CreateError(f"no matching subnet for gateway {g}")
        for _, d in hit:
            if "Gateway" in d:
                raise CreateError(f"cannot configure multiple gateways ({g}, {d['Gateway']}) "
                                  f"for the same subnet ({d['Subnet']})")
            d["Gateway"] = str(ga)
    for name, a in aux.items():
        if not a:
            continue
        aa = _ip(a, "aux-address")
        hit = [(sn, d) for sn, d in nets if aa.version == sn.version and aa in sn]
        if not hit:
            raise CreateError(f"no matching subnet for aux-address {a}")
        for _, d in hit:
            d.setdefault("AuxiliaryAddresses", {})[name] = str(aa)
    return [d for _, d in nets]


def create(ctx, argv) -> int:
    spec = Spec("berth network create [OPTIONS] NETWORK", "Create a network", [
        Flag("--attachable", help="Enable manual container attachment"),
        Flag("--aux-address", "list", help="Auxiliary IPv4 or IPv6 addresses used by Network "
             "driver", metavar="map"),
        Flag("--config-from", "str", help="The network from which to copy the configuration"),
        Flag("--config-only", help="Create a configuration only network"),
        Flag("-d,--driver", "str", default="bridge", help='Driver to manage the Network '
             '(default "bridge")'),
        Flag("--gateway", "list", help="IPv4 or IPv6 Gateway for the master subnet",
             metavar="strings"),
        Flag("--ingress", help="Create swarm routing-mesh network"),
        Flag("--internal", help="Restrict external access to the network"),
        Flag("--ip-range", "list", help="Allocate container ip from a sub-range",
             metavar="strings"),
        Flag("--ipam-driver", "str", default="default", help='IP Address Management Driver '
             '(default "default")'),
        Flag("--ipam-opt", "list", help="Set IPAM driver specific options", metavar="map"),
        Flag("--ipv4", default=True, help="Enable or disable IPv4 address assignment "
             "(default true)"),
        Flag("--ipv6", help="Enable or disable IPv6 address assignment"),
        Flag("--label", "list", help="Set metadata on a network"),
        Flag("-o,--opt", "list", help="Set driver specific options", metavar="map"),
        Flag("--scope", "str", help="Control the network's scope"),
        Flag("--subnet", "list", help="Subnet in CIDR format that represents a network "
             "segment", metavar="strings"),
    ], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    split = [x for v in opts["subnet"] for x in v.split(",")]
    ranges = [x for v in opts["ip_range"] for x in v.split(",")]
    gateways = [x for v in opts["gateway"] for x in v.split(",")]
    pools = ipam_config(split, ranges, gateways, _kv(opts["aux_address"]))
    body = {"Name": args[0], "CheckDuplicate": True, "Driver": opts["driver"],
            "Scope": opts["scope"], "EnableIPv6": opts["ipv6"],
            "IPAM": {"Driver": opts["ipam_driver"], "Options": _kv(opts["ipam_opt"]),
                     "Config": pools},
            "Internal": opts["internal"], "Attachable": opts["attachable"],
            "Ingress": opts["ingress"], "ConfigOnly": opts["config_only"],
            "ConfigFrom": {"Network": opts["config_from"]} if opts["config_from"] else None,
            "Options": _kv(opts["opt"]), "Labels": _kv(opts["label"])}
    res = ctx.client.call("POST", "/networks/create", json=body)
    ctx.out.write(res["Id"] + "\n")
    return 0


def _natural_key(s: str) -> list:
    """sortorder.NaturalLess: runs of digits compare as numbers."""
    out, num = [], ""
    for ch in s:
        if ch.isdigit():
            num += ch
            continue
        if num:
            out.append((0, int(num), num))
            num = ""
        out.append((1, ch, ""))
    if num:
        out.append((0, int(num), num))
    return out


def _row(n: dict, trunc: bool) -> dict:
    from .gotemplate import GoTime

    labels = n.get("Labels") or {}
    return {"ID": n["Id"][:12] if trunc else n["Id"], "Name": n["Name"],
            "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
            "IPv4": "true" if n.get("EnableIPv4") else "false",
            "IPv6": "true" if n.get("EnableIPv6") else "false",
            "Internal": "true" if n.get("Internal") else "false",
            "Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
            "CreatedAt": GoTime(n.get("Created", "")).go()}


def ls(ctx, argv) -> int:
    spec = Spec("berth network ls [OPTIONS]", "List networks", [
        Flag("-f,--filter", "list", help='Provide filter values (e.g. "driver=bridge")'),
        Flag("--format", "str", help="Format output using a custom template"),
        Flag("--no-trunc", help="Do not truncate the output"),
        Flag("-q,--quiet", help="Only display network IDs"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    filters = parse_filter_flags(opts["filter"])
    res = ctx.client.get_json("/networks", {"filters": fastjson.dumps(filters)} if filters
                              else None)
    res.sort(key=lambda n: _natural_key(n["Name"]))
    rows = [_row(n, not opts["no_trunc"]) for n in res]
    fmt = opts["format"]
    if not fmt or fmt == "table":
        fmt = "{{.ID}}" if opts["quiet"] else \
            "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    elif fmt == "raw":
        fmt = "network_id: {{.ID}}" if opts["quiet"] else \
            "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n"
    elif fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, HEADERS, context="*network.networkContext"))
    return 0


def inspect(ctx, argv) -> int:
    spec = Spec("berth network inspect [OPTIONS] NETWORK [NETWORK...]", "Display detailed "
                "information on one or more networks", [
                    Flag("-f,--format", "str", help="Format output using a custom template"),
                    Flag("-v,--verbose", help="Verbose output for diagnostics")], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    found, errors = [], []
    for n in names:
        try:
            found.append(ctx.client.get_json(f"/networks/{n}",
                                             {"verbose": "true"} if opts["verbose"] else None))
        except APIError as e:
            errors.append(f"Error response from daemon: {e.message}\n")
    if opts["format"]:
        ctx.out.write(render(opts["format"], found, {}))
    else:
        ctx.out.write(dump_json(found) + "\n")
    ctx.out.flush()
    # as the docker CLI: what was found first, then the errors
    for line in errors:
        ctx.err.write(line)
    return 1 if errors else 0


def rm(ctx, argv) -> int:
    spec = Spec("berth network rm NETWORK [NETWORK...]", "Remove one or more networks", [
        Flag("-f,--force", help="Do not error if the network does not exist")], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    errors = []
    for n in names:
        try:
            ctx.client.call("DELETE", f"/networks/{n}")
            ctx.out.write(n + "\n")
        except APIError as e:
            if opts["force"] and e.status == 404:
                continue
            errors.append(f"Error response from daemon: {e.message}")
    if errors:
        # docker 28 prints the errors, then its StatusError's own text
        ctx.err.write("\n".join(errors) + "\nexit status 1\n")
        return 1
    return 0


def prune(ctx, argv) -> int:
    spec = Spec("berth network prune [OPTIONS]", "Remove all unused networks", [
        Flag("--filter", "list", help='Provide filter values (e.g. "until=<timestamp>")'),
        Flag("-f,--force", help="Do not prompt for confirmation"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    if not opts["force"] and not confirm(ctx, "WARNING! This will remove all custom networks "
                                              "not used by at least one container."):
        return 0
    res = prune_call(ctx, "/networks/prune", parse_filter_flags(opts["filter"]))
    deleted = res.get("NetworksDeleted") or []
    if deleted:
        ctx.out.write("Deleted Networks:\n" + "".join(d + "\n" for d in deleted) + "\n")
    return 0


def connect(ctx, argv) -> int:
    spec = Spec("berth network connect [OPTIONS] NETWORK CONTAINER", "Connect a container to "
                "a network", [
                    Flag("--alias", "list", help="Add network-scoped alias for the container",
                         metavar="strings"),
                    Flag("--driver-opt", "list", help="driver options for the network",
                         metavar="strings"),
                    Flag("--gw-priority", "int", help="Highest gw-priority provides the default "
                         "gateway. Accepts positive and negative values."),
                    Flag("--ip", "str", help="IPv4 address (e.g., \"172.30.100.104\")"),
                    Flag("--ip6", "str", help="IPv6 address (e.g., \"2001:db8::33\")"),
                    Flag("--link", "list", help="Add link to another container"),
                    Flag("--link-local-ip", "list", help="Add a link-local address for the "
                         "container", metavar="strings"),
                ], 2, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (net, container) = parsed
    ep: dict = {"Links": opts["link"] or None,
                "Aliases": [a for v in opts["alias"] for a in v.split(",")] or None,
                "DriverOpts": _kv([o for v in opts["driver_opt"] for o in v.split(",")])
                or None}
    if opts["ip"] or opts["ip6"] or opts["link_local_ip"]:
        ep["IPAMConfig"] = {"IPv4Address": opts["ip"], "IPv6Address": opts["ip6"],
                            "LinkLocalIPs": opts["link_local_ip"] or None}
    ctx.client.call("POST", f"/networks/{net}/connect",
                    json={"Container": container, "EndpointConfig": ep})
    return 0


def disconnect(ctx, argv) -> int:
    spec = Spec("berth network disconnect [OPTIONS] NETWORK CONTAINER", "Disconnect a "
                "container from a network", [
                    Flag("-f,--force", help="Force the container to disconnect from a network"),
                ], 2, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (net, container) = parsed
    ctx.client.call("POST", f"/networks/{net}/disconnect",
                    json={"Container": container, "Force": opts["force"]})
    return 0


COMMANDS = {"create": create, "ls": ls, "inspect": inspect, "rm": rm, "prune": prune,
            "connect": connect, "disconnect": disconnect}
