"""``exec``: extra processes in a running container, through its shim.

``create`` records what to run (Docker's ExecConfig) and answers an id; ``start`` resolves the
user in the container's passwd, builds the OCI process (the container's env, capabilities,
no-new-privileges and seccomp, the exec's own env/user/workdir/tty) and asks the shim to run it
through the runtime's ``exec``. Exec records live in memory, as dockerd keeps them: they are
gone with the container, or when berthd restarts (a running exec keeps running).
"""

from __future__ import annotations

import asyncio
import json
import os

from berth.errors import Conflict, InvalidArgument, NotFound

from . import capabilities, oci, users
from . import container_state as cs


class NoSuchExec(NotFound):
    pass


class ExecRecord:
    __slots__ = ("config", "container_id", "done", "exit_code", "id", "pid", "running",
                 "shim_id", "started")

    def __init__(self, xid: str, container_id: str, config: dict) -> None:
        self.id = xid
        # The shim names files after the exec (console-<id>.sock): a shorter name keeps that
        # socket path within sun_path's 108 bytes under a long run dir.
        self.shim_id = xid[:24]
        self.container_id = container_id
        self.config = config
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.done: asyncio.Event = asyncio.Event()


class ExecService:
    def __init__(self, containers, events) -> None:
        self.containers = containers
        self.events = events
        self.execs: dict[str, ExecRecord] = {}
        containers.execs = self

    def ids_of(self, c) -> list[str] | None:
        ids = [x.id for x in self.execs.values() if x.container_id == c.id]
        return ids or None

    def get(self, xid: str) -> ExecRecord:
        x = self.execs.get(xid)
        if x is None:
            raise NoSuchExec(f"No such exec instance: {xid}")
        return x

    def create(self, ref: str, body: dict) -> dict:
        c = self.containers.get(ref)
        if c.state["Status"] == cs.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state["Status"] == cs.RESTARTING:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is "
                           "running")
        if not cs.is_running(c.state) or c.client is None:
            raise Conflict(f"Container {c.id} is not running")
        cmd = body.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidArgument("No exec command specified")
        for e in body.get("Env") or []:
            if not e.partition("=")[0]:
                raise InvalidArgument(f"invalid environment variable: {e}")
        xid = os.urandom(32).hex()
        cfg = {"AttachStdin": bool(body.get("AttachStdin")),
               "AttachStdout": bool(body.get("AttachStdout")),
               "AttachStderr": bool(body.get("AttachStderr")),
               "DetachKeys": body.get("DetachKeys") or "", "Tty": bool(body.get("Tty")),
               "Env": body.get("Env") or [], "Cmd": list(cmd),
               "Privileged": bool(body.get("Privileged")), "User": body.get("User") or "",
               "WorkingDir": body.get("WorkingDir") or "",
               "ConsoleSize": body.get("ConsoleSize")}
        self.execs[xid] = ExecRecord(xid, c.id, cfg)
        self.events.publish("container", f"exec_create: {' '.join(cmd)}", c.id,
                            {**self.containers._event_attrs(c), "execID": xid})
        return {"Id": xid}

    def inspect(self, xid: str) -> dict:
        x = self.get(xid)
        cfg = x.config
        return {"CanRemove": False, "ContainerID": x.container_id,
                "DetachKeys": cfg["DetachKeys"], "ExitCode": x.exit_code, "ID": x.id,
                "OpenStderr": cfg["AttachStderr"], "OpenStdin": cfg["AttachStdin"],
                "OpenStdout": cfg["AttachStdout"], "ProcessConfig": {
                    "arguments": cfg["Cmd"][1:], "entrypoint": cfg["Cmd"][0],
                    "privileged": cfg["Privileged"], "tty": cfg["Tty"], "user": cfg["User"]},
                "Running": x.running, "Pid": x.pid}

    def probe_process(self, c, args: list[str]) -> dict:
        """The OCI process of a health probe: the container's user, env and workdir."""
        cfg = {"Cmd": args, "User": "", "Env": [], "Tty": False, "Privileged": False,
               "WorkingDir": "", "ConsoleSize": None}
        return self._process(c, ExecRecord("health", c.id, cfg))

    def _process(self, c, x: ExecRecord) -> dict:
        cfg = x.config
        rec = c.rec
        ccfg, host = rec["Config"], rec["HostConfig"]
        rootfs = os.path.join(self.containers._run_dir(c.id), "rootfs")
        user = cfg["User"] or ccfg.get("User") or ""
        uid, gid, gids, home = users.resolve(rootfs, user, host.get("GroupAdd"))
        env = oci.process_env(ccfg.get("Env") or [], ccfg["Hostname"], cfg["Tty"], home)
        env = oci.merge_env(env, cfg["Env"])
        privileged = cfg["Privileged"] or host.get("Privileged")
        caps = capabilities.effective(host.get("CapAdd"), host.get("CapDrop"), bool(privileged))
        # the container's own seccomp filter stays: the runtime's exec joins it from the bundle
        nnp, _profile, _unconfined = oci.security_options(host)
        proc: dict = {"terminal": cfg["Tty"], "user": {"uid": uid, "gid": gid},
                      "args": cfg["Cmd"], "env": env,
                      "cwd": cfg["WorkingDir"] or ccfg.get("WorkingDir") or "/",
                      "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                      "noNewPrivileges": nnp}
        if gids:
            proc["user"]["additionalGids"] = gids
        if cfg["Tty"]:
            # a 0x0 pty makes programs think they have no terminal size; 24x80 until resized
            h, w = cfg.get("ConsoleSize") or (0, 0)
            proc["consoleSize"] = {"height": h or 24, "width": w or 80}
        spec_path = os.path.join(self.containers._run_dir(c.id), "config.json")
        try:
            with open(spec_path) as f:
                spec = json.load(f)
            for key in ("apparmorProfile", "selinuxLabel", "oomScoreAdj", "rlimits"):
                if key in spec.get("process", {}):
                    proc[key] = spec["process"][key]
        except (OSError, ValueError):
            pass
        return proc

    def check_startable(self, x: ExecRecord):
        """The container of ``x``, if ``x`` can start now (else NotFound/Conflict)."""
        if x.started:
            raise Conflict(f"Error: Exec command {x.id} has already run")
        c = self.containers.get(x.container_id)
        if c.client is None or not cs.is_running(c.state):
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Status"] == cs.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        return c

    async def start(self, xid: str, detach: bool = False):
        """Run the exec; → the shim's Attachment (or None when detached)."""
        x = self.get(xid)
        c = self.check_startable(x)
        x.started = True
        proc = await asyncio.to_thread(self._process, c, x)
        cfg = x.config
        stdin = cfg["AttachStdin"] and not detach
        dk = b""
        if stdin:
            from .detachkeys import parse_detach_keys

            dk = parse_detach_keys(cfg["DetachKeys"])
        # dockerd announces the start before it runs the process
        self.events.publish("container", f"exec_start: {' '.join(cfg['Cmd'])}", c.id,
                            {**self.containers._event_attrs(c), "execID": xid})
        try:
            if detach:
                x.pid = await c.client.exec(x.shim_id, proc, stdin=False, attach=False)
                att = None
            else:
                att = await c.client.exec(x.shim_id, proc, stdin=stdin, attach=True,
                                          detach_keys=dk)
                x.pid = att.pid
        except Exception as e:
            x.exit_code = 126  # dockerd's code for an exec that could not start (EACCES)
            x.done.set()
            raise InvalidArgument(f"OCI runtime exec failed: {e}") from None
        x.running = True
        return att

    def on_exit(self, c, ev: dict) -> None:
        sid = ev.get("exec", "")
        for x in self.execs.values():
            if x.shim_id == sid and x.container_id == c.id:
                self._finish(c, x, ev)
                return

    def _finish(self, c, x: ExecRecord, ev: dict) -> None:
        if x.done.is_set():
            return
        code = ev.get("exit_code")
        if code is None:
            sig = ev.get("signal") or 0
            code = 128 + sig if sig else 126
        x.exit_code = code
        x.running = False
        x.done.set()
        self.events.publish("container", "exec_die", c.id,
                            {**self.containers._event_attrs(c), "execID": x.id,
                             "exitCode": str(code)})

    def attach_ended(self, x: ExecRecord, exit_info: dict | None) -> None:
        """The attach stream saw the exec's exit (before or after the monitor did)."""
        c = self.containers.by_id.get(x.container_id)
        if c is not None and exit_info is not None:
            self._finish(c, x, exit_info)

    def container_stopped(self, c) -> None:
        for x in self.execs.values():
            if x.container_id == c.id and x.running:
                x.running = False
                if x.exit_code is None:
                    x.exit_code = 137
                x.done.set()

    def container_removed(self, c) -> None:
        for xid in [k for k, x in self.execs.items() if x.container_id == c.id]:
            del self.execs[xid]

    async def resize(self, xid: str, height: int, width: int) -> None:
        x = self.get(xid)
        c = self.containers.get(x.container_id)
        if c.client is None or not x.running:
            raise Conflict(f"Exec {xid} is not running")
        await c.client.resize(height, width, exec=x.shim_id)
