"""Containers as operations: create, start, stop, kill, wait, remove, and what they keep.

    create ── image resolved, config merged and checked, rw snapshot prepared, volumes made,
              ROOT/containers/<id>/config.v2.json written ─────────────────▶ created
    start  ── rootfs mounted (overlay), /etc files, user, bundle config.json written,
              shim forked from the zygote (runtime create), pending attachers connected,
              shim start (runtime start), monitor task following the shim ──▶ running
    exit   ── the shim reports it (or dies: socket EOF + pidfd); the shim has run the
              runtime's delete; the rootfs is unmounted, volumes released ──▶ exited
    remove ── snapshot removed, state dir and run dir deleted, anonymous volumes (-v) ──▶ gone

State on disk, per container:
- ``ROOT/containers/<id>/config.v2.json``: the record (Config, HostConfig, State, mount
  points, names) — written atomically; fsynced at create unless the container is --rm (a crash
  loses only a container that would be removed anyway);
- ``ROOT/containers/<id>/{hostname,hosts,resolv.conf,<id>-json.log}``;
- ``RUN/c/<id12>/``: the OCI bundle (config.json, rootfs/ mount point) and the shim's run dir
  (shim.sock, state.json, runtime.log); volatile by design.

Concurrency: operations run on the daemon's event loop (the shim client is asyncio); blocking
work (mounts, file writes, copies) goes to worker threads. One ``asyncio.Lock`` per container
serialises lifecycle changes (start/stop/remove/pause); kill and wait do not take it. State
changes go through berth.engine.container_state.transition only.

Start-up (``restore``): every record is loaded; a container whose shim still answers is
followed again (live restore); one whose shim is gone is marked exited with what the shim's
state.json says (137 when the shim died without a record) and its rootfs, bundle and cgroup
are cleaned up; run dirs and mounts of containers that have no record are removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time

from berth import atomic
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound

from . import container_state as cs
from . import etcfiles, hostconfig, mounts, oci, rootpath, users

log = logging.getLogger("berth.engine")

STOP_TIMEOUT = 10
SIGKILL = 9


class NoSuchContainer(NotFound):
    pass


class NameConflict(Conflict):
    pass


class NotRunning(Conflict):
    pass


class NotModified(BerthError):
    """The container already is where the call would put it (the API answers 304)."""


class StartFailed(InvalidArgument):
    """The runtime refused to start the process (a missing or non-executable command)."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _words("""
    admiring amazing bold brave busy calm clever cool dazzling determined eager ecstatic
    elegant epic festive focused friendly gallant gifted happy hopeful jolly keen kind
    laughing loving lucid magical modest nice nifty optimistic peaceful pensive practical
    quirky relaxed serene sharp stoic sweet tender trusting upbeat vibrant vigilant wizardly
    youthful zealous
""")
_NAMES = _words("""
    albattani allen archimedes babbage bell bohr curie darwin dijkstra einstein euclid
    fermat feynman franklin galileo gauss goodall hawking hopper hypatia johnson kepler
    knuth lamarr leakey lovelace mayer mccarthy meitner newton noether pasteur perlman pike
    ritchie shannon sinoussi tesla thompson torvalds turing wiles wright yonath
""")


def _valid_name(name: str) -> bool:
    n = name[1:] if name.startswith("/") else name
    if len(n) < 2 or not (n[0].isascii() and n[0].isalnum()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in n)


def _runtime_path(name: str) -> str | None:
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
                            "/bin").split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    return None


def _init_binary() -> str | None:
    """--init's reaper: Debian's tini-static (what Docker ships as docker-init)."""
    for p in ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init"):
        if os.access(p, os.X_OK):
            return p
    return None


class Container:
    """One container in memory: its record (what config.v2.json holds) and live links."""

    __slots__ = ("attach_waiters", "client", "exit_waiters", "health", "id", "lock", "monitor",
                 "mounted", "rec", "removed", "removed_waiters", "stopping", "volumes_held")

    def __init__(self, rec: dict) -> None:
        self.rec = rec
        self.id: str = rec["ID"]
        self.lock = asyncio.Lock()
        self.client = None  # ShimClient while a shim runs the container
        self.monitor: asyncio.Task | None = None
        self.exit_waiters: list[asyncio.Future] = []
        self.removed_waiters: list[asyncio.Future] = []
        self.attach_waiters: list[asyncio.Future] = []
        self.mounted = False
        self.removed = False
        self.stopping = False
        self.volumes_held: list[str] = []
        self.health = None  # the HealthMonitor while a check runs

    @property
    def name(self) -> str:
        return self.rec["Name"]

    @property
    def state(self) -> dict:
        return self.rec["State"]


class PendingAttach:
    """An attach that came before the container started: it gets the shim's client as soon
    as the shim exists, and start waits until it is attached (or gives up after a while)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.client_future: asyncio.Future = loop.create_future()
        self.attached = asyncio.Event()

    def ready(self, client) -> None:
        if not self.client_future.done():
            self.client_future.set_result(client)

    async def wait_attached(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.attached.wait(), timeout)
        except TimeoutError:
            pass


class ContainerService:
    def __init__(self, engine, root: str, run: str, default_runtime: str | None = None,
                 cgroup_parent: str = "berth") -> None:
        self.engine = engine
        self.events = engine.events
        self.root = os.path.join(root, "containers")
        self.run = os.path.join(run, "c")
        self.runtime_root = os.path.join(run, "runtime")
        self.zygote_path = os.path.join(run, "shim-zygote.sock")
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        os.makedirs(self.run, mode=0o711, exist_ok=True)
        os.makedirs(self.runtime_root, mode=0o700, exist_ok=True)
        self.cgroup_parent = cgroup_parent.strip("/") or "berth"
        self.runtimes: dict[str, str] = {}
        for name in ("berth-runtime", "runc"):
            p = _runtime_path(name)
            if p:
                self.runtimes[name] = p
        if default_runtime and default_runtime not in self.runtimes:
            p = _runtime_path(default_runtime)
            if p:
                self.runtimes[os.path.basename(default_runtime)] = p
                default_runtime = os.path.basename(default_runtime)
        self.default_runtime = default_runtime if default_runtime in self.runtimes else \
            ("berth-runtime" if "berth-runtime" in self.runtimes else "runc")
        self.by_id: dict[str, Container] = {}
        self.by_name: dict[str, str] = {}
        self._cleanups: set[asyncio.Future] = set()
        self.zygote = None
        self._zygote_lock: asyncio.Lock | None = None
        self.execs = None  # set by the exec service
        self.network = None  # the network service, when there is one
        self._load()
        engine.volumes.in_use = self.volume_users
        store = getattr(engine.images, "store", None)
        if store is not None and hasattr(store, "add_root_provider"):
            store.add_root_provider(self._gc_roots)
        if hasattr(engine.images, "image_users"):
            # rmi's conflicts as dockerd's: a running user is hard, a stopped one soft
            engine.images.image_users = lambda iid: [
                (c.id, cs.is_running(c.state)) for c in list(self.by_id.values())
                if c.rec["Image"] == iid]

    # ------------------------------------------------------------------ records on disk
    def _dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def _run_dir(self, cid: str) -> str:
        return os.path.join(self.run, cid[:12])

    def _load(self) -> None:
        for cid in os.listdir(self.root):
            p = os.path.join(self.root, cid, "config.v2.json")
            try:
                with open(p) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                log.warning("container %s: no readable record; removing its leftovers", cid)
                self._sweep_leftovers(cid)
                continue
            c = Container(rec)
            self.by_id[c.id] = c
            self.by_name[c.name] = c.id

    def _save(self, c: Container, sync: bool = False) -> None:
        atomic.write_text(os.path.join(self._dir(c.id), "config.v2.json"),
                          json.dumps(c.rec, separators=(",", ":")), 0o600, sync=sync)

    def _gc_roots(self) -> dict:
        images, snaps = set(), set()
        for c in list(self.by_id.values()):
            images.add(c.rec["Image"])
            if c.rec.get("SnapshotKey"):
                snaps.add(c.rec["SnapshotKey"])
        return {"images": images, "snapshots": snaps}

    def volume_users(self, name: str) -> list[str]:
        return [c.id for c in list(self.by_id.values())
                if any(p.get("Name") == name for p in c.rec.get("MountPoints", []))]

    def image_users(self, image_id: str) -> list[str]:
        return [c.id for c in list(self.by_id.values()) if c.rec["Image"] == image_id]

    # ------------------------------------------------------------------ lookup
    def get(self, ref: str) -> Container:
        """By full id, name (with or without /), or unique id prefix — Docker's order."""
        c = self.by_id.get(ref)
        if c is not None:
            return c
        name = ref if ref.startswith("/") else "/" + ref
        cid = self.by_name.get(name)
        if cid is not None:
            return self.by_id[cid]
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            found = [c for i, c in list(self.by_id.items()) if i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(f"No such container: {ref}")

    def _new_id(self) -> str:
        while True:
            cid = os.urandom(32).hex()
            short = cid[:12]
            if short.isdigit():
                continue  # Docker's rule: a short id must not look like a number
            if any(i.startswith(short) for i in list(self.by_id)):
                continue
            return cid

    def _new_name(self) -> str:
        import random

        for i in range(1000):
            n = f"/{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"
            if i > 10:
                n += str(random.randint(0, 9))
            if n not in self.by_name:
                return n
        raise Conflict("could not generate a container name")

    # ------------------------------------------------------------------ create
    def create(self, body: dict, name: str = "") -> dict:
        """``POST /containers/create`` (blocking: run it in a worker thread)."""
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        host = dict(body.get("HostConfig") or {})
        if not host.get("Runtime") and isinstance(config.get("Runtime"), str):
            # docker-py's create_container(runtime=) sends it beside Image, where dockerd
            # does not look (its runc default hides that); the user asked for that runtime
            host["Runtime"] = config["Runtime"]
        if name and not _valid_name(name):
            raise InvalidArgument(f"Invalid container name ({name}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("config cannot be empty in order to create a container")
        iid = self.engine.images.resolve(image_ref)
        image_cfg = self._image_config(iid)
        hostconfig.check(config, host, os.cpu_count() or 1, tuple(self.runtimes))
        warnings = hostconfig.adjust(host)
        net_mode = host.get("NetworkMode") or "default"
        if self.network is not None:
            warnings += self.network.check_options(config, host)
        self._check_network(net_mode)
        points = mounts.plan(config, host, image_cfg.get("Volumes"))
        config = _merge_image_config(config, image_cfg)
        entry = config.get("Entrypoint") or []
        if entry == [""]:
            entry = []
        args = list(entry) + list(config.get("Cmd") or [])
        if not args:
            raise InvalidArgument("No command specified")
        cid = self._new_id()
        if not config.get("Hostname"):
            config["Hostname"] = os.uname().nodename if net_mode == "host" else cid[:12]
        config, host = hostconfig.complete(config, host, self.default_runtime)
        full_name = ("/" + name.lstrip("/")) if name else None
        with _names_lock:
            if full_name is None:
                full_name = self._new_name()
            elif full_name in self.by_name:
                other = self.by_name[full_name]
                raise NameConflict(f'Conflict. The container name "{full_name}" is already in '
                                   f'use by container "{other}". You have to remove (or rename) '
                                   "that container to be able to reuse that name.")
            self.by_name[full_name] = cid  # reserved; released below on failure
        made_volumes: list[str] = []
        snap_key = f"container-{cid}"
        d = self._dir(cid)
        ok = False
        try:
            for p in points:
                if p["Type"] != "volume":
                    continue
                vols = self.engine.volumes
                if p.get("_anonymous") or not p.get("Name"):
                    v = vols.create("", labels=p.get("_labels"), anonymous=True)
                    p["Name"] = v["Name"]
                    made_volumes.append(v["Name"])
                elif not vols.exists(p["Name"]):
                    vols.create(p["Name"], labels=p.get("_labels"),
                                driver_opts=p.get("_driver_opts"))
                    made_volumes.append(p["Name"])
                p["Source"] = os.path.join(vols.root, p["Name"], "_data")
            os.makedirs(d, 0o710)
            self._prepare_snapshot(snap_key, iid)
            now = cs.now_rfc3339()
            rec = {
                "ID": cid, "Created": now, "Path": args[0], "Args": args[1:],
                "State": cs.new_state(), "Image": iid, "Name": full_name, "RestartCount": 0,
                "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
                "AppArmorProfile": "", "Config": config, "HostConfig": host,
                "MountPoints": points, "SnapshotKey": snap_key,
                "ResolvConfPath": os.path.join(d, "resolv.conf"),
                "HostnamePath": os.path.join(d, "hostname"),
                "HostsPath": os.path.join(d, "hosts"),
                "LogPath": os.path.join(d, f"{cid}-json.log")
                if host["LogConfig"]["Type"] == "json-file" else "",
                "NetworkingConfig": body.get("NetworkingConfig") or {},
                "HasBeenManuallyStopped": False, "HasBeenStartedBefore": False,
                "ImageVolumes": image_cfg.get("Volumes") or {},
                "ImageWorkingDir": image_cfg.get("WorkingDir") or "",
            }
            if self.network is not None:
                self.network.created(rec)  # NetworkSettings from the networking config
            c = Container(rec)
            self._save(c, sync=not host.get("AutoRemove"))
            self.by_id[cid] = c
            ok = True
        finally:
            if not ok:
                with _names_lock:
                    if self.by_name.get(full_name) == cid:
                        del self.by_name[full_name]
                self._remove_snapshot(snap_key)
                shutil.rmtree(d, ignore_errors=True)
                for v in made_volumes:
                    try:
                        self.engine.volumes.remove(v, force=True)
                    except BerthError:
                        pass
        self.events.publish("container", "create", cid, self._event_attrs(c))
        return {"Id": cid, "Warnings": warnings}

    def _check_network(self, mode: str) -> None:
        if self.network is not None:
            self.network.check_mode(mode)
            return
        if mode in ("none", "host", "default", "bridge") or mode.startswith("container:"):
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])
            return
        raise NotFound(f"network {mode} not found")

    def _image_config(self, iid: str) -> dict:
        store = self.engine.images.store
        cfg = store.config(iid)
        return (cfg or {}).get("config") or {}

    def _prepare_snapshot(self, key: str, iid: str) -> None:
        store = self.engine.images.store
        rec = store.get(iid)
        chain = rec.get("chain_ids") or []
        store.snapshots.prepare(key, chain[-1] if chain else None)

    def _remove_snapshot(self, key: str) -> None:
        try:
            self.engine.images.store.snapshots.remove(key)
        except (BerthError, OSError):
            pass

    def _event_attrs(self, c: Container, **extra) -> dict:
        attrs = {"image": c.rec["Config"].get("Image", ""), "name": c.name.lstrip("/")}
        for k, v in (c.rec["Config"].get("Labels") or {}).items():
            attrs.setdefault(k, v)
        attrs.update({k: str(v) for k, v in extra.items()})
        return attrs

    # ------------------------------------------------------------------ start
    async def _zygote(self):
        from berth.shim.client import Zygote

        if self._zygote_lock is None:
            self._zygote_lock = asyncio.Lock()
        async with self._zygote_lock:
            z = self.zygote
            if z is not None and z.proc is not None and z.proc.returncode is None:
                return z
            self.zygote = await Zygote.start(self.zygote_path)
            return self.zygote

    async def start(self, ref: str, checkpoint: str = "") -> None:
        c = self.get(ref)
        async with c.lock:
            st = c.state
            if st["Status"] in (cs.RUNNING, cs.RESTARTING):
                raise NotModified("container already started")
            if st["Status"] == cs.PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if st["Status"] in (cs.REMOVING, cs.DEAD):
                raise Conflict("container is marked for removal and cannot be started")
            err = None
            try:
                await self._start_locked(c)
            except StartFailed as e:
                err = e
        if err is not None:
            # as dockerd: an --rm container that could not start is removed at once
            if c.rec["HostConfig"].get("AutoRemove"):
                await self._remove(c, remove_volumes=True)
            raise err

    async def _start_locked(self, c: Container, restore_restart: bool = False) -> None:
        from berth.shim.client import ShimClient, ShimUnavailable
        from berth.shim.config import ShimOptions

        if c.monitor is not None:
            # the previous run's monitor must have finished its cleanup
            await asyncio.shield(c.monitor)
        run_dir = self._run_dir(c.id)
        try:
            await asyncio.to_thread(self._prepare_bundle, c, run_dir)
        except BerthError as e:
            await asyncio.to_thread(self._teardown, c)
            self._start_failed(c, e, prefix="")
        except BaseException:
            await asyncio.to_thread(self._teardown, c)
            raise
        host = c.rec["HostConfig"]
        cfg = c.rec["Config"]
        pol = host["RestartPolicy"]
        policy = pol["Name"] if pol["Name"] not in ("", "no") else "no"
        if policy == "on-failure" and pol.get("MaximumRetryCount"):
            policy += f":{pol['MaximumRetryCount']}"
        log_cfg = host["LogConfig"].get("Config") or {}
        opts = ShimOptions(
            c.id, run_dir, run_dir, log=c.rec["LogPath"] or None,
            log_max_size=_size_opt(log_cfg.get("max-size")),
            log_max_file=int(log_cfg.get("max-file") or 1),
            runtime=self.runtimes[host.get("Runtime") or self.default_runtime],
            runtime_root=os.path.join(self.runtime_root, host.get("Runtime") or
                                      self.default_runtime),
            stdin=bool(cfg.get("OpenStdin")), stdin_once=bool(cfg.get("StdinOnce")),
            restart=policy, restart_count=c.rec.get("RestartCount", 0))
        try:
            zygote = await self._zygote()
            await zygote.spawn(opts)
        except BerthError as e:
            for pa in c.attach_waiters:
                pa.ready(None)
            c.attach_waiters = []
            await asyncio.to_thread(self._teardown, c)
            self._start_failed(c, e)
        client = None
        try:
            client = await ShimClient.connect(run_dir)
            waiters, c.attach_waiters = c.attach_waiters, []
            for pa in waiters:
                pa.ready(client)
            # attachers connect before the process runs, so that they miss nothing
            for pa in waiters:
                await pa.wait_attached(5.0)
            pid = await client.start()
        except (BerthError, ShimUnavailable) as e:
            for pa in c.attach_waiters:
                pa.ready(None)
            c.attach_waiters = []
            if client is not None:
                try:
                    await client.delete(force=True)
                except BerthError:
                    pass
                await client.close()
            await asyncio.to_thread(self._teardown, c)
            self._start_failed(c, e)
        c.client = client
        c.stopping = False
        c.rec["State"] = cs.transition(c.state, "start", c.id, pid=pid)
        c.rec["HasBeenStartedBefore"] = True
        c.rec["HasBeenManuallyStopped"] = False
        self._start_health(c)
        self._save(c)
        self.events.publish("container", "start", c.id, self._event_attrs(c))
        c.monitor = asyncio.ensure_future(self._follow(c))

    def _start_health(self, c: Container) -> None:
        from .health import HealthMonitor, probe_args

        self._stop_health(c)
        if probe_args(c.rec["Config"].get("Healthcheck")) is not None:
            c.health = HealthMonitor(self, c)
            c.health.start()

    def _stop_health(self, c: Container) -> None:
        if c.health is not None:
            c.health.stop()
            c.health = None

    def _start_failed(self, c: Container, e: BaseException,
                      prefix: str = "failed to create task: OCI runtime create failed: "
                      ) -> None:
        msg = str(e)
        if not msg.startswith("OCI runtime"):
            msg = prefix + msg
        # dockerd's translateContainerdStartErr: the words of the runtime's error decide
        low = msg.lower()
        code = 128
        if (c.rec.get("Path") or "").lower() in low and (
                "executable file not found" in low or "no such file or directory" in low):
            code = 127
        if "permission denied" in low:
            code = 126
        if "not a directory" in low:
            msg += (": Are you trying to mount a directory onto a file (or vice-versa)? Check "
                    "if the specified host path exists and is the expected type")
        c.rec["State"] = cs.transition(c.state, "start-failed", c.id, error=msg, exit_code=code)
        self._save(c)
        raise StartFailed(msg) from None

    def _prepare_bundle(self, c: Container, run_dir: str) -> None:
        """Everything the runtime needs on disk: rootfs mounted, /etc files, config.json."""
        from berth.image.snapshot import mount_all

        rec = c.rec
        cfg, host = rec["Config"], rec["HostConfig"]
        os.makedirs(run_dir, 0o711, exist_ok=True)
        rootfs = os.path.join(run_dir, "rootfs")
        os.makedirs(rootfs, 0o755, exist_ok=True)
        if not os.path.ismount(rootfs):
            store = self.engine.images.store
            mount_all(store.snapshots.mounts(rec["SnapshotKey"]), rootfs)
        c.mounted = True
        # volumes: the driver's mount, then Docker's copy-up of the image's content
        for p in rec.get("MountPoints", []):
            if p["Type"] == "volume" and p.get("Name"):
                src = self.engine.volumes.mountpoint(p["Name"])
                c.volumes_held.append(p["Name"])
                p["Source"] = src
                if not p.get("_nocopy") and not p.get("_copied"):
                    _copy_up(rootfs, p["Destination"], src)
                    p["_copied"] = True
            elif p["Type"] == "bind" and not os.path.exists(p["Source"]):
                os.makedirs(p["Source"], 0o755, exist_ok=True)
        uid, gid, gids, home = users.resolve(rootfs, cfg.get("User", ""), host.get("GroupAdd"))
        cwd = cfg.get("WorkingDir") or "/"
        if not cwd.startswith("/"):
            raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an "
                                  "absolute path")
        if cwd != "/":
            rootpath.mkdir_all(rootfs, cwd, 0o755, uid, gid)
        net_mode = host.get("NetworkMode") or "default"
        netns, addresses, resolv, hosts_text, link_env = self._sandbox(c, net_mode)
        if hosts_text is None:
            hosts_text = etcfiles.hosts(net_mode, cfg["Hostname"], cfg.get("Domainname", ""),
                                        addresses, host.get("ExtraHosts"))
        if resolv is None:
            resolv = etcfiles.resolv_conf(net_mode, host.get("Dns"), host.get("DnsSearch"),
                                          host.get("DnsOptions"))
        etc = etcfiles.write_all(self._dir(c.id), cfg["Hostname"], hosts_text, resolv)
        # legacy links' variables come before the container's own Env, which overrides them
        env = oci.process_env(link_env + (cfg.get("Env") or []), cfg["Hostname"],
                              bool(cfg.get("Tty")), home)
        init = None
        if host.get("Init"):
            init = _init_binary()
            if init is None:
                raise InvalidArgument("--init: no init binary found (install Debian's tini)")
        spec = oci.build(oci.SpecInput(
            config=cfg, host=host, rootfs=rootfs, args=[rec["Path"], *rec["Args"]], env=env,
            cwd=cwd, user=(uid, gid, gids), mounts=mounts.oci_mounts(rec["MountPoints"]),
            etc_files=etc, netns=netns, cgroups_path=f"/{self.cgroup_parent}/{c.id}",
            init_binary=init, annotations=host.get("Annotations")))
        if host.get("PidMode") == "host":
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                           if n["type"] != "pid"]
        if host.get("IpcMode") == "host":
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                           if n["type"] != "ipc"]
        if host.get("UTSMode") == "host":
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                           if n["type"] != "uts"]
            spec.pop("hostname", None)
        atomic.write_text(os.path.join(run_dir, "config.json"),
                          json.dumps(spec, separators=(",", ":")), 0o600, sync=False)

    def _sandbox(self, c: Container, mode: str
                 ) -> tuple[str | None, list[str], str | None, str | None, list[str]]:
        """(netns for the spec, the container's addresses, resolv.conf and hosts content or
        None, environment of legacy links).

        The seam to the network service: ``none`` is a new empty namespace the runtime
        makes, ``host`` is the host's; anything else (``container:X`` too) is the network
        service's sandbox.
        """
        if mode == "host":
            return "host", [], None, None, []
        if mode == "none":
            return None, [], None, None, []
        if self.network is None:
            if mode.startswith("container:"):
                other = self.get(mode.split(":", 1)[1])
                pid = other.state.get("Pid")
                if not pid:
                    raise Conflict(f"cannot join network of a non running container: "
                                   f"{other.id}")
                return f"/proc/{pid}/ns/net", [], None, None, []
            # no network service: the default network is an empty namespace
            return None, [], None, None, []
        sb = self.network.sandbox(c)
        return (sb.get("netns"), sb.get("addresses", []), sb.get("resolv_conf"),
                sb.get("hosts"), sb.get("env") or [])

    def _teardown(self, c: Container) -> None:
        """After the last process is gone: unmount the rootfs, release volumes and network."""
        rootfs = os.path.join(self._run_dir(c.id), "rootfs")
        _unmount(rootfs)
        c.mounted = False
        for v in c.volumes_held:
            try:
                self.engine.volumes.release(v)
            except BerthError:
                pass
        c.volumes_held = []
        net = self.network
        if net is not None and c.rec["HostConfig"].get("NetworkMode") not in ("none", "host"):
            try:
                net.release(c)
            except BerthError as e:
                log.warning("container %s: network release: %s", c.id[:12], e)
        _remove_cgroups(self.cgroup_parent, c.id)

    # ------------------------------------------------------------------ following a shim
    async def _follow(self, c: Container) -> None:
        """Reflect the shim's events in the record until the container stops for good."""
        from berth.shim.client import reap_dead_shim, watch

        run_dir = self._run_dir(c.id)

        def on_event(ev: dict) -> None:
            name = ev.get("event")
            if name == "oom":
                self.events.publish("container", "oom", c.id, self._event_attrs(c))
            elif name == "exit" and ev.get("restarting") and "exec" not in ev:
                code = _exit_code(ev)
                c.rec["State"] = cs.transition(c.state, "restarting", c.id, exit_code=code,
                                               oom_killed=ev.get("oom_killed"),
                                               finished_at=_ns_rfc3339(ev.get("exited_at")))
                self._stop_health(c)
                self._save(c)
                self.events.publish("container", "die", c.id,
                                    self._event_attrs(c, exitCode=code))
                _wake(c.exit_waiters, code)
            elif name == "start" and c.state["Status"] == cs.RESTARTING:
                c.rec["RestartCount"] = ev.get("restart_count", c.rec["RestartCount"] + 1)
                c.rec["State"] = cs.transition(c.state, "start", c.id, pid=ev.get("pid", 0),
                                               started_at=_ns_rfc3339(ev.get("started_at")))
                self._start_health(c)
                self._save(c)
                self.events.publish("container", "start", c.id, self._event_attrs(c))
            elif name in ("exec-exit",) and self.execs is not None:
                self.execs.on_exit(c, ev)

        try:
            rec = await watch(run_dir, on_event)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug in following must not lose the exit
            log.exception("container %s: following its shim failed", c.id[:12])
            rec = {"exit_code": 128, "error": str(e)}
        if rec.get("shim_died"):
            log.warning("container %s: its shim died; reaping what it left", c.id[:12])
            host = c.rec["HostConfig"]
            rt = host.get("Runtime") or self.default_runtime
            try:
                rec = await reap_dead_shim(run_dir, c.id, self.runtimes.get(rt, rt),
                                           os.path.join(self.runtime_root, rt))
            except OSError as e:
                log.warning("container %s: reaping: %s", c.id[:12], e)
        await self._exited(c, rec)

    async def _exited(self, c: Container, rec: dict) -> None:
        self._stop_health(c)
        client, c.client = c.client, None
        if client is not None:
            await client.close()
        code = _exit_code(rec)
        if c.rec.get("RestartCount") is not None and rec.get("restart_count") is not None:
            c.rec["RestartCount"] = rec["restart_count"]
        if c.state["Status"] in (cs.RUNNING, cs.PAUSED, cs.RESTARTING, cs.CREATED):
            c.rec["State"] = cs.transition(c.state, "exit", c.id, exit_code=code,
                                           oom_killed=rec.get("oom_killed"),
                                           error=rec.get("error", "") if code == 128 else "",
                                           started_at=_ns_rfc3339(rec.get("started_at")),
                                           finished_at=_ns_rfc3339(rec.get("exited_at")))
        await asyncio.to_thread(self._teardown, c)
        if not c.removed:
            self._save(c)
        if self.execs is not None:
            self.execs.container_stopped(c)
        self.events.publish("container", "die", c.id, self._event_attrs(c, exitCode=code))
        _wake(c.exit_waiters, code)
        if c.rec["HostConfig"].get("AutoRemove") and not c.removed:
            try:
                await self._remove(c, remove_volumes=True, from_monitor=True)
            except BerthError as e:
                log.warning("container %s: auto-remove: %s", c.id[:12], e)

    # ------------------------------------------------------------------ stop, kill, wait
    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None
                   ) -> None:
        c = self.get(ref)
        if not cs.is_running(c.state):
            raise NotModified("container already stopped")
        cfg = c.rec["Config"]
        sig = hostconfig.parse_signal(signal or cfg.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = cfg.get("StopTimeout")
            if timeout is None:
                timeout = STOP_TIMEOUT
        await self._stop(c, sig, timeout)
        self.events.publish("container", "stop", c.id, self._event_attrs(c))

    async def _stop(self, c: Container, sig: int, timeout: float) -> None:
        c.rec["HasBeenManuallyStopped"] = True
        self._save(c)
        self.events.publish("container", "kill", c.id, self._event_attrs(c, signal=sig))
        client = c.client
        if client is not None:
            try:
                await client.stop(sig, -1 if timeout < 0 else timeout)
            except BerthError as e:
                log.debug("container %s: stop: %s", c.id[:12], e)
        await self._monitor_done(c)

    async def _monitor_done(self, c: Container) -> None:
        m = c.monitor
        if m is not None:
            try:
                await asyncio.shield(m)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged by the monitor
                pass

    async def kill(self, ref: str, signal: str | None = None) -> None:
        c = self.get(ref)
        sig = hostconfig.parse_signal(signal or "SIGKILL", SIGKILL)
        if not cs.is_running(c.state) or c.client is None:
            raise NotRunning(f"Cannot kill container: {ref}: Container {c.id} is not running")
        stop_sig = hostconfig.parse_signal(c.rec["Config"].get("StopSignal") or "SIGTERM")
        manual = sig in (SIGKILL, stop_sig)
        if manual:
            c.rec["HasBeenManuallyStopped"] = True
            self._save(c)
        self.events.publish("container", "kill", c.id, self._event_attrs(c, signal=sig))
        try:
            await c.client.kill(sig, stop=manual)
        except BerthError as e:
            raise NotRunning(f"Cannot kill container: {ref}: {e}") from None
        if sig == SIGKILL:
            # as dockerd: a kill with SIGKILL answers once the container is stopped
            try:
                await asyncio.wait_for(self._monitor_done(c), 10)
            except TimeoutError:
                log.warning("container %s: still running 10 s after SIGKILL", c.id[:12])

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None
                      ) -> None:
        c = self.get(ref)
        async with c.lock:
            if cs.is_running(c.state):
                cfg = c.rec["Config"]
                sig = hostconfig.parse_signal(signal or cfg.get("StopSignal") or "SIGTERM")
                t = timeout if timeout is not None else (cfg.get("StopTimeout") or STOP_TIMEOUT)
                await self._stop(c, sig, t)
                self.events.publish("container", "stop", c.id, self._event_attrs(c))
            await self._start_locked(c)
        self.events.publish("container", "restart", c.id, self._event_attrs(c))

    async def wait(self, ref: str, condition: str = "not-running") -> dict:
        c = self.get(ref)
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        loop = asyncio.get_running_loop()
        if condition in ("", "not-running"):
            if not cs.is_running(c.state):
                return _wait_result(c)
            # As dockerd: the next exit ends the wait, also one the restart policy follows
            # with a restart (docker-py's test_create_with_restart_policy waits on one).
            fut = loop.create_future()
            c.exit_waiters.append(fut)
            code = await fut
            return dict(_wait_result(c), StatusCode=code)
        if condition == "next-exit":
            fut = loop.create_future()
            c.exit_waiters.append(fut)
            await fut
            return _wait_result(c)
        if c.removed:
            return _wait_result(c)
        fut = loop.create_future()
        c.removed_waiters.append(fut)
        await fut
        return _wait_result(c)

    # ------------------------------------------------------------------ pause, rename
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state["Status"] == cs.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state["Status"] != cs.RUNNING or c.client is None:
                raise Conflict(f"Container {c.id} is not running")
            await c.client.pause()
            c.rec["State"] = cs.transition(c.state, "pause", c.id)
            self._save(c)
        self.events.publish("container", "pause", c.id, self._event_attrs(c))

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state["Status"] != cs.PAUSED or c.client is None:
                raise Conflict(f"Container {c.id} is not paused")
            await c.client.resume()
            c.rec["State"] = cs.transition(c.state, "unpause", c.id)
            self._save(c)
        self.events.publish("container", "unpause", c.id, self._event_attrs(c))

    def rename(self, ref: str, new: str) -> None:
        c = self.get(ref)
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        if not _valid_name(new):
            raise InvalidArgument(f"Invalid container name ({new}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        full = "/" + new.lstrip("/")
        old = c.name
        with _names_lock:
            if full == old:
                raise InvalidArgument("Renaming a container with the same name as its current "
                                      "name")
            if full in self.by_name:
                raise NameConflict(f'Conflict. The container name "{full}" is already in use by '
                                   f'container "{self.by_name[full]}". You have to remove (or '
                                   "rename) that container to be able to reuse that name.")
            self.by_name[full] = c.id
            del self.by_name[old]
            c.rec["Name"] = full
            if self.network is not None:
                self.network.renamed(c, old)  # the name it resolves by on its networks
            self._save(c)
        self.events.publish("container", "rename", c.id,
                            self._event_attrs(c, oldName=old))

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if c.client is None or not cs.is_running(c.state):
            raise Conflict(f"Container {c.id} is not running")
        await c.client.resize(height, width)
        self.events.publish("container", "resize", c.id,
                            self._event_attrs(c, height=height, width=width))

    def attached(self, c: Container) -> None:
        """A client attached to ``c`` (dockerd's "attach" event)."""
        self.events.publish("container", "attach", c.id, self._event_attrs(c))

    # ------------------------------------------------------------------ remove
    async def remove(self, ref: str, force: bool = False, volumes: bool = False,
                     link: bool = False) -> None:
        if link:
            self._remove_link(ref)
            return
        c = self.get(ref)
        if cs.is_running(c.state):
            if c.state["Status"] == cs.PAUSED and not force:
                raise Conflict(f"You cannot remove a paused container {c.id}. Unpause and then "
                               "stop the container before attempting removal or force remove")
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                               "container before attempting removal or force remove")
        await self._remove(c, remove_volumes=volumes, force=force)

    def _remove_link(self, ref: str) -> None:
        """``DELETE /containers/parent/alias?link=1``: drop the legacy link ``alias`` from
        ``parent``; both containers stay. A bare name is the container's own name, which a
        link removal cannot take (dockerd's words)."""
        name = ref if ref.startswith("/") else "/" + ref
        parent_name, _, alias = name.rpartition("/")
        if not parent_name:
            self.get(ref)  # no such container comes first, as in dockerd
            raise InvalidArgument("Conflict, cannot remove the default link name of the "
                                  "container")
        try:
            parent = self.get(parent_name)
        except NoSuchContainer:
            raise NoSuchContainer(f"No such container: {ref}") from None
        links = parent.rec["HostConfig"].get("Links") or []
        # "name:alias", "name" (alias = name) or dockerd's "/name:/parent/alias"
        keep = [lk for lk in links
                if (str(lk).partition(":")[2] or str(lk)).rsplit("/", 1)[-1] != alias]
        if len(keep) == len(links):
            raise NoSuchContainer(f"No such container: {ref}")
        parent.rec["HostConfig"]["Links"] = keep or None
        self._save(parent)

    async def _remove(self, c: Container, remove_volumes: bool, force: bool = False,
                      from_monitor: bool = False) -> None:
        if c.removed:
            return
        if c.state["Status"] == cs.REMOVING and not from_monitor:
            raise Conflict(f"removal of container {c.id} is already in progress")
        if cs.is_running(c.state):
            c.rec["HasBeenManuallyStopped"] = True
            self.events.publish("container", "kill", c.id, self._event_attrs(c, signal=SIGKILL))
            if c.client is not None:
                try:
                    await c.client.stop(SIGKILL, 0)
                except BerthError as e:
                    log.debug("container %s: kill for remove: %s", c.id[:12], e)
            if not from_monitor:
                await self._monitor_done(c)
                if c.removed:  # the monitor's auto-remove did it meanwhile
                    return
        prev = c.state
        c.rec["State"] = dict(prev, Status=cs.REMOVING)
        c.removed = True
        # The record goes first, in one rename: from here the container is gone for every
        # client; its files go in the background (start-up repair finishes what a crash
        # interrupts). `run --rm` waits for the removal, so this is on its critical path.
        d = self._dir(c.id)
        trash = os.path.join(self.root, ".rm-" + c.id)
        try:
            if os.path.exists(d):
                os.rename(d, trash)
        except OSError as e:
            c.removed = False
            c.rec["State"] = cs.transition(dict(prev, Status=cs.REMOVING), "removed-failed",
                                           c.id, error=str(e))
            self._save(c)
            raise Conflict(f"unable to remove container {c.id}: {e}") from None
        with _names_lock:
            if self.by_name.get(c.name) == c.id:
                del self.by_name[c.name]
        self.by_id.pop(c.id, None)
        if self.execs is not None:
            self.execs.container_removed(c)
        if remove_volumes:
            for p in c.rec.get("MountPoints", []):
                if p["Type"] == "volume" and p.get("Name") and \
                        self.engine.volumes.is_anonymous(p["Name"]) and \
                        not self.volume_users(p["Name"]):
                    try:
                        self.engine.volumes.remove(p["Name"])
                    except BerthError as e:
                        log.warning("container %s: volume %s: %s", c.id[:12], p["Name"], e)
        self.events.publish("container", "destroy", c.id, self._event_attrs(c))
        _wake(c.exit_waiters, c.state.get("ExitCode", 0))
        _wake(c.removed_waiters, c.state.get("ExitCode", 0))
        task = asyncio.ensure_future(asyncio.to_thread(self._delete_files, c, trash))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _delete_files(self, c: Container, trash: str) -> None:
        try:
            self._teardown(c)
            run_dir = self._run_dir(c.id)
            _unmount(os.path.join(run_dir, "rootfs"))
            shutil.rmtree(run_dir, ignore_errors=True)
            self._remove_snapshot(c.rec["SnapshotKey"])
            shutil.rmtree(trash, ignore_errors=True)
        except Exception:  # noqa: BLE001 - start-up repair retries; the container is gone
            log.exception("container %s: removing its files", c.id[:12])

    def _sweep_leftovers(self, cid: str) -> None:
        run_dir = self._run_dir(cid)
        _unmount(os.path.join(run_dir, "rootfs"))
        shutil.rmtree(run_dir, ignore_errors=True)
        self._remove_snapshot(f"container-{cid}")
        _remove_cgroups(self.cgroup_parent, cid)
        shutil.rmtree(os.path.join(self.root, cid), ignore_errors=True)

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        from .container_views import match_prune

        deleted, space = [], 0
        for c in list(self.by_id.values()):
            if cs.is_running(c.state) or c.state["Status"] == cs.REMOVING:
                continue
            if not match_prune(c, filters or {}):
                continue
            space += await asyncio.to_thread(self.size_rw, c)
            await self._remove(c, remove_volumes=False)
            deleted.append(c.id)
        self.events.publish("container", "prune", "", {"reclaimed": str(space)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}

    # ------------------------------------------------------------------ layer operations
    def changes(self, c: Container) -> list[dict]:
        """``docker diff``: the writable layer against the image (blocking)."""
        from .archive import changes

        snaps = self.engine.images.store.snapshots
        key = c.rec["SnapshotKey"]
        info = snaps.stat(key)
        ignore = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv"}
        ignore |= {p["Destination"] for p in c.rec.get("MountPoints", [])}
        return changes(snaps.dir_of(key), snaps.chain(info.get("parent")), ignore)

    async def commit(self, ref: str, repo: str, tag: str, comment: str, author: str,
                     pause: bool, changes: list[str], overrides: dict) -> dict:
        from .commit import commit

        c = self.get(ref)
        paused_here = False
        if pause and c.state["Status"] == cs.RUNNING and c.client is not None:
            await c.client.pause()
            paused_here = True
        try:
            return await asyncio.to_thread(commit, self, c, repo, tag, comment, author,
                                           changes, overrides)
        finally:
            if paused_here and c.client is not None:
                try:
                    await c.client.resume()
                except BerthError:
                    pass

    async def update(self, ref: str, body: dict) -> dict:
        """``docker update``: the restart policy now; resources on the next start."""
        c = self.get(ref)
        host = c.rec["HostConfig"]
        warnings: list[str] = []
        pol = body.get("RestartPolicy")
        if pol and pol.get("Name") is not None:
            check = dict(host, RestartPolicy=pol)
            hostconfig.check(c.rec["Config"], check, os.cpu_count() or 1, tuple(self.runtimes))
            host["RestartPolicy"] = {"Name": pol.get("Name") or "no",
                                     "MaximumRetryCount": pol.get("MaximumRetryCount") or 0}
            if c.client is not None:
                p = host["RestartPolicy"]
                spec = p["Name"]
                if p["Name"] == "on-failure" and p["MaximumRetryCount"]:
                    spec = f"on-failure:{p['MaximumRetryCount']}"
                await c.client.update(spec)
        keys = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
                "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit",
                "BlkioWeight")
        new = dict(host)
        for k in keys:
            if k in body and body[k] not in (None, 0, ""):
                new[k] = body[k]
        hostconfig.check(c.rec["Config"], new, os.cpu_count() or 1, tuple(self.runtimes))
        changed = {k: new[k] for k in keys if new.get(k) != host.get(k)}
        host.update(changed)
        self._save(c)
        if changed and cs.is_running(c.state) and c.state.get("Pid"):
            await asyncio.to_thread(self._update_cgroups, c, host)
        self.events.publish("container", "update", c.id, self._event_attrs(c))
        return {"Warnings": warnings or None}

    def _update_cgroups(self, c: Container, host: dict) -> None:
        import subprocess

        rt = host.get("Runtime") or self.default_runtime
        res = oci.resources(host)
        subprocess.run([self.runtimes[rt], "--root", os.path.join(self.runtime_root, rt),
                        "update", "-r", "-", c.id], input=json.dumps(res).encode(),
                       capture_output=True, check=False)

    # ------------------------------------------------------------------ sizes
    def size_rw(self, c: Container) -> int:
        from berth.image.snapshot import dir_size

        try:
            return dir_size(self.engine.images.store.snapshots.dir_of(c.rec["SnapshotKey"]))
        except BerthError:
            return 0

    def size_root_fs(self, c: Container) -> int:
        try:
            return self.engine.images._size(self.engine.images.store.get(c.rec["Image"])) + \
                self.size_rw(c)
        except (BerthError, AttributeError):
            return self.size_rw(c)

    # ------------------------------------------------------------------ start-up, shut-down
    async def restore(self) -> None:
        """Live restore: follow running containers again; repair what a crash left."""
        known = {c.id[:12] for c in self.by_id.values()}
        for entry in os.listdir(self.run):
            if entry not in known:
                d = os.path.join(self.run, entry)
                _unmount(os.path.join(d, "rootfs"))
                shutil.rmtree(d, ignore_errors=True)
        for entry in os.listdir(self.root):
            if entry.startswith(".rm-"):
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)
        await asyncio.to_thread(self._sweep_orphans)
        to_start = []
        for c in list(self.by_id.values()):
            st = c.state["Status"]
            if st == cs.REMOVING:
                await self._remove(c, remove_volumes=False, from_monitor=True)
                continue
            if not cs.is_running(st):
                await asyncio.to_thread(self._teardown, c)
                continue
            await self._reconnect(c, to_start)
        for c in list(self.by_id.values()):
            if c.rec["HostConfig"].get("AutoRemove") and not cs.is_running(c.state) and \
                    c.rec.get("HasBeenStartedBefore"):
                await self._remove(c, remove_volumes=True, from_monitor=True)
        for c in to_start:
            try:
                async with c.lock:
                    await self._start_locked(c)
            except BerthError as e:
                log.warning("container %s: restart at start-up: %s", c.id[:12], e)

    def _sweep_orphans(self) -> None:
        """Rw snapshots and empty cgroups of containers that have no record any more."""
        store = getattr(self.engine.images, "store", None)
        if store is not None:
            for info in store.snapshots.walk():
                name = info["name"]
                if name.startswith("container-") and name[10:] not in self.by_id:
                    self._remove_snapshot(name)
        base = "/sys/fs/cgroup"
        try:
            hierarchies = [base] + [os.path.join(base, e) for e in os.listdir(base)]
        except OSError:
            return
        for h in hierarchies:
            parent = os.path.join(h, self.cgroup_parent)
            try:
                entries = os.listdir(parent)
            except OSError:
                continue
            for e in entries:
                if len(e) == 64 and e not in self.by_id:
                    try:
                        os.rmdir(os.path.join(parent, e))  # only an empty one goes
                    except OSError:
                        pass

    async def _reconnect(self, c: Container, to_start: list) -> None:
        from berth.shim.client import ShimClient, ShimUnavailable

        run_dir = self._run_dir(c.id)
        try:
            client = await ShimClient.connect(run_dir)
            st = await client.state()
        except (ShimUnavailable, BerthError, OSError):
            client, st = None, None
        if client is not None and st is not None and st.get("status") != "stopped":
            c.client = client
            c.mounted = True
            for p in c.rec.get("MountPoints", []):
                if p["Type"] == "volume" and p.get("Name"):
                    self.engine.volumes.mountpoint(p["Name"])
                    c.volumes_held.append(p["Name"])
            if st.get("status") == "paused" and c.state["Status"] != cs.PAUSED:
                c.rec["State"] = dict(c.state, Status=cs.PAUSED, Paused=True)
            c.monitor = asyncio.ensure_future(self._follow(c))
            health = c.state.get("Health")
            self._start_health(c)
            if health and c.health is not None:
                c.rec["State"]["Health"] = health  # the status it had; the probes go on
            log.info("container %s: reconnected to its shim (pid %s)", c.id[:12],
                     st.get("shim_pid"))
            return
        if client is not None:
            await client.close()
        # The shim is gone: its final record, or a dead shim's 137.
        c.monitor = asyncio.ensure_future(self._follow(c))
        await self._monitor_done(c)
        pol = c.rec["HostConfig"]["RestartPolicy"]["Name"]
        if pol == "always" or (pol == "unless-stopped" and
                               not c.rec.get("HasBeenManuallyStopped")):
            to_start.append(c)

    async def close(self) -> None:
        """berthd is stopping: containers keep running (live restore); links are dropped."""
        for c in list(self.by_id.values()):
            self._stop_health(c)
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        for c in list(self.by_id.values()):
            if c.monitor is not None:
                c.monitor.cancel()
        for c in list(self.by_id.values()):
            if c.monitor is not None:
                try:
                    await c.monitor
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if c.client is not None:
                await c.client.close()
                c.client = None
        if self.zygote is not None:
            await self.zygote.close()
            self.zygote = None

    # ------------------------------------------------------------------ counts
    def counts(self) -> dict:
        n = {"Containers": len(self.by_id), "ContainersRunning": 0, "ContainersPaused": 0,
             "ContainersStopped": 0}
        for c in list(self.by_id.values()):
            st = c.state["Status"]
            if st == cs.PAUSED:
                n["ContainersPaused"] += 1
            elif cs.is_running(st):
                n["ContainersRunning"] += 1
            else:
                n["ContainersStopped"] += 1
        return n


class _NamesLock:
    """Name reservation happens in worker threads (create) and on the loop (rename)."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()


_names_lock = _NamesLock()


def _merge_image_config(user: dict, image: dict) -> dict:
    """Docker's merge of the image's config into the container's (moby daemon/commit.go)."""
    c = dict(user)
    if not c.get("User"):
        c["User"] = image.get("User", "")
    if image.get("ExposedPorts"):
        ports = dict(image["ExposedPorts"])
        ports.update(c.get("ExposedPorts") or {})
        c["ExposedPorts"] = ports
    env = list(c.get("Env") or [])
    if not env:
        env = list(image.get("Env") or [])
    else:
        keys = {e.partition("=")[0] for e in env}
        env += [e for e in image.get("Env") or [] if e.partition("=")[0] not in keys]
    c["Env"] = env or None
    labels = dict(image.get("Labels") or {})
    labels.update(c.get("Labels") or {})
    c["Labels"] = labels
    if not c.get("Entrypoint"):
        if not c.get("Cmd"):
            c["Cmd"] = image.get("Cmd")
        if c.get("Entrypoint") is None:
            c["Entrypoint"] = image.get("Entrypoint")
    if not c.get("WorkingDir"):
        c["WorkingDir"] = image.get("WorkingDir", "")
    vols = dict(image.get("Volumes") or {})
    vols.update(c.get("Volumes") or {})
    c["Volumes"] = vols or None
    if not c.get("StopSignal") and image.get("StopSignal"):
        c["StopSignal"] = image["StopSignal"]
    if image.get("Healthcheck") and not c.get("Healthcheck"):
        c["Healthcheck"] = image["Healthcheck"]
    if image.get("OnBuild") and not c.get("OnBuild"):
        c["OnBuild"] = image["OnBuild"]
    return c


def _copy_up(rootfs: str, dest: str, volume_dir: str) -> None:
    """Docker's rule for a new, empty volume: it starts with what the image has at ``dest``."""
    try:
        if os.listdir(volume_dir):
            return
    except OSError:
        return
    src = rootpath.secure_join(rootfs, dest)
    if not os.path.isdir(src) or os.path.islink(src):
        return
    for entry in os.listdir(src):
        s = os.path.join(src, entry)
        d = os.path.join(volume_dir, entry)
        if os.path.isdir(s) and not os.path.islink(s):
            shutil.copytree(s, d, symlinks=True)
        else:
            shutil.copy2(s, d, follow_symlinks=False)
    st = os.stat(src)
    os.chmod(volume_dir, st.st_mode & 0o7777)
    os.chown(volume_dir, st.st_uid, st.st_gid)


def _unmount(path: str) -> None:
    from berth.linux import mount as m

    for _ in range(8):
        try:
            if not os.path.ismount(path):
                return
            m.umount2(path, m.MNT_DETACH)
        except OSError:
            return


def _remove_cgroups(parent: str, cid: str) -> None:
    """What the runtime left of ``/parent/cid`` in every hierarchy (it is empty by now)."""
    base = "/sys/fs/cgroup"
    try:
        entries = os.listdir(base)
    except OSError:
        return
    cands = [os.path.join(base, parent, cid)]
    cands += [os.path.join(base, e, parent, cid) for e in entries]
    for p in cands:
        try:
            os.rmdir(p)
        except OSError:
            pass


def _size_opt(v) -> int:
    if not v:
        return -1
    from berth.shim.config import parse_size

    return parse_size(str(v))


def _exit_code(rec: dict) -> int:
    code = rec.get("exit_code")
    if code is None:
        sig = rec.get("signal") or 0
        return 128 + sig if sig else 128
    return code


def _ns_rfc3339(ns) -> str | None:
    if not ns:
        return None
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def _wait_result(c: Container) -> dict:
    # dockerd clears the error when the container is removed (State.SetRemoved)
    err = "" if c.removed else c.state.get("Error") or ""
    # the order of dockerd's WaitResponse
    return {"Error": {"Message": err} if err else None,
            "StatusCode": c.state.get("ExitCode", 0)}


def _wake(futs: list, value) -> None:
    for f in futs:
        if not f.done():
            f.set_result(value)
    futs.clear()


def setup_services(engine, default_runtime: str | None = None, cgroup_parent: str = "berth",
                   **_ignored) -> None:
    """Build the volume, container and exec services on ``engine`` (called by Engine)."""
    from .execs import ExecService
    from .volumes import VolumeService

    engine.volumes = VolumeService(os.path.join(engine.root, "volumes"), engine.events)
    engine.containers = ContainerService(engine, engine.root, engine.run, default_runtime,
                                         cgroup_parent)
    engine.execs = ExecService(engine.containers, engine.events)
