"""Fixtures shared by every test area.

Integration tests are marked ``root``; they skip with a reason when not run as root. The busybox
root filesystem is built once per session from Debian's busybox-static (scripts/busybox-rootfs.sh)
and copied per test where a test needs to change it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: namespaces, mounts and cgroups are real here")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A pristine busybox rootfs, shared by the session: copy it before changing it."""
    d = tmp_path_factory.mktemp("busybox") / "rootfs"
    subprocess.run([str(REPO / "scripts/busybox-rootfs.sh"), str(d)], check=True)
    return d


@pytest.fixture
def rootfs_copy(busybox_rootfs, tmp_path) -> Path:
    """A private copy of the busybox rootfs (symlinks kept) that the test may change."""
    d = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, d, symlinks=True)
    return d


@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs, tmp_path_factory) -> Path:
    """The busybox rootfs as an uncompressed tarball (what `docker import` takes)."""
    p = tmp_path_factory.mktemp("busybox-tar") / "busybox.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(p), "."], check=True)
    return p


def sweep_mounts(base: Path) -> None:
    """Lazily unmount whatever is still mounted below ``base``, deepest first."""
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        mnt = line.split()[4]
        if mnt.startswith(str(base)):
            subprocess.run(["umount", "-l", mnt], check=False)


class Dockerd:
    """A private dockerd (the real peer) on its own data root and socket, ended by its pid.

    ``bridge``: False, no bridge network; True, dockerd's own (docker0, iptables); a name, that
    existing bridge as its default network, iptables left alone."""

    def __init__(self, base: Path, bridge: bool | str = False):
        self.base = base
        self.sock = base / "docker.sock"
        self.host = f"unix://{self.sock}"
        args = ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
                "-H", self.host, "--pidfile", str(base / "docker.pid")]
        if bridge is not True:
            args += [f"--bridge={bridge or 'none'}", "--iptables=false", "--ip6tables=false"]
        self.log = open(base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.base / 'dockerd.log').read_text()}")
            r = subprocess.run(["docker", "-H", self.host, "version"], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("dockerd did not become ready")

    def docker(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], check=check,
                              capture_output=True, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        # dockerd leaves overlay mounts of removed containers only on a crash; sweep ours.
        sweep_mounts(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory, busybox_tar):
    """A running private dockerd with the `busybox:latest` image imported from busybox_tar."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd (apt-get install docker.io)")
    import tempfile

    # A short path: dockerd's containerd socket path must fit in sun_path (108 bytes).
    base = Path(tempfile.mkdtemp(prefix="berth-dockerd-"))
    d = Dockerd(base)
    try:
        d.docker("import", str(busybox_tar), "busybox:latest")
        yield d
    finally:
        d.stop()


# --- berthd (issue 3): a private berthd for API/CLI tests ----------------------------------

class Berthd:
    """A private berthd on its own temp root, run dir and socket; ended by its pid.

    ``berth(...)`` runs the berth CLI against it, ``docker(...)`` the real docker CLI
    (``docker -H unix://...``), ``client()`` gives a docker-py ``DockerClient``. Both CLI helpers
    return a CompletedProcess with text output; ``check=True`` raises with stderr shown.
    """

    def __init__(self, base: Path, extra_args: tuple[str, ...] = ()):
        self.base = base
        self.root = base / "root"
        self.run = base / "run"
        self.sock = base / "berth.sock"
        self.host = f"unix://{self.sock}"
        self.log_path = base / "berthd.log"
        self.log = open(self.log_path, "wb")
        # Kernel-global names of this daemon's network (issue 5), the same for every berthd
        # on this base (a restarted one finds its own bridge and table again).
        import hashlib

        sfx = hashlib.sha256(str(base).encode()).hexdigest()[:6]
        self.bridge, self.nft_table = f"berth{sfx}", f"berth_{sfx}"
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/berthd"), "--root", str(self.root), "--run", str(self.run),
             "-H", self.host, "--bridge", self.bridge, "--nft-table", self.nft_table,
             *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._clients: list = []
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        import socket
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited: {self.log_path.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.sock))
                    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("berthd did not become ready")

    def berth(self, *args: str, check: bool = True, input=None, timeout: float = 120,
              **kw) -> subprocess.CompletedProcess:
        return self._run([str(REPO / ".venv/bin/berth"), "-H", self.host, *args], check, input,
                         timeout, **kw)

    def docker(self, *args: str, check: bool = True, input=None, timeout: float = 120,
               **kw) -> subprocess.CompletedProcess:
        return self._run(["docker", "-H", self.host, *args], check, input, timeout, **kw)

    @staticmethod
    def _run(cmd, check, input, timeout, **kw):
        binary_in = isinstance(input, bytes)
        r = subprocess.run(cmd, capture_output=True, input=input, timeout=timeout,
                           text=not binary_in, **kw)
        if binary_in and not kw.get("stdout"):
            r.stdout = r.stdout.decode(errors="replace")
            r.stderr = r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd[3:]} exited {r.returncode}: {r.stderr}")
        return r

    def client(self):
        import docker

        c = docker.DockerClient(base_url=self.host, timeout=120)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.purge_network()
        sweep_mounts(self.base)
        sys_out = self.log_path.read_text(errors="replace")
        print(f"--- berthd log ({self.base}) ---\n{sys_out[-20000:]}")
        shutil.rmtree(self.base, ignore_errors=True)


    def purge_network(self) -> None:
        """What berthd leaves in the kernel by design (its bridges, nft table, namespaces of
        containers still running) goes with the test's daemon directory."""
        if not (self.root / "network").exists():
            return
        from berth.network.manager import NetworkManager

        NetworkManager(str(self.root / "network"), str(self.run / "network"),
                       table=self.nft_table, default_bridge=self.bridge).teardown()


def _start_berthd(extra_args: tuple[str, ...] = ()) -> Berthd:
    if os.geteuid() != 0:
        pytest.skip("needs root: berthd runs as root")
    import tempfile

    # A short path: the socket path must fit in sun_path (108 bytes).
    return Berthd(Path(tempfile.mkdtemp(prefix="berth-d-")), extra_args)


@pytest.fixture
def berthd():
    """A fresh private berthd for this test (own root, run dir, socket)."""
    d = _start_berthd()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def berthd_session():
    """One berthd shared by a session's read-mostly tests: do not leave images behind."""
    d = _start_berthd()
    try:
        yield d
    finally:
        d.stop()
