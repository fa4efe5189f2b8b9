"""berthd: the daemon's entry point.

    berthd --root DIR --run DIR --host unix:///run/berth/berth.sock [--group G] [--debug]

One daemon per root: ``ROOT/berthd.lock`` is held with flock for the daemon's life and holds
its pid, so a second daemon refuses and says who holds the lock. The socket is created 0660,
owned by root and by the group (``docker``'s rule: the default group is used when it exists,
a group named explicitly must exist). Logs go to stderr. SIGTERM and SIGINT stop it cleanly:
listeners closed, socket removed, engine closed, lock released.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import grp
import logging
import os
import signal
import sys
import time

from berth.errors import BerthError, FailedPrecondition, InvalidArgument

DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_RUN = "/run/berth"
DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_GROUP = "docker"

log = logging.getLogger("berthd")


class RootLocked(FailedPrecondition):
    pass


class RootLock:
    """flock on ``ROOT/berthd.lock``; the file holds the holder's pid and start time."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, "berthd.lock")
        self.fd = -1

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"pid {holder[0]}" if holder else "another process"
            since = ""
            if len(holder) > 1:
                since = f", since {int(time.time() - float(holder[1]))}s"
            raise RootLocked(f"another berthd is using root {os.path.dirname(self.path)}: "
                             f"{self.path} is held by {who}{since}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.time():.0f}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


def resolve_group(name: str | None) -> int:
    if name is None or name == "":
        try:
            return grp.getgrnam(DEFAULT_GROUP).gr_gid
        except KeyError:
            return 0
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise InvalidArgument(f"group {name} not found") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth's container engine daemon")
    p.add_argument("--root", "--data-root", dest="root", default=DEFAULT_ROOT,
                   help="root of persisted state (default %(default)s)")
    p.add_argument("--run", "--exec-root", dest="run", default=DEFAULT_RUN,
                   help="root of runtime state: sockets, pid files (default %(default)s)")
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help=f"socket to listen on (repeatable; default {DEFAULT_HOST})")
    p.add_argument("-G", "--group", default=None,
                   help=f"group owning the unix socket (default {DEFAULT_GROUP} if it exists)")
    p.add_argument("-p", "--pidfile", default=None, help="pid file (default RUN/berthd.pid)")
    p.add_argument("--default-runtime", default=None,
                   help="OCI runtime for containers (default berth-runtime, else runc)")
    p.add_argument("--cgroup-parent", default="berth",
                   help="parent cgroup of the containers' cgroups (default %(default)s)")
    # networking, as dockerd's flags (issue 5); --nft-table is berth's own
    p.add_argument("-b", "--bridge", default="berth0",
                   help="Linux bridge of the default `bridge` network, made by berthd "
                        "(default %(default)s; 'none': no default network)")
    p.add_argument("--bip", default=None,
                   help="the default bridge's address and prefix, e.g. 10.200.0.1/24 "
                        "(default: a free pool subnet)")
    p.add_argument("--mtu", type=int, default=None, help="MTU of the default bridge network")
    p.add_argument("--nft-table", default="berth",
                   help="berth's own nftables table (ip family; default %(default)s)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging")
    p.add_argument("--allow-import-devices", action="store_true",
                   help="let `import` create device nodes from the tarball (refused by default)")
    p.add_argument("-l", "--log-level", default="info",
                   choices=["debug", "info", "warn", "error", "fatal"])
    # registries, as dockerd's flags and daemon.json keys (berth/distribution/settings.py)
    p.add_argument("--config-file", default=None,
                   help="daemon.json to read registry settings from (default "
                        "/etc/berth/daemon.json if it exists)")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries",
                   default=[], help="registry host or CIDR allowed over plain HTTP (repeatable)")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors", default=[],
                   help="mirror URL for docker.io pulls (repeatable)")
    p.add_argument("--max-concurrent-downloads", type=int, default=None,
                   help="layers downloaded at once per pull (default 3)")
    p.add_argument("--max-concurrent-uploads", type=int, default=None,
                   help="layers uploaded at once per push (default 5)")
    return p.parse_args(argv)


def registry_settings(args: argparse.Namespace):
    """Registry settings from daemon.json, then the flags on top (as dockerd merges them)."""
    import json

    from berth.distribution.settings import RegistrySettings

    path = args.config_file or "/etc/berth/daemon.json"
    doc: dict = {}
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        if args.config_file:
            raise InvalidArgument(f"config file {path} not found") from None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"config file {path}: {e}") from None
    doc = dict(doc)
    doc["insecure-registries"] = list(doc.get("insecure-registries") or []) + \
        args.insecure_registries
    doc["registry-mirrors"] = list(doc.get("registry-mirrors") or []) + args.registry_mirrors
    for key in ("max_concurrent_downloads", "max_concurrent_uploads"):
        if getattr(args, key) is not None:
            doc[key.replace("_", "-")] = getattr(args, key)
    return RegistrySettings.from_daemon_json(doc)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return f"{t}.{ms:03d}Z {record.levelname.lower():5} {record.name}: {msg}"


def setup_logging(level: str) -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel({"warn": "WARNING", "fatal": "CRITICAL"}.get(level, level.upper()))


async def _serve(args: argparse.Namespace, gid: int) -> None:
    from berth.engine.core import Engine

    from .server import App

    engine = Engine(args.root, args.run, registry_settings(args),
                    allow_import_devices=args.allow_import_devices,
                    default_runtime=args.default_runtime, cgroup_parent=args.cgroup_parent,
                    bridge=args.bridge, bip=args.bip, mtu=args.mtu, nft_table=args.nft_table)
    app = App(engine)
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for host in args.hosts or [DEFAULT_HOST]:
            await app.listen(host, 0o660, gid)
        log.info("berthd ready: root %s, run %s, pid %d", engine.root, engine.run, os.getpid())
        await stop.wait()
        log.info("stopping on signal")
    finally:
        await app.stop()
        await engine.stop()
        engine.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging("debug" if args.debug else args.log_level)
    if os.geteuid() != 0:
        log.error("berthd needs to run as root")
        return 1
    lock = None
    pidfile = args.pidfile or os.path.join(args.run, "berthd.pid")
    try:
        gid = resolve_group(args.group)
        os.makedirs(args.root, mode=0o711, exist_ok=True)
        os.makedirs(args.run, mode=0o711, exist_ok=True)
        lock = RootLock(args.root)
        lock.acquire()
        from berth import atomic

        atomic.write_text(pidfile, f"{os.getpid()}\n")
        asyncio.run(_serve(args, gid))
    except BerthError as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        log.error("%s", e)
        return 1
    finally:
        if lock is not None and lock.fd >= 0:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
            lock.release()
    log.info("berthd stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
