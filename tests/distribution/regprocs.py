"""Helpers of the distribution tests: berth's registry and the reference registry as real
processes on loopback ports chosen at run time, each on its own temporary root; htpasswd files,
self-signed certificates, the access log. (Not in conftest.py: fixtures live there, helpers
that tests and bench scripts import live here.)
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryProc:
    """A server process (berth's or the reference one) ended by its pid in ``stop``."""

    def __init__(self, args: list[str], root: Path, log: Path, url: str | None = None,
                 env: dict | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     cwd=str(REPO))
        self.url = url
        if url is None:
            line = self.proc.stdout.readline().decode()
            if "listening on" not in line:
                self.stop()
                raise RuntimeError(f"registry did not start: {line} {log.read_text()}")
            self.url = line.rsplit(" ", 1)[1].strip()
        self.host = self.url.split("://", 1)[1]
        self._wait()

    def _wait(self, timeout: float = 20) -> None:
        import ssl

        ctx = ssl._create_unverified_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=2, context=ctx)
                return
            except urllib.error.HTTPError:
                return  # 401 is an answer too
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("registry did not answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


def start_berth_registry(base: Path, *extra: str, tls: tuple[str, str] | None = None
                         ) -> RegistryProc:
    root = base / "root"
    # through the berth CLI, as a user starts it
    args = [PY, "-m", "berth.cli.main", "registry", "serve", "--addr", "127.0.0.1:0",
            "--root", str(root), "--access-log", str(base / "access.log"), *extra]
    if tls:
        args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    return RegistryProc(args, root, base / "registry.log")


def start_reference_registry(base: Path, htpasswd: str | None = None) -> RegistryProc:
    if not shutil.which("docker-registry"):
        pytest.skip("needs the reference registry (apt-get install docker-registry)")
    port = free_port()
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n"
    cfg = base / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}")
    return RegistryProc(["docker-registry", "serve", str(cfg)], root, base / "registry.log",
                        url=f"http://127.0.0.1:{port}")


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    path.write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode().replace('$2b$', '$2y$')}\n"
        for u, p in users.items()))
    return path


def self_signed(base: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (and its key), made with openssl."""
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def access_log(r: RegistryProc) -> list[tuple[str, str, int, int]]:
    """(method, path, status, content-length) of each request the berth registry logged."""
    out = []
    p = r.root.parent / "access.log"
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5:
            n = int(parts[4]) if parts[4].isdigit() else 0
            out.append((parts[1], parts[2], int(parts[3]), n))
    return out
