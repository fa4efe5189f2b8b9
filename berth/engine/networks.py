"""Networks as operations: the Docker API's /networks, and each container's network.

``NetworkService`` puts the Docker model on top of ``berth.network.NetworkManager`` (which owns
bridges, veths, IPAM, the resolvers and berth's nft table):

- the predefined networks: ``bridge`` (the manager's default network, Linux bridge ``berth0``
  unless berthd's ``--bridge`` names another; ``--bridge none`` goes without), ``host`` and
  ``none`` (no kernel object; stable ids in ``ROOT/network/predefined.json``);
- user networks: create, list, inspect, remove, prune, connect, disconnect, with dockerd's
  shapes, filters, status codes and words;
- the container seam (docs/ARCHITECTURE.md "The network seam"): ``check_mode`` at create,
  ``created`` fills the record's ``NetworkSettings``, ``sandbox`` at every start (a namespace,
  an endpoint per network, published ports, the /etc/hosts and resolv.conf text), ``release``
  once the last process is gone (everything of that start goes: ports, addresses, veths, the
  namespace).

A container's record keeps, under ``NetworkSettings``: ``Networks`` (what inspect shows, per
network name), ``Ports``, ``SandboxID``/``SandboxKey``, and ``EndpointsConfig`` (what the user
asked per network: aliases, IPAM config, MAC, links, driver options; it is not shown). The
sandbox of container ``C`` is ``RUN/network/netns/C``; its id is the container's.

Invariants: every kernel object of a start is undone when the start fails; a running container
is the only holder of endpoints (a stopped one keeps what it asked for, not what it got); the
record is replaced as a whole dict (the API reads it from the loop while workers write it).
Start-up (``restore``) reconciles the kernel with the records that say running, before the
container service reconnects to its shims.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading

from berth import atomic, fastjson
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, PermissionDenied
from berth.network import files, ipam, sandbox
from berth.network.manager import (
    Ambiguous,
    Network,
    NetworkManager,
    NoSuchNetwork,
    ambiguous_message,
)
from berth.network.ports import PortInUse, exposed, from_docker

from . import container_state as cs

log = logging.getLogger("berth.engine.networks")

PREDEFINED_EMPTY = ("host", "none")
LIST_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")
PRUNE_FILTERS = ("label", "label!", "until")
_OPERATIONAL = ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "MacAddress")


class NetworkModeConflict(InvalidArgument):
    pass


def _mode_name(mode: str) -> str:
    return "bridge" if mode in ("", "default") else mode


def _short(cid: str) -> str:
    return cid[:12]


def _endpoint_view(cfg: dict | None) -> dict:
    """What inspect shows of an endpoint the container asked for but does not hold."""
    cfg = cfg or {}
    # EndpointIPAMConfig's fields are omitempty in dockerd: an empty IPv6Address is not shown
    ipam_cfg = cfg.get("IPAMConfig")
    ipam_cfg = {k: v for k, v in ipam_cfg.items() if v} if isinstance(ipam_cfg, dict) else None
    return {"IPAMConfig": ipam_cfg, "Links": cfg.get("Links") or None,
            "Aliases": list(cfg.get("Aliases") or []) or None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": cfg.get("MacAddress") or "",
            # as sent: the docker CLI's connect sends {} (shown so), its run sends nothing
            "DriverOpts": cfg["DriverOpts"] if isinstance(cfg.get("DriverOpts"), dict) else None}


def check_options(config: dict, host: dict) -> list[str]:
    """dockerd's validateNetMode on a create request (its Config before the image's is merged,
    and HostConfig): the first conflict as dockerd words it, else the warnings it gives."""
    mode = host.get("NetworkMode") or ""
    if mode == "container" or mode.startswith("container:"):
        conflicts = [
            (not mode.partition(":")[2],
             "Invalid network mode: invalid container format container:<name|id>"),
            (config.get("Hostname"), "conflicting options: hostname and the network mode"),
            (host.get("Links"), "conflicting options: container type network can't be used "
                                "with links. This would result in undefined behavior"),
            (host.get("Dns"), "conflicting options: dns and the network mode"),
            (host.get("ExtraHosts"), "conflicting options: custom host-to-IP mapping and the "
                                     "network mode"),
            (host.get("PortBindings") or host.get("PublishAllPorts"),
             "conflicting options: port publishing and the container type network mode"),
            (config.get("ExposedPorts"), "conflicting options: port exposing and the container "
                                         "type network mode"),
        ]
        for bad, msg in conflicts:
            if bad:
                raise InvalidArgument(msg)
    if mode == "host" and host.get("Links"):
        raise InvalidArgument("conflicting options: host type networking can't be used with "
                              "links. This would result in undefined behavior")
    if mode == "host" and host.get("PortBindings"):
        return ["Published ports are discarded when using host network mode"]
    return []


def link_env(name: str, ip: str, env: list[str], exposed: list[str]) -> list[str]:
    """dockerd's environment for a legacy link ``name`` (/parent/alias) to a container at
    ``ip`` with ``env`` and ``exposed`` ports ("80/tcp"): daemon/links' ToEnv."""
    alias = name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = []
    for key in exposed:
        port, _, proto = key.partition("/")
        if port.isdigit():
            ports.append((int(port), (proto or "tcp").lower()))
    ports.sort(key=lambda p: (p[0], p[1] != "tcp"))
    out = []
    if ports:
        out.append(f"{alias}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
    i = 0
    while i < len(ports):  # runs of consecutive ports of one protocol: also as a range
        j = i
        while j + 1 < len(ports) and ports[j + 1] == (ports[j][0] + 1, ports[i][1]):
            j += 1
        if j > i:
            (lo, proto), hi = ports[i], ports[j][0]
            pre = f"{alias}_PORT_{lo}_{proto.upper()}"
            out += [f"{pre}_START={proto}://{ip}:{lo}", f"{pre}_ADDR={ip}", f"{pre}_PROTO={proto}",
                    f"{pre}_PORT_START={lo}", f"{pre}_END={proto}://{ip}:{hi}",
                    f"{pre}_PORT_END={hi}"]
        i = j + 1
    for port, proto in ports:
        pre = f"{alias}_PORT_{port}_{proto.upper()}"
        out += [f"{pre}={proto}://{ip}:{port}", f"{pre}_ADDR={ip}", f"{pre}_PORT={port}",
                f"{pre}_PROTO={proto}"]
    out.append(f"{alias}_NAME={name}")
    for e in env:
        k, eq, v = e.partition("=")
        if eq and k not in ("HOME", "PATH"):  # what a build adds, as dockerd skips
            out.append(f"{alias}_ENV_{k}={v}")
    return out


def _check_endpoint_config(name: str, cfg: dict) -> None:
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"invalid endpoint config for network {name}")
    ipam_cfg = cfg.get("IPAMConfig") or {}
    v4 = ipam_cfg.get("IPv4Address") or ""
    if v4:
        try:
            ipam.address(v4)
        except InvalidArgument:
            raise InvalidArgument(f"invalid IPv4 address: {v4}") from None
    if ipam_cfg.get("IPv6Address"):
        raise InvalidArgument("IPv6 addresses are not supported by berth: "
                              f"{ipam_cfg['IPv6Address']}")
    if cfg.get("Aliases") and name in ("bridge", "default", "host", "none"):
        raise InvalidArgument("network-scoped alias is supported only for containers in user "
                              "defined networks")
    mac = cfg.get("MacAddress") or ""
    if mac:
        parts = mac.split(":")
        if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF"
                                                           for c in p) for p in parts):
            raise InvalidArgument(f"invalid MAC address: {mac}")


def _links(cfg: dict) -> dict[str, str]:
    """Legacy links ``name:alias`` of an endpoint: alias → name."""
    out = {}
    for link in cfg.get("Links") or []:
        name, _, alias = str(link).partition(":")
        name = name.lstrip("/")
        out[(alias or name).rsplit("/", 1)[-1]] = name
    return out


class NetworkService:
    def __init__(self, engine, root: str, run: str, *, bridge: str = "berth0",
                 bip: str | None = None, table: str = "berth", mtu: int | None = None) -> None:
        self.engine = engine
        self.events = engine.events
        self.dir = os.path.join(root, "network")
        self.run = os.path.join(run, "network")
        self.default_enabled = (bridge or "berth0") != "none"
        self.mgr = NetworkManager(self.dir, self.run, table=table,
                                  default_bridge=bridge if self.default_enabled else "berth0",
                                  default_subnet=bip, default_mtu=mtu)
        self.pool = sandbox.SandboxPool(os.path.join(self.run, "spare"), size=2)
        self._filling = False
        self._fill_lock = threading.Lock()
        self.predefined = self._load_predefined()

    # ------------------------------------------------------------------ start-up, shut-down
    def _load_predefined(self) -> dict[str, dict]:
        p = os.path.join(self.dir, "predefined.json")
        try:
            with open(p, "rb") as f:
                d = fastjson.loads(f.read())
        except (OSError, ValueError):
            d = {}
        if not all(k in d for k in PREDEFINED_EMPTY):
            created = cs.now_rfc3339()
            for k in PREDEFINED_EMPTY:
                d.setdefault(k, {"Id": secrets.token_hex(32), "Created": created})
            atomic.write_text(p, fastjson.dumps(d), 0o600)
        return d

    def restore(self) -> None:
        """berthd start-up, before containers reconnect: the kernel as the records say."""
        for p in sandbox.list_dir(self.pool.dir):
            sandbox.destroy(p)  # a previous daemon's spares
        live = [c.id for c in list(self.engine.containers.by_id.values())
                if cs.is_running(c.state)]
        done = self.mgr.reconcile(live)
        if any(done.values()):
            log.info("network reconcile: %s", {k: v for k, v in done.items() if v})
        for lost in done.get("lost_ports", []):
            log.warning("published port %s is held by another process now", lost)
        if self.default_enabled:
            self.mgr.ensure_default()
        self._refill()

    def close(self) -> None:
        self.pool.drain()
        self.mgr.close()

    def _refill(self) -> None:
        """Top the spare namespaces up in the background (off every start's path)."""
        with self._fill_lock:
            if self._filling:
                return
            self._filling = True

        def fill() -> None:
            try:
                self.pool.fill()
            except BerthError as e:
                log.warning("spare network namespaces: %s", e)
            finally:
                with self._fill_lock:
                    self._filling = False

        threading.Thread(target=fill, name="berth-netns-pool", daemon=True).start()

    # ------------------------------------------------------------------ lookup
    def _default(self) -> Network | None:
        return next((n for n in self.mgr.list() if n.default), None)

    def find(self, ref: str) -> Network | str:
        """A network by id, name or unique id prefix: a Network, or "host"/"none"."""
        if not ref:
            raise InvalidArgument('invalid name or ID supplied: ""')
        for name, d in self.predefined.items():
            if ref in (name, d["Id"]):
                return name
        hits = [name for name, d in self.predefined.items() if d["Id"].startswith(ref)]
        try:
            n = self.mgr.get(ref)
        except NoSuchNetwork:
            n = None
        except Ambiguous:
            raise Ambiguous(ambiguous_message(ref, len(hits) + sum(
                x.id.startswith(ref) for x in self.mgr.list()))) from None
        if n is not None:
            if hits and ref not in (n.id, n.name):
                raise Ambiguous(ambiguous_message(ref, len(hits) + 1))
            return n
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise Ambiguous(ambiguous_message(ref, len(hits)))
        raise NoSuchNetwork(f"network {ref} not found")

    def _id_of(self, net: Network | str) -> str:
        return net.id if isinstance(net, Network) else self.predefined[net]["Id"]

    def _name_of(self, net: Network | str) -> str:
        return net.name if isinstance(net, Network) else net

    # ------------------------------------------------------------------ API views
    def _ipam_config(self, n: Network) -> list[dict]:
        cfg: dict = {"Subnet": n.subnet}
        if n.user_subnet:
            if n.ip_range:
                cfg["IPRange"] = n.ip_range
            if n.user_gateway:
                cfg["Gateway"] = n.gateway
            if n.aux:
                cfg["AuxiliaryAddresses"] = dict(n.aux)
        else:
            cfg["Gateway"] = n.gateway
        return [cfg]

    def _containers_of(self, net: Network | str) -> dict:
        out = {}
        containers = self.engine.containers
        if isinstance(net, Network):
            for ep in list(net.endpoints.values()):
                c = containers.by_id.get(ep.sandbox_id)
                out[ep.sandbox_id] = {
                    "Name": c.name.lstrip("/") if c is not None else "",
                    "EndpointID": ep.id, "MacAddress": ep.mac,
                    "IPv4Address": f"{ep.ip}/{net.prefixlen}", "IPv6Address": ""}
            return out
        nid = self.predefined[net]["Id"]
        for c in list(containers.by_id.values()):
            if c.rec["HostConfig"].get("NetworkMode") == net and cs.is_running(c.state):
                out[c.id] = {"Name": c.name.lstrip("/"),
                             "EndpointID": hashlib.sha256((c.id + nid).encode()).hexdigest(),
                             "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
        return out

    def view(self, net: Network | str, containers: bool = True) -> dict:
        if isinstance(net, Network):
            return {
                "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
                "Driver": "bridge", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": net.ipam_options,
                         "Config": self._ipam_config(net)},
                "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": self._containers_of(net) if containers else {},
                "Options": dict(net.options), "Labels": dict(net.labels)}
        d = self.predefined[net]
        return {"Name": net, "Id": d["Id"], "Created": d["Created"], "Scope": "local",
                "Driver": "host" if net == "host" else "null", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": []},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": self._containers_of(net) if containers else {},
                "Options": {}, "Labels": {}}

    def _all(self) -> list[Network | str]:
        return [*self.mgr.list(), *PREDEFINED_EMPTY]

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        """``GET /networks``: dockerd lists without the containers (inspect has them)."""
        filters = filters or {}
        for k in filters:
            if k not in LIST_FILTERS:
                raise InvalidArgument(f"Invalid filter '{k}'")
        for t in filters.get("type", []):
            if t not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        for d in filters.get("dangling", []):
            if d.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={d}'")
        return [self.view(n, containers=False) for n in self._all() if self._match(n, filters)]

    def _match(self, net: Network | str, f: dict[str, list[str]]) -> bool:
        v = self.view(net, containers=False)
        builtin = not isinstance(net, Network) or net.default
        if f.get("driver") and v["Driver"] not in f["driver"]:
            return False
        if f.get("id") and not any(v["Id"].startswith(x) for x in f["id"]):
            return False
        if f.get("name") and not any(x in v["Name"] for x in f["name"]):
            return False
        if f.get("scope") and "local" not in f["scope"]:
            return False
        if f.get("type") and ("builtin" if builtin else "custom") not in f["type"]:
            return False
        if f.get("label") and not _labels_match(v["Labels"], f["label"]):
            return False
        if f.get("label!") and _labels_match(v["Labels"], f["label!"]):
            return False
        if f.get("dangling"):
            want = f["dangling"][-1].lower() in ("true", "1")
            # dockerd: dangling means user-defined and without containers
            dangling = not builtin and not self._containers_of(net)
            if dangling != want:
                return False
        return True

    def inspect(self, ref: str, verbose: bool = False, scope: str = "") -> dict:
        net = self.find(ref)
        if scope and scope != "local":
            raise NoSuchNetwork(f"network {ref} not found")
        return self.view(net)

    # ------------------------------------------------------------------ create, remove, prune
    def create(self, body: dict) -> dict:
        """``POST /networks/create``: ``{"Id", "Warning"}``."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid network config")
        name = body.get("Name") or ""
        driver = body.get("Driver") or "bridge"
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 networks are not supported by berth (EnableIPv6)")
        if body.get("Ingress"):
            raise PermissionDenied("ingress networks need swarm mode, which berth has not")
        if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
            raise InvalidArgument("config-only networks are not supported by berth")
        # dockerd outside a swarm, in its words
        if body.get("Scope") == "swarm":
            raise PermissionDenied("cannot create a swarm scoped network when swarm is not "
                                   "active")
        if body.get("Scope") not in (None, "", "local"):
            raise PermissionDenied('This node is not a swarm manager. Use "docker swarm init" '
                                   'or "docker swarm join" to connect this node to swarm and '
                                   'try again.')
        ipam_in = body.get("IPAM") or {}
        if (ipam_in.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_in["Driver"]}" not found')
        pools = [p for p in ipam_in.get("Config") or [] if p]
        v4 = []
        for p in pools:
            sub = p.get("Subnet") or ""
            if ":" in sub or ":" in (p.get("Gateway") or ""):
                raise InvalidArgument(f"IPv6 subnets are not supported by berth: {sub}")
            if not sub:
                raise InvalidArgument("Invalid subnet  : invalid CIDR address: ")
            v4.append(p)
        if len(v4) > 1:
            raise PermissionDenied("bridge driver doesn't support multiple subnets")
        pool = v4[0] if v4 else {}
        labels = body.get("Labels") or {}
        options = body.get("Options") or {}
        if not isinstance(labels, dict) or not isinstance(options, dict):
            raise InvalidArgument("labels and options must be objects of strings")
        if name in ("bridge", *PREDEFINED_EMPTY):
            raise PermissionDenied(f"operation is not permitted on predefined {name} network")
        if any(n.name == name for n in self.mgr.list()):
            raise Conflict(f"network with name {name} already exists")
        n = self.mgr.create(
            name, subnet=pool.get("Subnet") or None, gateway=pool.get("Gateway") or None,
            ip_range=pool.get("IPRange") or None, internal=bool(body.get("Internal")),
            options={str(k): str(v) for k, v in options.items()},
            labels={str(k): str(v) for k, v in labels.items()}, driver=driver,
            attachable=bool(body.get("Attachable")),
            aux_addresses=pool.get("AuxiliaryAddresses") or None,
            ipam_options=ipam_in.get("Options") if "Options" in ipam_in else None)
        self.events.publish("network", "create", n.id, {"name": n.name, "type": "bridge"})
        return {"Id": n.id, "Warning": ""}

    def remove(self, ref: str) -> None:
        net = self.find(ref)
        if not isinstance(net, Network) or net.default:
            name = self._name_of(net)
            raise PermissionDenied(f"{name} is a pre-defined network and cannot be removed")
        self.mgr.remove(net.id)
        self.events.publish("network", "destroy", net.id, {"name": net.name, "type": "bridge"})

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        filters = filters or {}
        for k in filters:
            if k not in PRUNE_FILTERS:
                raise InvalidArgument(f"invalid filter '{k}'")
        until = None
        if filters.get("until"):
            until = _until(filters["until"][-1])
        gone = []
        for n in self.mgr.list():
            if n.default or n.endpoints:
                continue
            if filters.get("label") and not _labels_match(n.labels, filters["label"]):
                continue
            if filters.get("label!") and _labels_match(n.labels, filters["label!"]):
                continue
            if until is not None and cs.parse_rfc3339(n.created) >= until:
                continue
            try:
                self.mgr.remove(n.id)
            except BerthError:
                continue
            self.events.publish("network", "destroy", n.id, {"name": n.name, "type": "bridge"})
            gone.append(n.name)
        return {"NetworksDeleted": gone or None}

    # ------------------------------------------------------------------ the container seam
    @staticmethod
    def check_options(config: dict, host: dict) -> list[str]:
        return check_options(config, host)

    def check_mode(self, mode: str) -> None:
        """At create: the network (or container) the mode names must exist.

        A 400, not dockerd's 404 at start: the container is not made (nothing changes on
        bad input), and the docker CLI takes any 404 from create for a missing image and
        would go and pull it."""
        try:
            if mode.startswith("container:"):
                self.engine.containers.get(mode.split(":", 1)[1])
            elif mode == "bridge" and not self.default_enabled:
                raise NoSuchNetwork("network bridge not found")
            elif mode not in ("default", "none", "host"):
                self.find(mode)
        except NotFound as e:
            raise InvalidArgument(e.message) from None

    def created(self, rec: dict) -> None:
        """At create: the record's NetworkSettings from NetworkMode and EndpointsConfig."""
        host = rec["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        eps = dict((rec.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        for name, cfg in eps.items():
            _check_endpoint_config(name, cfg or {})
        wanted: dict[str, dict] = {}
        if mode.startswith("container:"):
            if eps:
                raise NetworkModeConflict("conflicting options: container type network can't be "
                                          "used with other networks")
            # dockerd keeps the joined container by its full id (compose compares it so)
            try:
                host["NetworkMode"] = "container:" + \
                    self.engine.containers.get(mode.split(":", 1)[1]).id
            except NotFound as e:
                raise InvalidArgument(e.message) from None
        else:
            primary = _mode_name(mode)
            cfg = dict(eps.pop(primary, None) or eps.pop(mode, None) or {})
            mac = rec["Config"].get("MacAddress")
            if mac and not cfg.get("MacAddress"):
                cfg["MacAddress"] = mac
            _check_endpoint_config(primary, cfg)
            wanted[primary] = cfg
            if primary in PREDEFINED_EMPTY and eps:
                raise NetworkModeConflict(
                    f"container cannot be connected to multiple networks with one of the "
                    f"networks in {'host' if primary == 'host' else 'private (none)'} mode")
            for name, extra in eps.items():
                try:
                    net = self.find(name)
                except NotFound as e:
                    raise InvalidArgument(e.message) from None  # a 400: see check_mode
                if isinstance(net, str):
                    raise NetworkModeConflict(f"container cannot be connected to {name} network "
                                              "and others")
                wanted[self._name_of(net)] = dict(extra or {})
        rec["NetworkSettings"] = {
            "SandboxID": "", "SandboxKey": "", "Ports": {},
            "Networks": {k: _endpoint_view(v) for k, v in wanted.items()},
            "EndpointsConfig": wanted}

    def _settings(self, rec: dict) -> dict:
        ns = rec.get("NetworkSettings")
        if ns is None or "EndpointsConfig" not in ns:
            # a record made before the network service: its mode is its one network
            mode = rec["HostConfig"].get("NetworkMode") or "default"
            wanted = {} if mode.startswith("container:") else {_mode_name(mode): {}}
            ns = {"SandboxID": "", "SandboxKey": "", "Ports": {},
                  "Networks": {k: _endpoint_view(v) for k, v in wanted.items()},
                  "EndpointsConfig": wanted}
        return {**ns, "Networks": dict(ns["Networks"]),
                "EndpointsConfig": dict(ns["EndpointsConfig"])}

    def sandbox(self, c) -> dict:
        """At start (worker thread): the container's namespace, endpoints and ports."""
        rec = c.rec
        mode = rec["HostConfig"].get("NetworkMode") or "default"
        if mode.startswith("container:"):
            return self._join(c, mode.split(":", 1)[1])
        sid = c.id
        path = self.mgr.sandbox_path(sid)
        if os.path.lexists(path):
            self.mgr.destroy_sandbox(sid)  # what a crash left of a previous start
        self.pool.take(path)
        self._refill()
        try:
            return self._plug(c, sid, path)
        except BaseException:
            self.mgr.destroy_sandbox(sid)
            raise

    def _plug(self, c, sid: str, path: str) -> dict:
        rec = c.rec
        host, cfg = rec["HostConfig"], rec["Config"]
        ns = self._settings(rec)
        name = c.name.lstrip("/")
        hostname = cfg.get("Hostname") or _short(c.id)
        plugged = []
        for net_name, want in list(ns["EndpointsConfig"].items()):
            if net_name == "bridge" and not self.default_enabled and \
                    host.get("NetworkMode") in ("", "default"):
                continue  # berthd --bridge none: the default network is no network
            net = self._for_start(ns["Networks"].get(net_name) or {}, net_name)
            if not isinstance(net, Network):
                raise NetworkModeConflict(f"container cannot be connected to {net} network")
            view, ep = self._attach(c, net, want, name, hostname)
            ns["Networks"].pop(net_name, None)
            ns["Networks"][net.name] = view
            if net_name != net.name:
                ns["EndpointsConfig"][net.name] = ns["EndpointsConfig"].pop(net_name)
            plugged.append((net, ep))
        ports = self._publish(c, sid, plugged)
        ns.update(SandboxID=sid, SandboxKey=path, Ports=ports)
        hosts = self._hosts_text(c, plugged)
        resolv = self.mgr.resolv_conf(sid, dns=host.get("Dns") or [],
                                      search=[s for s in host.get("DnsSearch") or [] if s != "."],
                                      options=host.get("DnsOptions") or [])
        rec["NetworkSettings"] = ns
        for net, _ep in plugged:
            self.events.publish("network", "connect", net.id,
                                {"container": c.id, "name": net.name, "type": "bridge"})
        return {"netns": path, "addresses": [ep.ip for _, ep in plugged],
                "resolv_conf": resolv, "hosts": hosts, "env": self._link_env(c, plugged)}

    def _for_start(self, view: dict, name: str) -> Network | str:
        """The network an endpoint names: by the id it had (a network of the same name made
        since is another network, as in dockerd), else by name."""
        if view.get("NetworkID"):
            try:
                return self.find(view["NetworkID"])
            except NoSuchNetwork:
                raise NoSuchNetwork(f"network {view['NetworkID']} not found") from None
        return self.find(name)

    def _attach(self, c, net: Network, want: dict, name: str, hostname: str):
        ipv4 = (want.get("IPAMConfig") or {}).get("IPv4Address") or None
        if ipv4 and net.default:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        user_aliases = list(want.get("Aliases") or [])
        aliases = list(user_aliases)
        dns_names = None
        if not net.default:
            if _short(c.id) not in aliases:
                aliases.append(_short(c.id))
            if hostname != name and hostname not in aliases:
                aliases.append(hostname)
            dns_names = list(dict.fromkeys([name, *user_aliases, _short(c.id), hostname]))
        ep = self.mgr.attach(c.id, net.id, ip=ipv4, aliases=aliases,
                             names=[name] if not net.default else [],
                             mac=want.get("MacAddress") or None,
                             dns=c.rec["HostConfig"].get("Dns") or [], links=_links(want))
        view = _endpoint_view(want)
        view.update(Aliases=aliases or None, NetworkID=net.id, EndpointID=ep.id,
                    Gateway=net.gateway, IPAddress=ep.ip, IPPrefixLen=net.prefixlen,
                    MacAddress=ep.mac, DNSNames=dns_names)
        return view, ep

    def _publish(self, c, sid: str, plugged: list) -> dict:
        """HostConfig.PortBindings and -P's exposed ports onto the first network's address."""
        rec = c.rec
        host, cfg = rec["HostConfig"], rec["Config"]
        exposed_ports = dict(cfg.get("ExposedPorts") or {})
        port_bindings = dict(host.get("PortBindings") or {})
        for key in port_bindings:
            exposed_ports.setdefault(key if "/" in key else f"{key}/tcp", {})
        bindings = from_docker(port_bindings)
        if host.get("PublishAllPorts"):
            given = {f"{b.container_port}/{b.proto}" for b in bindings}
            bindings += [b for b in exposed([k for k in exposed_ports if k not in given])]
        out: dict = {}
        if plugged and all(net.internal for net, _ in plugged):
            return out  # dockerd: no external connectivity, no ports (exposed ones neither)
        for key in exposed_ports:
            port, _, proto = key.partition("/")
            out[f"{port}/{proto or 'tcp'}"] = None
        if not bindings or not plugged:
            return out
        try:
            pubs = self.mgr.publish(sid, bindings)
        except PortInUse as e:
            ep = next(ep for net, ep in plugged if not net.internal)
            raise PortInUse(f"driver failed programming external connectivity on endpoint "
                            f"{c.name.lstrip('/')} ({ep.id}): {e}") from None
        for p in pubs:
            out.setdefault(f"{p.container_port}/{p.proto}", None)
            key = f"{p.container_port}/{p.proto}"
            out[key] = (out[key] or []) + [{"HostIp": p.host_ip or "0.0.0.0",
                                            "HostPort": str(p.host_port)}]
        return out

    def _hosts_text(self, c, plugged: list) -> str:
        cfg, host = c.rec["Config"], c.rec["HostConfig"]
        gateway = self.mgr.host_gateway()
        extra = []
        for spec in host.get("ExtraHosts") or []:
            extra.append(files.parse_extra_host(spec, gateway))
        extra += self._legacy_links(c, plugged)
        ip = plugged[0][1].ip if plugged else None
        return files.hosts(cfg.get("Hostname") or _short(c.id), ip, extra,
                           cfg.get("Domainname") or "")

    def _bridge_links(self, c, plugged: list):
        """``--link name:alias`` on the default bridge: (linked container, alias, its address)
        for each link whose container is on that bridge."""
        if not plugged or not plugged[0][0].default:
            return
        for link in c.rec["HostConfig"].get("Links") or []:
            target, _, alias = link.partition(":")
            try:
                other = self.engine.containers.get(target.lstrip("/"))
            except NotFound:
                continue
            for ep in self.mgr.endpoints_of(other.id):
                if ep.network_id == plugged[0][0].id:
                    yield other, alias.rsplit("/", 1)[-1] or other.name.lstrip("/"), ep.ip
                    break

    def _link_env(self, c, plugged: list) -> list[str]:
        """Links' environment as dockerd gives it (ALIAS_NAME, ALIAS_PORT*, ALIAS_ENV_*)."""
        out: list[str] = []
        for other, alias, ip in self._bridge_links(c, plugged):
            ocfg = other.rec["Config"]
            out += link_env(f"/{c.name.lstrip('/')}/{alias}", ip, ocfg.get("Env") or [],
                            list(ocfg.get("ExposedPorts") or {}))
        return out

    def _legacy_links(self, c, plugged: list) -> list[tuple[str, str]]:
        """Links' /etc/hosts lines, as dockerd writes them."""
        return [(" ".join(dict.fromkeys([alias, _short(other.id), other.name.lstrip("/")])), ip)
                for other, alias, ip in self._bridge_links(c, plugged)]

    def _join(self, c, ref: str) -> dict:
        """``--network container:X``: X's namespace, its /etc files and hostname."""
        other = self.engine.containers.get(ref)
        if other.id == c.id:
            raise InvalidArgument("cannot join own network")
        pid = other.state.get("Pid")
        if not cs.is_running(other.state) or not pid:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        omode = other.rec["HostConfig"].get("NetworkMode") or "default"
        if omode == "host":
            netns = "host"
        else:
            path = self.mgr.sandbox_path(other.id)
            netns = path if sandbox.exists(path) else f"/proc/{pid}/ns/net"
        cfg = c.rec["Config"]
        cfg["Hostname"] = other.rec["Config"].get("Hostname") or cfg.get("Hostname")
        cfg["Domainname"] = other.rec["Config"].get("Domainname", "")
        out = {"netns": netns, "addresses": [], "resolv_conf": None, "hosts": None}
        for key, field in (("hosts", "HostsPath"), ("resolv_conf", "ResolvConfPath")):
            try:
                with open(other.rec[field]) as f:
                    out[key] = f.read()
            except (OSError, KeyError):
                pass
        ns = self._settings(c.rec)
        ns.update(Networks={}, EndpointsConfig={})
        c.rec["NetworkSettings"] = ns
        return out

    def release(self, c) -> None:
        """After the last process exited: ports, addresses, veths and the namespace go."""
        mode = c.rec["HostConfig"].get("NetworkMode") or "default"
        if mode.startswith("container:"):
            return
        sid = c.id
        eps = self.mgr.endpoints_of(sid)
        joined = [o for o in list(self.engine.containers.by_id.values())
                  if o.id != c.id and cs.is_running(o.state) and
                  (o.rec["HostConfig"].get("NetworkMode") or "") in
                  (f"container:{c.id}", f"container:{c.name.lstrip('/')}",
                   f"container:{_short(c.id)}")]
        if joined:
            # Containers still in this namespace would keep its veths (and addresses that
            # are free again): take them out explicitly, as dockerd's endpoint leave does.
            for ep in eps:
                try:
                    self.mgr.detach(sid, ep.network_id)
                except BerthError as e:
                    log.warning("container %s: detach: %s", _short(c.id), e)
        if eps or os.path.lexists(self.mgr.sandbox_path(sid)):
            self.mgr.destroy_sandbox(sid)
        ns = c.rec.get("NetworkSettings")
        if not ns:
            return
        nets = {}
        for name, view in (ns.get("Networks") or {}).items():
            view = dict(view)
            want = (ns.get("EndpointsConfig") or {}).get(name) or {}
            for k in _OPERATIONAL:
                if k != "NetworkID":
                    view[k] = 0 if k.endswith("PrefixLen") else ""
            view["MacAddress"] = want.get("MacAddress") or ""
            nets[name] = view
        c.rec["NetworkSettings"] = {**ns, "Networks": nets, "Ports": {}}
        for ep in eps:
            try:
                n = self.mgr.get(ep.network_id)
            except NotFound:
                continue
            self.events.publish("network", "disconnect", n.id,
                                {"container": c.id, "name": n.name, "type": "bridge"})

    def renamed(self, c, old: str) -> None:
        """``docker rename``: the new name resolves on the container's networks, not the old."""
        old, new = old.lstrip("/"), c.name.lstrip("/")
        self.mgr.rename(c.id, old, new)
        ns = c.rec.get("NetworkSettings")
        if ns and ns.get("Networks"):
            nets = {}
            for k, v in ns["Networks"].items():
                v = dict(v)
                if v.get("DNSNames"):
                    v["DNSNames"] = [new if x == old else x for x in v["DNSNames"]]
                nets[k] = v
            c.rec["NetworkSettings"] = {**ns, "Networks": nets}

    # ------------------------------------------------------------------ connect, disconnect
    def _mode_check(self, c, net: Network | str) -> None:
        mode = c.rec["HostConfig"].get("NetworkMode") or "default"
        if mode == "host" or net == "host":
            raise InvalidArgument("container cannot be disconnected from host network or "
                                  "connected to host network")
        if mode == "none" or net == "none":
            raise InvalidArgument("container cannot be connected to multiple networks with one "
                                  "of the networks in private (none) mode")
        if mode.startswith("container:"):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")

    async def connect(self, ref: str, container: str, endpoint: dict | None) -> None:
        import asyncio

        if not container:
            raise InvalidArgument('invalid name or ID supplied: ""')
        c = self.engine.containers.get(container)  # dockerd looks the container up first
        net = self.find(ref)
        async with c.lock:
            await asyncio.to_thread(self._connect, c, net, dict(endpoint or {}))

    def _connect(self, c, net: Network | str, want: dict) -> None:
        self._mode_check(c, net)
        name = self._name_of(net)
        _check_endpoint_config(name, want)
        ns = self._settings(c.rec)
        if name in ns["Networks"]:
            raise PermissionDenied(f"endpoint with name {c.name.lstrip('/')} already exists in "
                                   f"network {name}")
        if (want.get("IPAMConfig") or {}).get("IPv4Address") and not net.user_subnet:
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        if cs.is_running(c.state) and sandbox.exists(self.mgr.sandbox_path(c.id)):
            view, ep = self._attach(c, net, want, c.name.lstrip("/"),
                                    c.rec["Config"].get("Hostname") or _short(c.id))
            ns["Networks"][name] = view
            ns["EndpointsConfig"][name] = want
            c.rec["NetworkSettings"] = ns
            self._rewrite_resolv(c)
            self.events.publish("network", "connect", net.id,
                                {"container": c.id, "name": name, "type": "bridge"})
        else:
            view = _endpoint_view(want)
            if isinstance(net, Network) and not net.default and \
                    _short(c.id) not in (view["Aliases"] or []):
                # dockerd's updateNetworkConfig: the short id is an alias on user networks
                view["Aliases"] = [*(view["Aliases"] or []), _short(c.id)]
            ns["Networks"][name] = view
            ns["EndpointsConfig"][name] = want
            c.rec["NetworkSettings"] = ns
        self.engine.containers._save(c)

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        import asyncio

        if not container:
            raise InvalidArgument('invalid name or ID supplied: ""')
        try:
            c = self.engine.containers.get(container)
        except NotFound:
            if not force:
                raise
            # dockerd's ForceEndpointDelete: an endpoint left by a container that is gone
            net = self.find(ref)
            stale = [e for e in (net.endpoints.values() if isinstance(net, Network) else ())
                     if container in e.names]
            if not stale:
                raise NotFound(f"endpoint {container} not found") from None
            await asyncio.to_thread(self.mgr.detach, stale[0].sandbox_id, net.id)
            return
        net = self.find(ref)
        async with c.lock:
            await asyncio.to_thread(self._disconnect, c, net)

    def _disconnect(self, c, net: Network | str) -> None:
        mode = c.rec["HostConfig"].get("NetworkMode") or "default"
        if mode == "host" or net == "host":
            raise InvalidArgument("container cannot be disconnected from host network or "
                                  "connected to host network")
        name = self._name_of(net)
        ns = self._settings(c.rec)
        if name not in ns["Networks"]:
            # dockerd's two messages: a stopped container's is "the network"
            the = "" if cs.is_running(c.state) else "the "
            raise NotFound(f"container {c.id} is not connected to {the}network {name}")
        if isinstance(net, Network) and any(e.network_id == net.id
                                            for e in self.mgr.endpoints_of(c.id)):
            self.mgr.detach(c.id, net.id)
            self.events.publish("network", "disconnect", net.id,
                                {"container": c.id, "name": name, "type": "bridge"})
            left = self.mgr.ports(c.id)
            ports = {k: None for k in ns.get("Ports") or {}}
            for p in left:
                key = f"{p.container_port}/{p.proto}"
                ports[key] = (ports.get(key) or []) + [{"HostIp": p.host_ip or "0.0.0.0",
                                                        "HostPort": str(p.host_port)}]
            ns["Ports"] = ports
        ns["Networks"].pop(name, None)
        ns["EndpointsConfig"].pop(name, None)
        c.rec["NetworkSettings"] = ns
        self.engine.containers._save(c)

    def _rewrite_resolv(self, c) -> None:
        """A running container that joins its first network with a resolver: its resolv.conf
        names the resolver now (rewritten in place: the container has the file bind-mounted)."""
        path = c.rec.get("ResolvConfPath")
        if not path or not os.path.exists(path):
            return
        host = c.rec["HostConfig"]
        text = self.mgr.resolv_conf(c.id, dns=host.get("Dns") or [],
                                    search=[s for s in host.get("DnsSearch") or [] if s != "."],
                                    options=host.get("DnsOptions") or [])
        with open(path, encoding="utf-8", errors="replace") as f:
            if f.read() == text:
                return
        with open(path, "w") as f:
            f.write(text)


def _labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _until(v: str) -> float:
    from .images import parse_until

    return parse_until(v)


def setup_network(engine, bridge: str | None = None, bip: str | None = None,
                  nft_table: str | None = None, mtu: int | None = None, **_ignored) -> None:
    """Build the network service on ``engine`` and plug it into the container service."""
    engine.networks = NetworkService(engine, engine.root, engine.run, bridge=bridge or "berth0",
                                     bip=bip, table=nft_table or "berth", mtu=mtu)
    engine.containers.network = engine.networks
