"""Pull and push through berthd: the berth CLI, the docker CLI and docker-py against a private
berthd, with berth's and the reference registry; layer dedup counted at the registry; bearer
auth with ``berth login``; faults (bad digest, cut connection) leave nothing in the store.
"""

import asyncio
import json
import os
import threading

import pytest

from .imagegen import layer_tar, make_layout
from .regapi import Api, sha
from .regprocs import access_log, htpasswd_file, start_berth_registry, start_reference_registry
from .test_client_registry import Faulty

pytestmark = [pytest.mark.root, pytest.mark.interop]

MB = 1_000_000


def skopeo_push(layout: str, dest: str, tag: str = "latest") -> None:
    import subprocess

    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                    f"docker://{dest}"], check=True, capture_output=True)


def content_blobs(berthd) -> set[str]:
    d = berthd.root / "image" / "content" / "blobs" / "sha256"
    return {f"sha256:{x}" for x in os.listdir(d)} if d.exists() else set()


@pytest.fixture(params=["berth", "reference"])
def registry(request, tmp_path):
    start = start_berth_registry if request.param == "berth" else start_reference_registry
    r = start(tmp_path / "reg")
    r.impl = request.param
    try:
        yield r
    finally:
        r.stop()


def test_berth_pull_and_push_keep_digests(registry, berthd, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("d1", 500_000), ("d2", 100_000)])
    src = f"{registry.host}/dm/app:1"
    skopeo_push(img.layout, src)
    out = berthd.berth("pull", src).stdout
    assert f"Digest: {img.manifest_digest}" in out
    assert f"Status: Downloaded newer image for {src}" in out
    assert out.rstrip().endswith(src)
    info = json.loads(berthd.docker("image", "inspect", src).stdout)[0]
    assert info["Id"] == img.config_digest
    assert f"{registry.host}/dm/app@{img.manifest_digest}" in info["RepoDigests"]
    again = berthd.berth("pull", src).stdout
    assert f"Status: Image is up to date for {src}" in again
    # as dockerd: an image it has whole lists no layer at all
    assert not [x for x in again.splitlines() if x.startswith(tuple(
        d[7:19] for d, _ in img.layers))]
    dst = f"{registry.host}/dm/copy:2"
    berthd.docker("tag", src, dst)
    pushed = berthd.berth("push", dst).stdout
    assert f"2: digest: {img.manifest_digest} size: {len(img.manifest)}" in pushed
    # the registry has the very same manifest under the new name
    r = Api(registry.url).req("GET", "/v2/dm/copy/manifests/2",
                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200 and r.body == img.manifest
    if registry.impl == "berth":
        assert pushed.count("Mounted from dm/app") == 2
    # and back: what was pushed pulls to the same image and manifest digest
    berthd.docker("rmi", "-f", img.config_digest)
    assert not content_blobs(berthd) & {d for d, _ in img.layers}
    back = berthd.berth("pull", dst).stdout
    assert back.count("Pull complete") == 2
    assert f"Digest: {img.manifest_digest}" in back
    assert json.loads(berthd.docker("image", "inspect", dst).stdout)[0]["Id"] == \
        img.config_digest


def test_docker_cli_and_docker_py_against_berthd(shared_registry, berthd, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("k1", 300_000)])
    src = f"{shared_registry.host}/dk/app:1"
    skopeo_push(img.layout, src)
    out = berthd.docker("pull", src).stdout
    assert "Pull complete" in out and f"Digest: {img.manifest_digest}" in out
    dst = f"{shared_registry.host}/dk/pushed:1"
    berthd.docker("tag", src, dst)
    out = berthd.docker("push", dst).stdout
    assert "Mounted from dk/app" in out and f"digest: {img.manifest_digest}" in out
    berthd.docker("rmi", src, dst)
    c = berthd.client()
    image = c.images.pull(f"{shared_registry.host}/dk/app", tag="1")
    assert image.id == img.config_digest
    missing = berthd.docker("pull", f"{shared_registry.host}/dk/app:nope", check=False)
    assert missing.returncode == 1
    assert (f"manifest for {shared_registry.host}/dk/app:nope not found: manifest unknown"
            in missing.stderr)


def test_layer_dedup_counted_at_the_registry(berth_registry, berthd, tmp_path):
    """The brief's promise: v2 differs from v1 in its top layer only, and pulling v2 moves
    only that layer's bytes."""
    base = [("base-a", 25 * MB), ("base-b", 20 * MB)]
    v1 = make_layout(str(tmp_path / "v1"), [*base, ("top-1", 5 * MB)])
    v2 = make_layout(str(tmp_path / "v2"), [*base, ("top-2", 5 * MB)])
    assert v1.total > 50 * MB
    skopeo_push(v1.layout, f"{berth_registry.host}/dedup/app:1")
    skopeo_push(v2.layout, f"{berth_registry.host}/dedup/app:2")
    start = len(access_log(berth_registry))
    berthd.berth("pull", f"{berth_registry.host}/dedup/app:1")
    mid = len(access_log(berth_registry))
    out = berthd.berth("pull", f"{berth_registry.host}/dedup/app:2").stdout
    log = access_log(berth_registry)

    def layer_bytes(entries, layers):
        digests = {d for d, _ in layers}
        return sum(n for m, p, s, n in entries if m == "GET" and s in (200, 206)
                   and p.rsplit("/", 1)[1] in digests)

    assert layer_bytes(log[start:mid], v1.layers) == v1.total
    top_digest, top_size = v2.layers[2]
    assert layer_bytes(log[mid:], v2.layers) == top_size
    assert [p for m, p, s, n in log[mid:] if m == "GET" and "/blobs/" in p and
            p.rsplit("/", 1)[1] in {d for d, _ in v2.layers}] == \
        [f"/v2/dedup/app/blobs/{top_digest}"]
    assert out.count("Already exists") == 2


def test_two_pulls_sharing_a_layer_download_it_once(berth_registry, berthd, tmp_path):
    shared = ("shared-big", 20 * MB)
    a = make_layout(str(tmp_path / "a"), [shared, ("a-top", 1000)])
    b = make_layout(str(tmp_path / "b"), [shared, ("b-top", 1000)])
    skopeo_push(a.layout, f"{berth_registry.host}/two/a:1")
    skopeo_push(b.layout, f"{berth_registry.host}/two/b:1")
    start = len(access_log(berth_registry))
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(
        berthd.berth("pull", f"{berth_registry.host}/two/{n}:1", check=False)))
        for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    gets = [p for m, p, s, _ in access_log(berth_registry)[start:]
            if m == "GET" and p.endswith(a.layers[0][0])]
    assert len(gets) == 1


def test_bearer_auth_and_login(tmp_path, berthd, docker_config):
    pw = htpasswd_file(tmp_path / "htpasswd", {"erin": "e-pass"})
    r = start_berth_registry(tmp_path / "reg", "--htpasswd", str(pw), "--auth", "token")
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    try:
        img = make_layout(str(tmp_path / "src"), [("auth", 50_000)])
        import subprocess

        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-creds",
                        "erin:e-pass", f"oci:{img.layout}:latest",
                        f"docker://{r.host}/priv/app:1"], check=True, capture_output=True)
        ref = f"{r.host}/priv/app:1"
        denied = berthd.berth("pull", ref, check=False, env=env)
        assert denied.returncode == 1
        assert (f"pull access denied for {r.host}/priv/app, repository does not exist or may "
                "require 'docker login'") in denied.stderr
        bad = berthd.berth("login", r.host, "-u", "erin", "--password-stdin", input="nope",
                           check=False, env=env)
        assert bad.returncode == 1 and "unauthorized" in bad.stderr
        assert not (docker_config / "config.json").exists() or r.host not in json.loads(
            (docker_config / "config.json").read_text()).get("auths", {})
        ok = berthd.berth("login", r.host, "-u", "erin", "--password-stdin", input="e-pass\n",
                          env=env)
        assert "Login Succeeded" in ok.stdout
        auths = json.loads((docker_config / "config.json").read_text())["auths"]
        import base64

        assert base64.b64decode(auths[r.host]["auth"]) == b"erin:e-pass"
        out = berthd.berth("pull", ref, env=env).stdout
        assert f"Digest: {img.manifest_digest}" in out
        berthd.docker("tag", ref, f"{r.host}/priv/copy:1")
        berthd.berth("push", f"{r.host}/priv/copy:1", env=env)
        assert f"Removing login credentials for {r.host}" in berthd.berth(
            "logout", r.host, env=env).stdout
        assert r.host not in json.loads((docker_config / "config.json").read_text())["auths"]
        # the docker CLI's own credentials reach berthd through X-Registry-Auth as well
        berthd.docker("login", r.host, "-u", "erin", "--password-stdin", input="e-pass",
                      env=env)
        berthd.docker("rmi", ref)
        berthd.docker("pull", ref, env=env)
    finally:
        r.stop()


class _FaultyThread:
    """The test module's faulty registry, served from its own loop in a thread."""

    def __init__(self, mode: str, layer: bytes) -> None:
        from aiohttp import web

        self.f = Faulty(mode, layer)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start():
            self.runner = web.AppRunner(self.f.app())
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop)
        ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _gz_layer(seed: str, size: int) -> tuple[bytes, str]:
    import gzip

    tar = layer_tar(seed, size)
    return gzip.compress(tar, compresslevel=1, mtime=0), sha(tar)


def _faulty(mode: str, seed: str, size: int) -> _FaultyThread:
    gz, diff_id = _gz_layer(seed, size)
    ft = _FaultyThread(mode, gz)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    f = ft.f
    f.cfg = cfg
    f.manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg),
                   "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(gz), "size": len(gz)}]}).encode()
    return ft


def test_fault_bad_digest_stores_nothing(berthd):
    ft = _faulty("corrupt", "fault-a", 400_000)
    try:
        before = content_blobs(berthd)
        r = berthd.berth("pull", f"127.0.0.1:{ft.port}/bad/app:1", check=False)
        assert r.returncode == 1
        assert f"filesystem layer verification failed for digest {sha(ft.f.layer)}" in r.stderr
        assert content_blobs(berthd) == before
        assert json.loads(berthd.docker("images", "--format", "{{json .}}").stdout
                          or "null") is None
        ingest = berthd.root / "image" / "content" / "ingest"
        assert not ingest.exists() or not os.listdir(ingest)
    finally:
        ft.stop()


def test_fault_cut_connection_resumes(berthd):
    ft = _faulty("cut", "fault-b", 2_000_000)
    try:
        berthd.berth("pull", f"127.0.0.1:{ft.port}/bad/app:1")
        assert ft.f.ranges[-1] and ft.f.ranges[-1].startswith("bytes=")
        assert sha(ft.f.layer) in content_blobs(berthd)
    finally:
        ft.stop()


def test_platform_choice_and_index_digest(berth_registry, berthd):
    api = Api(berth_registry.url)
    descs = {}
    for arch in ("amd64", "arm64"):
        gz, diff_id = _gz_layer(f"plat-{arch}", 1000)
        cfg = json.dumps({"architecture": arch, "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": api.push_blob("plat/app", cfg), "size": len(cfg)},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": api.push_blob("plat/app", gz), "size": len(gz)}]}
        raw = json.dumps(man).encode()
        assert api.push_manifest("plat/app", sha(raw), raw).status == 201
        descs[arch] = {"mediaType": man["mediaType"], "digest": sha(raw), "size": len(raw),
                       "platform": {"os": "linux", "architecture": arch}}
    idx = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": list(descs.values())}).encode()
    assert api.push_manifest("plat/app", "multi", idx,
                             "application/vnd.oci.image.index.v1+json").status == 201
    host = berth_registry.host
    berthd.berth("pull", "--platform", "linux/arm64", f"{host}/plat/app:multi")
    info = json.loads(berthd.docker("image", "inspect", f"{host}/plat/app:multi").stdout)[0]
    assert info["Architecture"] == "arm64"
    assert f"{host}/plat/app@{sha(idx)}" in info["RepoDigests"]
    # name@<index digest> resolves locally, and pulls by it work
    berthd.docker("image", "inspect", f"{host}/plat/app@{sha(idx)}")
    berthd.berth("pull", f"{host}/plat/app@{sha(idx)}")
    bad = berthd.berth("pull", "--platform", "linux/s390x", f"{host}/plat/app:multi",
                       check=False)
    assert bad.returncode == 1 and "no matching manifest for linux/s390x" in bad.stderr


def test_push_of_an_imported_image(shared_registry, berthd, dockerd, busybox_tar):
    ref = f"{shared_registry.host}/imported/busybox:1"
    berthd.docker("import", str(busybox_tar), ref)
    out = berthd.berth("push", ref).stdout
    digest = out.split("digest: ")[1].split()[0]
    # the real dockerd pulls what berth pushed, and runs it
    pulled = dockerd.docker("pull", ref, text=True).stdout
    assert f"Digest: {digest}" in pulled
    run = dockerd.docker("run", "--rm", "--network", "none", ref, "echo", "hello", text=True)
    assert run.stdout.strip() == "hello"
    dockerd.docker("rmi", ref)


def test_pull_all_tags_and_zstd_layers(berth_registry, berthd, tmp_path):
    import zstandard

    api = Api(berth_registry.url)
    tar = layer_tar("zstd-layer", 200_000)
    zl = zstandard.ZstdCompressor().compress(tar)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": api.push_blob("zs/app", cfg), "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                       "digest": api.push_blob("zs/app", zl), "size": len(zl)}]}
    for t in ("a", "b"):
        assert api.push_manifest("zs/app", t, man).status == 201
    out = berthd.berth("pull", "--all-tags", f"{berth_registry.host}/zs/app").stdout
    assert out.count("Digest: ") == 2
    tags = berthd.docker("images", "--format", "{{.Tag}}",
                         f"{berth_registry.host}/zs/app").stdout.split()
    assert sorted(tags) == ["a", "b"]
    q = berthd.berth("pull", "-q", f"{berth_registry.host}/zs/app:a").stdout
    assert q.strip() == f"{berth_registry.host}/zs/app:a"


def _root_conftest():
    from tests import conftest

    return conftest


def test_berthd_registry_mirror_flag(berth_registry, tmp_path):
    """berthd --registry-mirror: docker.io pulls go to the mirror (here, berth's registry);
    nothing is sent to Docker Hub because the mirror has the image."""
    root_conftest = _root_conftest()
    img = make_layout(str(tmp_path / "src"), [("mir", 10_000)])
    skopeo_push(img.layout, f"{berth_registry.host}/library/mirrored:1")
    d = root_conftest._start_berthd(("--registry-mirror", berth_registry.url))
    try:
        out = d.berth("pull", "mirrored:1").stdout
        assert f"Digest: {img.manifest_digest}" in out
        assert out.rstrip().endswith("docker.io/library/mirrored:1")
        assert "mirrored:1" in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    finally:
        d.stop()


def test_info_shows_registry_settings_as_dockerd(tmp_path):
    """The same registry flags on both daemons: ``GET /info``'s RegistryConfig, and so what
    ``docker info`` prints as Insecure Registries and Registry Mirrors, are the same."""
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    flags = ("--insecure-registry", "reg.local:5000", "--insecure-registry", "10.9.0.0/16",
             "--registry-mirror", "http://127.0.0.1:7000")
    base = Path(tempfile.mkdtemp(prefix="berth-dk-"))
    sock = f"unix://{base}/docker.sock"
    log = open(base / "dockerd.log", "wb")
    dk = subprocess.Popen(["dockerd", "--data-root", str(base / "data"), "--exec-root",
                           str(base / "exec"), "-H", sock, "--pidfile", str(base / "pid"),
                           "--bridge=none", "--iptables=false", "--ip6tables=false", *flags],
                          stdout=log, stderr=subprocess.STDOUT)
    bd = _root_conftest()._start_berthd(flags)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "-H", sock, "version"], capture_output=True).returncode:
            assert dk.poll() is None and time.monotonic() < deadline, "dockerd did not start"
            time.sleep(0.2)
        fmt = "{{json .RegistryConfig}}"
        want = json.loads(subprocess.run(["docker", "-H", sock, "info", "-f", fmt],
                                         capture_output=True, text=True, check=True).stdout)
        got = json.loads(bd.docker("info", "-f", fmt).stdout)
        assert got == want

        def section(text: str) -> str:
            return text[text.index("Insecure Registries:"):].split("Live Restore")[0]

        dk_info = subprocess.run(["docker", "-H", sock, "info"], capture_output=True,
                                 text=True).stdout
        assert section(bd.docker("info").stdout) == section(dk_info)
    finally:
        bd.stop()
        dk.terminate()
        dk.wait(30)
        log.close()
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            if line.split()[4].startswith(str(base)):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_login_with_a_missing_credential_helper(shared_registry, berthd, tmp_path):
    """The credential helper named by credsStore is not installed: both CLIs fail the same
    way, in one line (berth printed a traceback)."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"credsStore": "berth-test-nosuch"}')
    env = {**os.environ, "DOCKER_CONFIG": str(cfg)}
    got = []
    for cli in (berthd.berth, berthd.docker):
        r = cli("login", "-u", "u", "--password-stdin", shared_registry.host, input="p",
                check=False, env=env)
        got.append((r.returncode, r.stderr.strip().splitlines()[-1]))
    assert got[0] == got[1] == (1, 'Error saving credentials: error storing credentials - err: '
                                   'exec: "docker-credential-berth-test-nosuch": executable '
                                   'file not found in $PATH, out: ``')
