"""berth's registry driven by real clients: skopeo, the docker CLI with a private dockerd, and
podman; Basic and token auth as those clients do them; TLS; concurrency, disconnects, gc.
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

from .imagegen import make_layout
from .regapi import Api, sha
from .regprocs import htpasswd_file, self_signed, start_berth_registry

pytestmark = pytest.mark.interop

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {r.stderr}")
    return r


def oci_manifest_digest(layout) -> str:
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)["manifests"][0]["digest"]


@needs_skopeo
def test_skopeo_roundtrip_and_mount(shared_registry, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("s1", 300_000), ("s2", 20_000)])
    host = shared_registry.host
    skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout}:latest",
           f"docker://{host}/sk/app:1")
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/sk/app:1", f"oci:{out}:x")
    assert oci_manifest_digest(out) == img.manifest_digest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/sk/app:1").stdout)
    assert info["Digest"] == img.manifest_digest
    assert info["Layers"] == [d for d, _ in img.layers]
    # a copy to a second repository mounts the layers instead of uploading them
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{host}/sk/app:1", f"docker://{host}/sk/other:2")
    from .regprocs import access_log

    mounts = [p for m, p, s, _ in access_log(shared_registry)
              if m == "POST" and p.startswith("/v2/sk/other/") and "mount=" in p and s == 201]
    assert len(mounts) == len(img.layers)
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{host}/sk/app").stdout)
    assert tags["Tags"] == ["1"]


@pytest.mark.root
def test_docker_push_pull(shared_registry, dockerd):
    ref = f"{shared_registry.host}/dk/busybox:1"
    dockerd.docker("tag", "busybox:latest", ref)
    push = dockerd.docker("push", ref, text=True)
    digest = push.stdout.split("digest: ")[1].split()[0]
    dockerd.docker("rmi", ref)
    pull = dockerd.docker("pull", ref, text=True)
    assert f"Digest: {digest}" in pull.stdout
    out = dockerd.docker("image", "inspect", ref, "--format", "{{json .RepoDigests}}",
                         text=True).stdout
    assert f"{shared_registry.host}/dk/busybox@{digest}" in out
    # docker's cross-repository mount on a second push
    ref2 = f"{shared_registry.host}/dk/second:1"
    dockerd.docker("tag", ref, ref2)
    assert "Mounted from dk/busybox" in dockerd.docker("push", ref2, text=True).stdout
    dockerd.docker("rmi", ref, ref2)


@pytest.mark.root
def test_podman_pull(shared_registry, dockerd, tmp_short):
    if not shutil.which("podman"):
        pytest.skip("needs podman")
    ref = f"{shared_registry.host}/pm/busybox:1"
    dockerd.docker("tag", "busybox:latest", ref)
    dockerd.docker("push", ref)
    dockerd.docker("rmi", ref)
    pod = ["podman", "--root", str(tmp_short / "root"), "--runroot", str(tmp_short / "run"),
           "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    r = subprocess.run([*pod, "pull", "--tls-verify=false", ref], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*pod, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"],
                       capture_output=True, text=True, check=True)
    assert f"{shared_registry.host}/pm/busybox:1 sha256:" in r.stdout
    subprocess.run([*pod, "rmi", "-a", "-f"], capture_output=True)


@needs_skopeo
def test_basic_auth_with_skopeo(tmp_path):
    pw = htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"})
    r = start_berth_registry(tmp_path, "--htpasswd", str(pw))
    try:
        img = make_layout(str(tmp_path / "src"), [("b1", 1000)])
        dest = f"docker://{r.host}/auth/app:1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout}:latest", dest,
                        check=False)
        assert denied.returncode != 0 and "authentication required" in denied.stderr
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret",
               f"oci:{img.layout}:latest", dest)
        bad = skopeo("inspect", "--tls-verify=false", "--creds", "alice:wrong", dest,
                     check=False)
        assert bad.returncode != 0
        res = Api(r.url).req("GET", "/v2/")
        assert res.status == 401 and res.headers["WWW-Authenticate"].startswith("Basic ")
        assert res.code == "UNAUTHORIZED"
    finally:
        r.stop()


@pytest.mark.root
def test_token_auth_with_docker(tmp_path, dockerd, docker_config):
    pw = htpasswd_file(tmp_path / "htpasswd", {"bob": "pa55"})
    r = start_berth_registry(tmp_path, "--htpasswd", str(pw), "--auth", "token")
    try:
        ref = f"{r.host}/tok/busybox:1"
        dockerd.docker("tag", "busybox:latest", ref)
        env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
        denied = dockerd.docker("push", ref, check=False, text=True, env=env)
        assert denied.returncode != 0
        assert "no basic auth credentials" in denied.stderr or "denied" in denied.stderr \
            or "unauthorized" in denied.stderr
        login = dockerd.docker("login", r.host, "-u", "bob", "--password-stdin",
                               input="pa55", check=False, text=True, env=env)
        assert login.returncode == 0, login.stderr
        dockerd.docker("push", ref, env=env)
        dockerd.docker("rmi", ref)
        dockerd.docker("pull", ref, env=env)
        dockerd.docker("rmi", ref)
        bad = dockerd.docker("login", r.host, "-u", "bob", "--password-stdin", input="nope",
                             check=False, text=True, env=env)
        assert bad.returncode != 0
        # the challenge names the token realm and the scope the request needs
        res = Api(r.url).req("GET", "/v2/tok/busybox/tags/list")
        chal = res.headers["WWW-Authenticate"]
        assert res.status == 401 and chal.startswith("Bearer realm=")
        assert 'scope="repository:tok/busybox:pull"' in chal
    finally:
        r.stop()


@needs_skopeo
def test_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    r = start_berth_registry(tmp_path, tls=(cert, key))
    try:
        assert r.url.startswith("https://")
        certs = tmp_path / "certs.d"
        certs.mkdir()
        shutil.copy(cert, certs / "ca.crt")
        img = make_layout(str(tmp_path / "src"), [("t1", 5000)])
        skopeo("copy", "--dest-cert-dir", str(certs), f"oci:{img.layout}:latest",
               f"docker://{r.host}/tls/app:1")
        info = json.loads(skopeo("inspect", "--cert-dir", str(certs),
                                 f"docker://{r.host}/tls/app:1").stdout)
        assert info["Digest"] == img.manifest_digest
        # without the CA the certificate is refused
        assert skopeo("inspect", f"docker://{r.host}/tls/app:1", check=False).returncode != 0
    finally:
        r.stop()


def _blob_files(root) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(root / "blobs"):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def test_concurrent_pushes_of_one_blob_keep_one_copy(berth_registry):
    api = Api(berth_registry.url)
    data = os.urandom(3 << 20)
    errors = []

    def push(i):
        try:
            api.push_blob(f"conc/r{i}", data)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    files = _blob_files(berth_registry.root)
    assert [f for f in files if f.endswith(sha(data)[7:])] and len(files) == 1
    for i in range(6):
        assert api.req("HEAD", f"/v2/conc/r{i}/blobs/{sha(data)}").status == 200
    assert os.listdir(berth_registry.root / "uploads") == []


def _cut_upload(host: str, path: str, method: str, total: int, sent: int) -> None:
    """Send ``sent`` of ``total`` announced body bytes, then close the connection."""
    h, p = host.rsplit(":", 1)
    with socket.create_connection((h, int(p))) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {total}\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        s.sendall(os.urandom(sent))


def test_disconnect_mid_upload_leaves_nothing_visible(berth_registry):
    api = Api(berth_registry.url)
    name = f"cut/{uuid.uuid4().hex[:6]}"
    data = os.urandom(1 << 20)
    # monolithic single POST cut halfway
    _cut_upload(berth_registry.host, f"/v2/{name}/blobs/uploads/?digest={sha(data)}", "POST",
                len(data), len(data) // 2)
    # chunked: a first good chunk, then a PATCH cut halfway
    r = api.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = r.headers["Location"]
    r = api.req("PATCH", loc, data[:1000], {"Content-Range": "0-999"})
    assert r.status == 202
    _cut_upload(berth_registry.host, loc, "PATCH", 5000, 2000)
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = api.req("GET", loc)
        if r.headers.get("Range") == "0-999":
            break
        time.sleep(0.05)
    # the cut chunk was rolled back: the session resumes at the last good offset
    assert r.status == 204 and r.headers["Range"] == "0-999"
    assert api.req("HEAD", f"/v2/{name}/blobs/{sha(data)}").status == 404
    assert _blob_files(berth_registry.root) == []
    r = api.req("PATCH", loc, data[1000:], {"Content-Range": f"1000-{len(data) - 1}"})
    assert r.status == 202
    r = api.req("PUT", f"{r.headers['Location']}?digest={sha(data)}")
    assert r.status == 201
    assert api.req("GET", f"/v2/{name}/blobs/{sha(data)}").body == data


def test_gc_sweeps_unreferenced_blobs(tmp_path):
    r = start_berth_registry(tmp_path)
    try:
        api = Api(r.url)
        keep, _ = api.push_image("gc/app", "1", [b"kept layer"])
        gone, doc = api.push_image("gc/app", "2", [b"dropped layer"])
        orphan = api.push_blob("gc/app", b"never referenced")
        assert api.req("DELETE", f"/v2/gc/app/manifests/{gone}").status == 202
        busy = subprocess.run(
            [os.sys.executable, "-m", "berth.distribution.server", "gc", "--root", str(r.root)],
            capture_output=True, text=True)
        assert busy.returncode == 1 and "is being served" in busy.stderr
    finally:
        r.stop()
    out = subprocess.run(
        [os.sys.executable, "-m", "berth.distribution.server", "gc", "--root", str(r.root)],
        capture_output=True, text=True, check=True).stdout
    assert f"deleted blob {orphan}" in out
    assert f"deleted blob {sha(b'dropped layer')}" in out and f"deleted blob {gone}" in out
    assert sha(b"kept layer") not in out and keep not in out
    r = start_berth_registry(tmp_path)
    try:
        api = Api(r.url)
        assert api.req("GET", "/v2/gc/app/manifests/1",
                       headers={"Accept": "*/*"}).status == 200
        assert api.req("GET", f"/v2/gc/app/blobs/{sha(b'kept layer')}").body == b"kept layer"
        assert api.req("HEAD", f"/v2/gc/app/blobs/{orphan}").status == 404
    finally:
        r.stop()


def test_gc_refuses_a_root_that_is_no_registry(tmp_path):
    for root, why in ((tmp_path / "typo", "no registry root at"),
                      (tmp_path / "file", "no registry root at")):
        if root.name == "file":
            root.write_text("x")
        r = subprocess.run([os.sys.executable, "-m", "berth.distribution.server", "gc",
                            "--root", str(root)], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr == f"berth registry: {why} {root}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made


def test_serve_refusals_leave_no_root(tmp_path):
    """A busy port, a missing htpasswd file, a token mode with no users: one line, exit 1,
    and no empty registry root left behind."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [(["--addr", f"127.0.0.1:{port}"],
                  f"cannot listen on 127.0.0.1:{port}: address already in use"),
                 (["--htpasswd", str(tmp_path / "none")],
                  f"htpasswd file {tmp_path / 'none'}: No such file or directory"),
                 (["--auth", "token"], "--auth token needs --htpasswd")]
        for i, (extra, why) in enumerate(cases):
            root = tmp_path / f"root{i}"
            args = ["--addr", "127.0.0.1:0", *extra] if extra[0] != "--addr" else extra
            r = subprocess.run([os.sys.executable, "-m", "berth.distribution.server", "serve",
                                "--root", str(root), *args], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 1 and r.stderr.startswith(f"berth registry: {why}"), r.stderr
            assert len(r.stderr.splitlines()) == 1 and not root.exists()


def test_abandoned_uploads_are_purged(tmp_path):
    """A push whose client died leaves a session; one a day old is purged when the server
    starts (and hourly), a recent one is kept."""
    r = start_berth_registry(tmp_path)
    try:
        api = Api(r.url)
        old = api.req("POST", "/v2/pu/app/blobs/uploads/").headers["Location"]
        api.req("PATCH", old, b"half a layer", {"Content-Type": "application/octet-stream"})
        fresh = api.req("POST", "/v2/pu/app/blobs/uploads/").headers["Location"]
    finally:
        r.stop()
    stale = time.time() - 2 * 24 * 3600
    session = r.root / "uploads" / old.rsplit("/", 1)[1]
    for f in ("info", "data"):
        os.utime(session / f, (stale, stale))
    r = start_berth_registry(tmp_path)
    try:
        api = Api(r.url)
        deadline = time.monotonic() + 10
        while session.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not session.exists()
        assert api.req("GET", old).status == 404
        assert api.req("GET", fresh).status == 204
    finally:
        r.stop()
