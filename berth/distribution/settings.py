"""Registry settings as dockerd's daemon.json has them, and the endpoint choice they imply.

- ``insecure-registries``: hosts or CIDRs where plain HTTP, or HTTPS without verification, is
  allowed. As dockerd, 127.0.0.0/8 (and ::1, localhost) is always insecure.
- ``registry-mirrors``: URLs tried, in order, before Docker Hub for pulls of docker.io images
  (never for pushes, and never for other registries), as dockerd does.
- ``max-concurrent-downloads`` (default 3) and ``max-concurrent-uploads`` (default 5).
- certificates per registry host in ``certs.d/<host>/``: ``*.crt`` CAs, and a client
  ``*.cert``/``*.key`` pair, as docker reads ``/etc/docker/certs.d``.
"""

import ipaddress
import os
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

__all__ = ["Endpoint", "RegistrySettings"]

HUB_ENDPOINT = "https://registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: a base URL, whether TLS may be unverified or absent."""

    url: str
    insecure: bool = False
    mirror: bool = False


@dataclass
class RegistrySettings:
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    certs_dirs: list[str] = field(default_factory=lambda: ["/etc/berth/certs.d",
                                                           "/etc/docker/certs.d"])
    retries: int = 3

    @classmethod
    def from_daemon_json(cls, doc: dict) -> "RegistrySettings":
        s = cls()
        s.insecure_registries = list(doc.get("insecure-registries") or [])
        s.registry_mirrors = [m.rstrip("/") for m in doc.get("registry-mirrors") or []]
        for key, attr in (("max-concurrent-downloads", "max_concurrent_downloads"),
                          ("max-concurrent-uploads", "max_concurrent_uploads")):
            if key in doc:
                v = doc[key]
                if not isinstance(v, int) or v < 1:
                    raise InvalidArgument(f"{key} must be a positive integer, not {v!r}")
                setattr(s, attr, v)
        for m in s.registry_mirrors:
            if not m.startswith(("http://", "https://")):
                raise InvalidArgument(f"invalid registry mirror {m!r}: want an http(s) URL")
        return s

    def registry_config(self) -> dict:
        """``RegistryConfig`` of ``GET /info`` in dockerd's shape (``docker info`` prints its
        Insecure Registries and Registry Mirrors from it): CIDRs in InsecureRegistryCIDRs,
        host names as insecure IndexConfigs, mirrors with dockerd's trailing slash."""
        mirrors = [m.rstrip("/") + "/" for m in self.registry_mirrors]
        cidrs: list[str] = []
        index = {"docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True,
                               "Official": True}}
        for entry in self.insecure_registries:
            try:
                net = str(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                index[entry] = {"Name": entry, "Mirrors": [], "Secure": False,
                                "Official": False}
                continue
            if net not in cidrs:
                cidrs.append(net)
        if "127.0.0.0/8" not in cidrs:
            cidrs.append("127.0.0.0/8")  # after the configured ones, as dockerd lists them
        return {"AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs": cidrs,
                "IndexConfigs": index, "Mirrors": mirrors}

    def is_insecure(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]")
        if name == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return True
        for entry in self.insecure_registries:
            if entry in (host, name):
                return True
            if ip is not None and "/" in entry:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def endpoints(self, registry: str, *, push: bool = False) -> list[Endpoint]:
        """Where to send requests for ``registry``, in the order to try them."""
        from berth.distribution.reference import DEFAULT_REGISTRY

        if registry == DEFAULT_REGISTRY:
            eps = [] if push else [Endpoint(m, self.is_insecure(m.split("://", 1)[1]), True)
                                   for m in self.registry_mirrors]
            return [*eps, Endpoint(HUB_ENDPOINT)]
        if self.is_insecure(registry):
            # dockerd tries TLS first, then plain HTTP; the client remembers which answered
            return [Endpoint(f"https://{registry}", True), Endpoint(f"http://{registry}", True)]
        return [Endpoint(f"https://{registry}")]

    def certs_for(self, host: str) -> tuple[list[str], tuple[str, str] | None]:
        """(CA files, client cert+key) from certs.d/<host>/ as docker lays them out."""
        cas: list[str] = []
        client = None
        for base in self.certs_dirs:
            d = os.path.join(base, host)  # docker names the directory host:port
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                p = os.path.join(d, n)
                if n.endswith(".crt"):
                    cas.append(p)
                elif n.endswith(".cert") and os.path.exists(p[:-5] + ".key"):
                    client = (p, p[:-5] + ".key")
        return cas, client
