"""berth's registry client against real registries (berth's and the reference one) and against
a faulty one made here: same digests back, HEAD skip, mounts, chunked uploads, platforms,
mirrors, auth, and faults (bad digest, cut connections, missing blobs).
"""

import asyncio
import base64
import hashlib
import json
import os
import shutil

import pytest
from aiohttp import web

from berth.distribution import media
from berth.distribution.client import (
    DigestMismatch,
    ManifestUnknown,
    RegistryClient,
    RegistryDenied,
    RegistryProtocolError,
    RegistryUnauthorized,
    RegistryUnavailable,
)
from berth.distribution.dockerconfig import Credentials
from berth.distribution.layout import Layout
from berth.distribution.pull import Puller
from berth.distribution.push import Pusher
from berth.distribution.reference import parse
from berth.distribution.settings import RegistrySettings

from .imagegen import make_layout
from .regapi import Api, sha
from .regprocs import (
    access_log,
    htpasswd_file,
    self_signed,
    start_berth_registry,
    start_reference_registry,
)

pytestmark = pytest.mark.interop


def run(coro):
    return asyncio.run(coro)


async def push_layout(layout_dir, ref_text, tag="latest", pusher=None, creds=None,
                      settings=None):
    lay = Layout(layout_dir)
    desc = lay.resolve(tag)
    raw = lay.read(desc["digest"])
    ref = parse(ref_text)
    msgs = []
    async with RegistryClient(ref.registry, settings, creds, push=True) as c:
        d = await (pusher or Pusher()).push(c, ref, lay, raw, desc["mediaType"], emit=msgs.append)
    return d, msgs


async def pull_into(layout_dir, ref_text, puller=None, creds=None, platform=None,
                    settings=None):
    lay = Layout(layout_dir)
    ref = parse(ref_text)
    msgs = []
    async with RegistryClient(ref.registry, settings, creds) as c:
        res = await (puller or Puller(lay)).pull(c, ref, platform=platform, emit=msgs.append)
    return res, msgs


@pytest.fixture(params=["berth", "reference"])
def registry(request, tmp_path):
    start = start_berth_registry if request.param == "berth" else start_reference_registry
    r = start(tmp_path / "reg")
    r.impl = request.param
    try:
        yield r
    finally:
        r.stop()


def test_push_then_pull_same_digests(registry, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("a", 400_000), ("b", 50_000), ("c", 1000)])
    ref = f"{registry.host}/round/app:1"
    digest, msgs = run(push_layout(img.layout, ref))
    assert digest == img.manifest_digest
    statuses = [m.get("status") for m in msgs]
    assert statuses.count("Pushed") == 3 and statuses[0].startswith("The push refers to")
    res, msgs = run(pull_into(str(tmp_path / "dst"), ref))
    assert res.digest == img.manifest_digest
    assert [d.digest for d in res.manifest.layers] == [d for d, _ in img.layers]
    dst = Layout(str(tmp_path / "dst"))
    for d, size in img.layers:
        assert dst.size(d) == size
        assert "sha256:" + hashlib.sha256(dst.read(d)).hexdigest() == d
    assert any(m.get("status") == f"Digest: {digest}" for m in msgs)
    # a second push finds everything there: HEADs only, no upload
    _, msgs = run(push_layout(img.layout, ref))
    assert [m.get("status") for m in msgs].count("Layer already exists") == 3
    if registry.impl == "berth":
        uploads = [p for m, p, _, _ in access_log(registry) if m == "POST"]
        assert len(uploads) == 4  # 3 layers + config, all from the first push


def test_chunked_push(registry, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("ch", 300_000)])
    ref = f"{registry.host}/chunk/app:1"
    digest, _ = run(push_layout(img.layout, ref, pusher=Pusher(chunk_size=64 * 1024)))
    assert digest == img.manifest_digest
    if registry.impl == "berth":
        patches = [p for m, p, s, _ in access_log(registry) if m == "PATCH" and s == 202]
        assert len(patches) == -(-img.layers[0][1] // (64 * 1024))
    res, _ = run(pull_into(str(tmp_path / "dst"), ref))
    assert res.digest == digest


def test_manifest_naming_missing_blob_is_refused(registry, tmp_path):
    img = make_layout(str(tmp_path / "src"), [("m", 1000)])
    ref = parse(f"{registry.host}/missing/app:1")

    async def go():
        async with RegistryClient(ref.registry, push=True) as c:
            await c.put_manifest(ref.repository, "1", img.manifest, media.OCI_MANIFEST)

    with pytest.raises(RegistryProtocolError, match="manifest blob unknown"):
        run(go())


def test_second_repository_mounts(tmp_path, berth_registry):
    img = make_layout(str(tmp_path / "src"), [("m1", 200_000), ("m2", 10_000)])
    pusher = Pusher()
    run(push_layout(img.layout, f"{berth_registry.host}/first/app:1", pusher=pusher))
    _, msgs = run(push_layout(img.layout, f"{berth_registry.host}/second/app:1", pusher=pusher))
    assert [m.get("status") for m in msgs].count("Mounted from first/app") == 2
    second = [(m, p, s) for m, p, s, _ in access_log(berth_registry) if "/second/" in p]
    assert not [x for x in second if x[0] in ("PATCH", "PUT") and "/blobs/" in x[1]]
    # the mount hint may also come from the caller (what the store knows of a blob's source)
    _, msgs = run(push_layout(img.layout, f"{berth_registry.host}/third/app:1",
                              pusher=Pusher()))
    assert "Pushed" in [m.get("status") for m in msgs]  # no hint, no memory: uploaded


def test_layer_in_store_is_never_requested(tmp_path, berth_registry):
    base = [("base1", 2_000_000), ("base2", 500_000)]
    v1 = make_layout(str(tmp_path / "v1"), [*base, ("top1", 100_000)])
    v2 = make_layout(str(tmp_path / "v2"), [*base, ("top2", 120_000)])
    run(push_layout(v1.layout, f"{berth_registry.host}/dedup/app:1"))
    run(push_layout(v2.layout, f"{berth_registry.host}/dedup/app:2"))
    dst = str(tmp_path / "dst")
    run(pull_into(dst, f"{berth_registry.host}/dedup/app:1"))
    before = len(access_log(berth_registry))
    res, msgs = run(pull_into(dst, f"{berth_registry.host}/dedup/app:2"))
    gets = [p for m, p, s, _ in access_log(berth_registry)[before:]
            if m == "GET" and "/blobs/" in p]
    layer_gets = [p for p in gets if p.rsplit("/", 1)[1] in {d for d, _ in v2.layers}]
    assert layer_gets == [f"/v2/dedup/app/blobs/{v2.layers[2][0]}"]
    assert res.downloaded == [v2.layers[2][0]]
    assert [m.get("status") for m in msgs].count("Already exists") == 2


def test_concurrent_pulls_share_a_download(tmp_path, berth_registry):
    shared = ("shared", 3_000_000)
    a = make_layout(str(tmp_path / "a"), [shared, ("onlya", 1000)])
    b = make_layout(str(tmp_path / "b"), [shared, ("onlyb", 1000)])
    run(push_layout(a.layout, f"{berth_registry.host}/share/a:1"))
    run(push_layout(b.layout, f"{berth_registry.host}/share/b:1"))
    before = len(access_log(berth_registry))
    dst = Layout(str(tmp_path / "dst"))

    async def both():
        puller = Puller(dst)
        async with RegistryClient(berth_registry.host) as c:
            return await asyncio.gather(
                puller.pull(c, parse(f"{berth_registry.host}/share/a:1")),
                puller.pull(c, parse(f"{berth_registry.host}/share/b:1")))

    ra, rb = run(both())
    shared_digest = a.layers[0][0]
    gets = [p for m, p, s, _ in access_log(berth_registry)[before:]
            if m == "GET" and p.endswith(shared_digest)]
    assert len(gets) == 1
    assert dst.has(shared_digest) and ra.digest == a.manifest_digest
    assert rb.digest == b.manifest_digest


def _push_index(api: Api, name: str) -> tuple[str, dict[str, str]]:
    digests = {}
    descs = []
    for arch in ("amd64", "arm64"):
        cfg = json.dumps({"architecture": arch, "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = api.push_blob(name, cfg)
        layer = os.urandom(100)
        ld = api.push_blob(name, layer)
        doc = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
               "config": {"mediaType": media.OCI_CONFIG, "digest": cd, "size": len(cfg)},
               "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": ld, "size": 100}]}
        raw = json.dumps(doc).encode()
        assert api.push_manifest(name, sha(raw), raw).status == 201
        digests[arch] = sha(raw)
        descs.append({"mediaType": media.OCI_MANIFEST, "digest": sha(raw), "size": len(raw),
                      "platform": {"os": "linux", "architecture": arch}})
    idx = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                      "manifests": descs}).encode()
    assert api.push_manifest(name, "multi", idx, media.OCI_INDEX).status == 201
    return sha(idx), digests


def test_index_platform_choice(registry, tmp_path):
    index_digest, digests = _push_index(Api(registry.url), "plat/app")
    res, _ = run(pull_into(str(tmp_path / "d1"), f"{registry.host}/plat/app:multi",
                           platform=media.parse_platform("linux/arm64")))
    assert res.digest == index_digest and res.manifest_digest == digests["arm64"]
    assert json.loads(res.config)["architecture"] == "arm64"
    # name@<index digest> works and picks the host's platform by default
    res, _ = run(pull_into(str(tmp_path / "d2"), f"{registry.host}/plat/app@{index_digest}",
                           platform=media.parse_platform("linux/amd64")))
    assert res.manifest_digest == digests["amd64"]
    with pytest.raises(media.PlatformNotFound):
        run(pull_into(str(tmp_path / "d3"), f"{registry.host}/plat/app:multi",
                      platform=media.parse_platform("linux/riscv64")))
    with pytest.raises(ManifestUnknown, match="manifest unknown"):
        run(pull_into(str(tmp_path / "d4"), f"{registry.host}/plat/app:nope"))
    # a single-platform image asked for another platform is refused, and says which
    one = f"{registry.host}/plat/app@{digests['amd64']}"
    with pytest.raises(media.PlatformNotFound, match=(
            f"^image with reference {one} was found but does not match the specified "
            "platform: wanted linux/arm64, actual: linux/amd64$")):
        run(pull_into(str(tmp_path / "d5"), one, platform=media.parse_platform("arm64")))


def test_mirror_serves_docker_io(tmp_path, berth_registry):
    img = make_layout(str(tmp_path / "src"), [("mirror", 5000)])
    run(push_layout(img.layout, f"{berth_registry.host}/library/mirrored:1"))
    settings = RegistrySettings(registry_mirrors=[berth_registry.url])
    res, _ = run(pull_into(str(tmp_path / "dst"), "mirrored:1", settings=settings))
    assert res.digest == img.manifest_digest
    assert any("/v2/library/mirrored/manifests/1" in p for _, p, _, _ in
               access_log(berth_registry))


def test_mirror_without_the_image_falls_back_to_the_registry(tmp_path, berth_registry,
                                                             monkeypatch):
    """As dockerd: a pull that fails on a mirror (a cache without the image) goes on to the
    registry itself; here a second local registry stands in for Docker Hub."""
    import berth.distribution.settings as settings_mod

    hub = start_berth_registry(tmp_path / "hub")
    try:
        monkeypatch.setattr(settings_mod, "HUB_ENDPOINT", hub.url)
        img = make_layout(str(tmp_path / "src"), [("hubonly", 4000)])
        run(push_layout(img.layout, f"{hub.host}/library/hubonly:1"))
        settings = RegistrySettings(registry_mirrors=[berth_registry.url])
        res, _ = run(pull_into(str(tmp_path / "dst"), "hubonly:1", settings=settings))
        assert res.digest == img.manifest_digest
        assert any(p == "/v2/library/hubonly/manifests/1" and status == 404
                   for _, p, status, _ in access_log(berth_registry))
        with pytest.raises(ManifestUnknown):  # nowhere: the registry's answer is the error
            run(pull_into(str(tmp_path / "dst2"), "nowhere:1", settings=settings))
    finally:
        hub.stop()


def test_bearer_auth(tmp_path):
    pw = htpasswd_file(tmp_path / "htpasswd", {"carol": "c-pass"})
    r = start_berth_registry(tmp_path / "reg", "--htpasswd", str(pw), "--auth", "token")
    try:
        img = make_layout(str(tmp_path / "src"), [("tok", 10_000)])
        ref = f"{r.host}/tok/app:1"
        # an anonymous token allows nothing: the registry's insufficient_scope reads, as in
        # docker, "denied: requested access to the resource is denied"
        with pytest.raises(RegistryDenied, match="^denied: requested access to the resource"):
            run(push_layout(img.layout, ref))
        good = Credentials("carol", "c-pass")
        pusher = Pusher()
        run(push_layout(img.layout, ref, creds=good, pusher=pusher))
        # a second repository mounts: the mount's challenge asks for the source's pull too,
        # so one token covers it (as with the reference registry)
        _, msgs = run(push_layout(img.layout, f"{r.host}/tok/copy:1", creds=good, pusher=pusher))
        assert [m for m in msgs if m.get("status") == "Mounted from tok/app"]
        api = Api(r.url)
        ans = api.req("POST", f"/v2/tok/other/blobs/uploads/?mount={img.layers[0][0]}"
                              "&from=tok/app")
        assert ans.status == 401
        assert 'scope="repository:tok/other:push repository:tok/app:pull"' in \
            ans.headers["WWW-Authenticate"]
        # and no automatic mount (no from=) across token-guarded repositories
        basic = "Basic " + base64.b64encode(b"carol:c-pass").decode()
        tok = api.req("GET", "/token?service=berth-registry&scope=repository:tok/other:push",
                      headers={"Authorization": basic}).json()["token"]
        ans = api.req("POST", f"/v2/tok/other/blobs/uploads/?mount={img.layers[0][0]}",
                      headers={"Authorization": f"Bearer {tok}"})
        assert ans.status == 202
        with pytest.raises(RegistryDenied):
            run(pull_into(str(tmp_path / "d0"), ref))
        # a refused password fails the token request, named as dockerd names it
        with pytest.raises(RegistryUnauthorized, match=r'^Get "http://.*/v2/tok/app/manifests/1":'
                           r" unauthorized: invalid username or password$"):
            run(pull_into(str(tmp_path / "d0"), ref, creds=Credentials("carol", "nope")))
        res, _ = run(pull_into(str(tmp_path / "d1"), ref, creds=good))
        assert res.digest == img.manifest_digest

        async def login(creds):
            async with RegistryClient(parse(ref).registry, credentials=creds) as c:
                await c.login()

        run(login(good))
        with pytest.raises(RegistryUnauthorized,
                           match=r'Get "http://.*/v2/": unauthorized: invalid username'):
            run(login(Credentials("carol", "wrong")))
    finally:
        r.stop()


def test_token_auth_anonymous_pull(tmp_path):
    pw = htpasswd_file(tmp_path / "htpasswd", {"fay": "f-pass"})
    r = start_berth_registry(tmp_path / "reg", "--htpasswd", str(pw), "--auth", "token",
                             "--anonymous-pull")
    try:
        img = make_layout(str(tmp_path / "src"), [("anon", 10_000)])
        ref = f"{r.host}/anon/app:1"
        with pytest.raises(RegistryDenied):
            run(push_layout(img.layout, ref))  # anonymous clients may not push
        run(push_layout(img.layout, ref, creds=Credentials("fay", "f-pass")))
        res, _ = run(pull_into(str(tmp_path / "d"), ref))  # but may pull
        assert res.digest == img.manifest_digest
        # the catalog is for authenticated users only
        api = Api(r.url)
        assert api.req("GET", "/v2/_catalog").status == 401
    finally:
        r.stop()


def test_basic_auth(tmp_path):
    pw = htpasswd_file(tmp_path / "htpasswd", {"dave": "d-pass"})
    r = start_berth_registry(tmp_path / "reg", "--htpasswd", str(pw))
    try:
        img = make_layout(str(tmp_path / "src"), [("basic", 10_000)])
        ref = f"{r.host}/basic/app:1"
        # as docker's client: a Basic registry is not even asked without credentials
        with pytest.raises(RegistryUnauthorized, match="no basic auth credentials$") as e:
            run(push_layout(img.layout, ref))
        assert e.value.bare == "no basic auth credentials"
        assert not [x for x in access_log(r) if x[1].startswith("/v2/basic/")]
        run(push_layout(img.layout, ref, creds=Credentials("dave", "d-pass")))
        res, _ = run(pull_into(str(tmp_path / "d"), ref, creds=Credentials("dave", "d-pass")))
        assert res.digest == img.manifest_digest
    finally:
        r.stop()


def test_tls_with_certs_d(tmp_path):
    cert, key = self_signed(tmp_path)
    r = start_berth_registry(tmp_path / "reg", tls=(cert, key))
    try:
        # 127.0.0.1 is insecure-allowed, so name it by a host docker would verify: use the
        # certs.d CA and check verification really happens by breaking it
        certs = tmp_path / "certs.d"
        (certs / r.host).mkdir(parents=True)
        shutil.copy(cert, certs / r.host / "ca.crt")
        settings = RegistrySettings(certs_dirs=[str(certs)])
        settings.is_insecure = lambda host: False  # verify even on loopback
        img = make_layout(str(tmp_path / "src"), [("tls", 10_000)])
        ref = f"{r.host}/tls/app:1"
        run(push_layout(img.layout, ref, settings=settings))
        res, _ = run(pull_into(str(tmp_path / "d"), ref, settings=settings))
        assert res.digest == img.manifest_digest
        bare = RegistrySettings(certs_dirs=[])
        bare.is_insecure = lambda host: False
        with pytest.raises(RegistryUnavailable,
                           match="x509: certificate signed by unknown authority"):
            run(pull_into(str(tmp_path / "d2"), ref, settings=bare))
    finally:
        r.stop()


# -- a faulty registry, made here ---------------------------------------------------------------


class Faulty:
    """A registry serving one image whose layer misbehaves as ``mode`` says."""

    def __init__(self, mode: str, layer: bytes) -> None:
        self.mode, self.layer = mode, layer
        self.ranges: list[str | None] = []
        cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        self.cfg = cfg
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
            "config": {"mediaType": media.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
            "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": sha(layer),
                        "size": len(layer)}]}).encode()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self._base)
        app.router.add_get("/v2/bad/app/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/bad/app/blobs/{digest}", self._blob)
        return app

    async def _base(self, request):
        return web.json_response({})

    async def _trickle(self, request, body: bytes, content_type: str):
        # the bytes in three writes with pauses between: what a slow link or TLS records do
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        third = len(body) // 3
        for part in (body[:third], body[third:2 * third], body[2 * third:]):
            await resp.write(part)
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def _manifest(self, request):
        if self.mode == "gzip-proxy" and "gzip" in request.headers.get("Accept-Encoding", ""):
            # what a proxy with gzip on does to JSON for a client that says it takes gzip
            import gzip

            return web.Response(body=gzip.compress(self.manifest), content_type=media.OCI_MANIFEST,
                                headers={"Content-Encoding": "gzip"})
        if self.mode == "trickle":
            return await self._trickle(request, self.manifest, media.OCI_MANIFEST)
        return web.Response(body=self.manifest, content_type=media.OCI_MANIFEST)

    async def _blob(self, request):
        d = request.match_info["digest"]
        if d == sha(self.cfg):
            if self.mode == "trickle":
                return await self._trickle(request, self.cfg, "application/octet-stream")
            return web.Response(body=self.cfg)
        rng = request.headers.get("Range")
        self.ranges.append(rng)
        data = self.layer
        if self.mode == "corrupt":
            return web.Response(body=bytes([data[0] ^ 1]) + data[1:])
        start = int(rng.split("=")[1].split("-")[0]) if rng and self.mode != "norange" else 0
        resp = web.StreamResponse(status=206 if start else 200)
        resp.content_length = len(data) - start
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        cut = (self.mode == "always-cut") or (self.mode in ("cut", "norange")
                                               and len(self.ranges) == 1)
        end = start + (len(data) - start) // 2 if cut else len(data)
        await resp.write(data[start:end])
        if cut:
            request.transport.close()
            return resp
        await resp.write_eof()
        return resp


async def _pull_faulty(mode: str, layer: bytes, dst: str):
    f = Faulty(mode, layer)
    runner = web.AppRunner(f.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        lay = Layout(dst)
        async with RegistryClient(f"127.0.0.1:{port}") as c:
            try:
                res = await Puller(lay, retries=2).pull(c, parse(f"127.0.0.1:{port}/bad/app:1"))
            except Exception as e:  # noqa: BLE001 - handed to the test
                return f, e
        return f, res
    finally:
        await runner.cleanup()


def _visible_blobs(dst: str) -> set[str]:
    out = set()
    for _dirpath, _, files in os.walk(os.path.join(dst, "blobs")):
        out |= {f"sha256:{f}" for f in files}
    return out


def test_manifest_and_config_arriving_in_pieces(tmp_path):
    """A manifest or config that comes in several reads is read whole (a read of n bytes
    gives what has arrived, not n)."""
    layer = os.urandom(3000)
    f, res = run(_pull_faulty("trickle", layer, str(tmp_path / "d")))
    assert not isinstance(res, Exception), res
    assert res.config == f.cfg and res.manifest.raw == f.manifest


def test_no_content_coding_is_asked_for(tmp_path):
    """Manifests are checked by their bytes: berth asks for them as they are (identity), so a
    gzipping proxy leaves them alone."""
    f, res = run(_pull_faulty("gzip-proxy", os.urandom(2000), str(tmp_path / "d")))
    assert not isinstance(res, Exception), res
    assert res.manifest.raw == f.manifest


def test_fault_digest_mismatch_stores_nothing(tmp_path):
    layer = os.urandom(200_000)
    dst = str(tmp_path / "dst")
    f, res = run(_pull_faulty("corrupt", layer, dst))
    assert isinstance(res, DigestMismatch)
    assert str(res) == f"filesystem layer verification failed for digest {sha(layer)}"
    assert sha(layer) not in _visible_blobs(dst)
    assert not os.listdir(os.path.join(dst, ".ingest"))


@pytest.mark.parametrize("mode", ["cut", "norange"])
def test_fault_cut_connection_resumes(tmp_path, mode):
    layer = os.urandom(3_000_000)
    dst = str(tmp_path / "dst")
    f, res = run(_pull_faulty(mode, layer, dst))
    assert not isinstance(res, Exception), res
    assert Layout(dst).read(sha(layer)) == layer
    assert f.ranges[0] is None and len(f.ranges) == 2
    assert f.ranges[1] == f"bytes={len(layer) // 2}-"  # resumed where the cut was


def test_fault_connection_always_cut_leaves_nothing_visible(tmp_path):
    layer = os.urandom(1_000_000)
    dst = str(tmp_path / "dst")
    f, res = run(_pull_faulty("always-cut", layer, dst))
    assert isinstance(res, RegistryUnavailable)
    assert str(res).startswith(f"unexpected EOF: blob {sha(layer)} ended at byte ")
    assert sha(layer) not in _visible_blobs(dst)
    assert len(f.ranges) == 3  # the first try and two retries
