"""The engine: berthd's state under one root, and the services that own its parts.

``Engine`` is what the API layer talks to. It holds the root and run directories, the events
bus, and one service per resource (``images`` now; ``containers``, ``networks``, ``volumes``
are added by their issues as attributes built in ``__init__``). A service's methods are plain
synchronous operations (the API runs them in worker threads); each takes its own locks, writes
atomically and publishes its events on ``self.events``.

Layout under the root (docs/ARCHITECTURE.md, "State on disk"): ``image/`` is the image store;
later issues add ``containers/``, ``networks/``, ``volumes/``.
"""

from __future__ import annotations

import os
import platform
import threading
import time

from berth import __version__

from .events import EventBus


class Engine:
    def __init__(self, root: str, run: str, registry_settings=None,
                 allow_import_devices: bool = False, **options) -> None:
        self.root = os.path.abspath(root)
        self.run = os.path.abspath(run)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        os.makedirs(self.run, mode=0o711, exist_ok=True)
        self.started = time.time()
        self.events = EventBus()
        self.id = self._daemon_id()
        from .images import ImageService

        self.images = ImageService(os.path.join(self.root, "image"), self.events,
                                   allow_import_devices)
        # registries (berth/engine/distribution.py): made on first use, since the client
        # brings aiohttp in (~200 ms of imports)
        self.registry_settings = registry_settings
        self._registry = None
        self._registry_lock = threading.Lock()
        from .containers import setup_services

        setup_services(self, **options)  # volumes, containers, execs (issue 4)
        from .networks import setup_network

        setup_network(self, **options)  # bridges, IPAM, DNS, published ports (issue 5)

    @property
    def registry(self):
        with self._registry_lock:
            if self._registry is None:
                from .distribution import RegistryService

                self._registry = RegistryService(self.images, self.root,
                                                 self.registry_settings)
            return self._registry

    def _registry_config(self) -> dict:
        from berth.distribution.settings import RegistrySettings

        return (self.registry_settings or RegistrySettings()).registry_config()

    def _daemon_id(self) -> str:
        p = os.path.join(self.root, "engine-id")
        try:
            with open(p) as f:
                return f.read().strip()
        except FileNotFoundError:
            pass
        import uuid

        from berth import atomic

        ident = str(uuid.uuid4())
        atomic.write_text(p, ident + "\n")
        return ident

    async def start(self) -> None:
        """Once the event loop runs: the network as the records say (issue 5), then live
        restore of containers (issue 4)."""
        import asyncio

        await asyncio.to_thread(self.networks.restore)
        await self.containers.restore()

    async def stop(self) -> None:
        """Before close: drop the links to the shims; containers keep running."""
        await self.containers.close()

    def close(self) -> None:
        self.networks.close()
        if self._registry is not None:
            self._registry.close()
        self.images.close()

    def system_df(self) -> dict:
        """``GET /system/df``: images now; containers, volumes, build cache by their issues."""
        d = self.images.df()
        from .container_views import list_containers

        for img in d["Images"]:
            img["Containers"] = len(self.containers.image_users(img.get("Id", "")))
        return {"LayersSize": d["LayersSize"], "Images": d["Images"],
                "Containers": list_containers(self.containers, True, -1, True),
                "Volumes": self.volumes.usage(), "BuildCache": [], "BuilderSize": 0}

    # --- system -------------------------------------------------------------------------
    def version(self, api_version: str, min_api_version: str) -> dict:
        u = os.uname()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine)
        details = {"ApiVersion": api_version, "Arch": arch, "BuildTime": "",
                   "Experimental": "false", "GitCommit": "", "GoVersion": "",
                   "KernelVersion": u.release, "MinAPIVersion": min_api_version, "Os": "linux"}
        return {
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            "ApiVersion": api_version,
            "MinAPIVersion": min_api_version,
            "GitCommit": "",
            "GoVersion": f"python{platform.python_version()}",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": u.release,
            "BuildTime": "",
        }

    def info(self) -> dict:
        u = os.uname()
        images = self.images.count()
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        os_name, os_version = "Linux", ""
        try:
            with open("/etc/os-release") as f:
                rel = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            os_name = rel.get("PRETTY_NAME", os_name).strip('"')
            os_version = rel.get("VERSION_ID", "").strip('"')
        except OSError:
            pass
        cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
        counts = self.containers.counts()
        return {
            "ID": self.id,
            "Containers": counts["Containers"],
            "ContainersRunning": counts["ContainersRunning"],
            "ContainersPaused": counts["ContainersPaused"],
            "ContainersStopped": counts["ContainersStopped"],
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Native Overlay Diff", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                        "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "Debug": False,
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": 0,
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                          + f".{time.time_ns() % 1_000_000_000:09d}Z",
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "NEventsListener": self.events.listeners,
            "KernelVersion": u.release,
            "OperatingSystem": os_name,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": u.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": self._registry_config(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "GenericResources": None,
            "DockerRootDir": self.root,
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": u.nodename,
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {n: {"path": p} for n, p in self.containers.runtimes.items()},
            "DefaultRuntime": self.containers.default_runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                      "ControlAvailable": False, "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=default"],
            "Warnings": None,
        }
