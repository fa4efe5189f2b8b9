"""/etc/hosts, /etc/hostname and /etc/resolv.conf of a container, as Docker writes them.

Each container has its own three files under its state directory, bind-mounted over the
image's (so a container may edit them without touching the image or other containers):

- hostname: the container's hostname (``-h``, else the first 12 hex digits of its id);
- hosts: loopback entries, then the container's own address and name when it has a network
  address, then ``--add-host`` entries; ``--network host`` copies the host's file (plus
  ``--add-host``), as Docker does;
- resolv.conf: the host's, minus loopback nameservers (unreachable from another network
  namespace), or Google's public resolvers when none is left, as Docker does; ``--dns``,
  ``--dns-search``, ``--dns-option`` replace the corresponding lines; ``--network host`` keeps
  the host's file as it is. A network service may supply the whole content (its DNS).
"""

from __future__ import annotations

import os

from berth import atomic

DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def hosts(network_mode: str, hostname: str, domainname: str, addresses: list[str],
          extra_hosts: list[str] | None, host_file: str = "/etc/hosts") -> str:
    if network_mode == "host":
        out = _read(host_file) or DEFAULT_HOSTS
        if not out.endswith("\n"):
            out += "\n"
    else:
        out = DEFAULT_HOSTS
        fqdn = f"{hostname}.{domainname}" if domainname else hostname
        names = f"{fqdn}\t{hostname}" if domainname else hostname
        for addr in addresses:
            out += f"{addr}\t{names}\n"
    for h in extra_hosts or []:
        name, sep, ip = h.partition(":")
        if "=" in h and (not sep or h.index("=") < h.index(":")):
            name, _, ip = h.partition("=")
        if ip == "host-gateway":
            ip = "127.0.0.1"
        out += f"{ip}\t{name}\n"
    return out


def _is_loopback(ns: str) -> bool:
    return ns.startswith("127.") or ns == "::1" or ns.startswith("0:0:0:0:0:0:0:1")


def resolv_conf(network_mode: str, dns: list[str] | None, search: list[str] | None,
                options: list[str] | None, host_file: str = "/etc/resolv.conf") -> str:
    text = _read(host_file)
    lines = text.splitlines()
    if network_mode == "host" and not (dns or search or options):
        return text if text.endswith("\n") or not text else text + "\n"
    nameservers, searches, opts, other = [], [], [], []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#") or s.startswith(";"):
            continue
        word, _, rest = s.partition(" ")
        rest = rest.strip()
        if word == "nameserver":
            if network_mode == "host" or not _is_loopback(rest.split("%")[0]):
                nameservers.append(rest)
        elif word in ("search", "domain"):
            searches = rest.split()
        elif word == "options":
            opts += rest.split()
        else:
            other.append(s)
    if dns:
        nameservers = list(dns)
    if search:
        searches = [] if search == ["."] else list(search)
    if options:
        opts = list(options)
    if not nameservers:
        nameservers = list(FALLBACK_DNS)
    out = "".join(f"nameserver {n}\n" for n in nameservers)
    if searches:
        out += "search " + " ".join(searches) + "\n"
    if opts:
        out += "options " + " ".join(opts) + "\n"
    return out


def write_all(state_dir: str, hostname: str, hosts_text: str, resolv_text: str
              ) -> dict[str, str]:
    """Write the three files (no fsync: they are rebuilt at every start) → dest → host path."""
    paths = {"/etc/hostname": os.path.join(state_dir, "hostname"),
             "/etc/hosts": os.path.join(state_dir, "hosts"),
             "/etc/resolv.conf": os.path.join(state_dir, "resolv.conf")}
    atomic.write_text(paths["/etc/hostname"], hostname + "\n", sync=False)
    atomic.write_text(paths["/etc/hosts"], hosts_text, sync=False)
    atomic.write_text(paths["/etc/resolv.conf"], resolv_text, sync=False)
    return paths
