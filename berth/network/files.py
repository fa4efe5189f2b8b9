"""The text of a container's /etc/hosts and /etc/resolv.conf, as Docker writes them. Pure.

The engine writes these files into the container's directory and the runtime bind-mounts them.
"""

from ..errors import InvalidArgument
from .dns import host_nameservers

HOSTS_HEADER = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
]
#: Docker's fallback when the host has no nameserver a container could reach.
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]


def parse_extra_host(spec: str, host_gateway: str = "") -> tuple[str, str]:
    """``--add-host name:ip`` (``name=ip`` too) → (name, ip); ``host-gateway`` is the host."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not name or not ip:
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--add-host\" flag: bad format "
                              "for add-host")
    if ip == "host-gateway":
        if not host_gateway:
            raise InvalidArgument("no host-gateway address known for --add-host")
        ip = host_gateway
    return name, ip


def hosts(hostname: str, ip: str | None, extra: list[tuple[str, str]] = (),
          domainname: str = "", aliases: list[str] = ()) -> str:
    lines = list(HOSTS_HEADER)
    for name, addr in extra:
        lines.append(f"{addr}\t{name}")
    if ip:
        # libnetwork's updateHostsFile: the FQDN, and its first label when it has dots
        fqdn = f"{hostname}.{domainname}" if domainname else hostname
        names = [fqdn, fqdn.split(".", 1)[0]] if "." in fqdn else [hostname]
        names += [a for a in aliases if a not in names]
        lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def _host_search(path: str) -> tuple[list[str], list[str]]:
    search, options = [], []
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if w and w[0] in ("search", "domain"):
                    search = w[1:]
                elif w and w[0] == "options":
                    options += w[1:]
    except OSError:
        pass
    return search, options


def resolv_conf(*, embedded: str | None, dns: list[str] = (), search: list[str] = (),
                options: list[str] = (), host_resolv: str = "/etc/resolv.conf") -> str:
    """resolv.conf for a container: ``embedded`` is berth's resolver address on a user-defined
    network (which then forwards to ``dns``), None on the default bridge (``dns`` or the host's
    servers are written as they are, loopback ones dropped since a container cannot reach
    them)."""
    h_search, h_options = _host_search(host_resolv)
    search = list(search) or h_search
    if embedded:
        servers = [embedded]
        # As Docker's embedded resolver: ndots:0 unless the user set ndots, so that a short
        # name is asked as it is before any search domain.
        options = list(options) or h_options
        if not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")
    else:
        servers = list(dns) or [s for s in host_nameservers(host_resolv)
                                if not s.startswith("127.") and s != "::1"]
        servers = servers or FALLBACK_DNS
        options = list(options) or h_options
    # dockerd's order (libnetwork's resolvconf.Build): search, nameservers, options.
    lines = ["search " + " ".join(search)] if search else []
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"
