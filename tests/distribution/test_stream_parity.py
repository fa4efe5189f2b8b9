"""berthd's pull and push answers beside dockerd's, request by request, through the Engine API
(what the docker CLI and docker-py read): the progress stream's messages and fields, and the
status code and words of every failure a user meets (a missing tag or repository, an
unreachable registry, a refused or missing login, a bad name, no image for the platform, a
missing local image or tag on push).
"""

import http.client
import json
import socket

import pytest

from .imagegen import make_layout
from .regapi import Api, sha
from .regprocs import free_port, htpasswd_file, start_berth_registry

pytestmark = [pytest.mark.root, pytest.mark.interop]

NO_AUTH = "e30="  # base64 of "{}": what the docker CLI sends without credentials


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def call(daemon, method: str, path: str, auth: str = NO_AUTH
         ) -> tuple[int, list[dict] | dict]:
    """(status, the JSON lines of a stream, or the error body) of one Engine API request."""
    c = _Unix(str(daemon.sock))
    try:
        c.request(method, f"/v1.41{path}", headers={"X-Registry-Auth": auth})
        r = c.getresponse()
        body = r.read().decode()
    finally:
        c.close()
    if r.status != 200:
        return r.status, json.loads(body)
    return 200, [json.loads(line) for line in body.splitlines() if line.strip()]


def in_band_error(msgs: list[dict]) -> str:
    (err,) = [m for m in msgs if "error" in m]
    assert err["errorDetail"]["message"] == err["error"]
    return err["error"]


@pytest.fixture
def daemons(dockerd, berthd, busybox_tar):
    berthd.docker("import", str(busybox_tar), "busybox:latest")

    def images() -> set[str]:
        return set(dockerd.docker("images", "-q", "--no-trunc", text=True).stdout.split())

    before = images()
    try:
        yield {"docker": dockerd, "berth": berthd}
    finally:
        # the session's dockerd is shared: leave it with no image a test here pulled
        new = sorted(images() - before)
        if new:
            dockerd.docker("rmi", "-f", *new, check=False)


@pytest.fixture
def image(berth_registry, tmp_path):
    """A 5-layer image in berth's registry: more layers than the 3 downloads at a time."""
    img = make_layout(str(tmp_path / "img"), [(f"p{i}", 20_000 * (i + 1)) for i in range(5)])
    import subprocess

    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{img.layout}:latest",
                    f"docker://{berth_registry.host}/par/app:1"], check=True)
    return img


def test_pull_stream_fields_match_dockerd(daemons, berth_registry, image):
    streams = {}
    for who, d in daemons.items():
        status, msgs = call(d, "POST", f"/images/create?fromImage={berth_registry.host}/par/app"
                                       "&tag=1")
        assert status == 200, (who, msgs)
        streams[who] = msgs
    for who, msgs in streams.items():
        # a message has no progressDetail; a layer's update always has one
        assert msgs[0] == {"status": "Pulling from par/app", "id": "1"}, (who, msgs)
        assert msgs[-2:] == [{"status": f"Digest: {image.manifest_digest}"},
                             {"status": "Status: Downloaded newer image for "
                                        f"{berth_registry.host}/par/app:1"}], (who, msgs)
        layer_msgs = [m for m in msgs[1:-2]]
        assert all("id" in m and "progressDetail" in m for m in layer_msgs), who
        ids = {m["id"] for m in layer_msgs}
        assert ids == {d[7:19] for d, _ in image.layers}, (who, msgs)
        # the two layers past the 3-download limit wait for their turn, as dockerd says
        waiting = [m["id"] for m in layer_msgs if m["status"] == "Waiting"]
        assert len(waiting) == 2, (who, msgs)
        for m in layer_msgs:
            if m["status"] in ("Downloading", "Extracting") and "current" in m["progressDetail"]:
                d = m["progressDetail"]
                assert m["progress"].startswith("[") and m["progress"].count("=") <= 50
                if d["current"] == d["total"]:
                    # docker's full bar keeps its arrow, and sizes have 4 digits
                    assert m["progress"].startswith("[" + "=" * 50 + ">]"), (who, m)
        completes = [m["id"] for m in layer_msgs if m["status"] == "Pull complete"]
        assert sorted(completes) == sorted(ids), (who, msgs)
    # a second pull of an image the daemon has whole lists no layer at all
    for who, d in daemons.items():
        status, msgs = call(d, "POST", f"/images/create?fromImage={berth_registry.host}/par/app"
                                       "&tag=1")
        assert [m["status"] for m in msgs] == [
            "Pulling from par/app", f"Digest: {image.manifest_digest}",
            f"Status: Image is up to date for {berth_registry.host}/par/app:1"], who
    # by digest: the stream names the reference in full
    for who, d in daemons.items():
        status, msgs = call(d, "POST", f"/images/create?fromImage={berth_registry.host}/par/app"
                                       f"&tag={image.manifest_digest}")
        assert msgs[0] == {"status": "Pulling from par/app",
                           "id": f"{berth_registry.host}/par/app@{image.manifest_digest}"}, who


def test_pull_failures_match_dockerd(daemons, berth_registry, tmp_path):
    pw = htpasswd_file(tmp_path / "htpasswd", {"u": "p"})
    tok = start_berth_registry(tmp_path / "tok", "--htpasswd", str(pw), "--auth", "token")
    basic = start_berth_registry(tmp_path / "basic", "--htpasswd", str(pw))
    try:
        host = berth_registry.host
        api = Api(berth_registry.url)
        api.push_image("par/there", "1", [b"x"])
        closed = f"127.0.0.1:{free_port()}"
        rows = [
            # (query, status, message: equal in both unless a (docker, berth) pair)
            (f"{host}/par/nothing&tag=1", 404,
             f"repository {host}/par/nothing not found: name unknown: "),
            (f"{host}/par/there&tag=nosuch", 404,
             f"manifest for {host}/par/there:nosuch not found: manifest unknown: "),
            (f"{closed}/x/y&tag=1", 500,
             f'Get "http://{closed}/v2/": dial tcp {closed}: connect: connection refused'),
            ("Pj/app&tag=1", 400, "invalid reference format: repository name must be lowercase"),
            (f"{tok.host}/x/y&tag=1", 404,
             f"pull access denied for {tok.host}/x/y, repository does not exist or may require "
             "'docker login': denied: requested access to the resource is denied"),
            # dockerd asks with HEAD first, berth with GET; the words after are the same
            (f"{basic.host}/x/y&tag=1", 500,
             (f'Head "http://{basic.host}/v2/x/y/manifests/1": no basic auth credentials',
              f'Get "http://{basic.host}/v2/x/y/manifests/1": no basic auth credentials')),
        ]
        for query, status, message in rows:
            got = {who: call(d, "POST", f"/images/create?fromImage={query}")
                   for who, d in daemons.items()}
            for i, who in enumerate(("docker", "berth")):
                want_status = status[i] if isinstance(status, tuple) else status
                want = message[i] if isinstance(message, tuple) else message
                s, body = got[who]
                assert s == want_status, (query, who, got)
                assert body["message"].startswith(want), (query, who, got)
    finally:
        tok.stop()
        basic.stop()


def test_unreadable_registry_auth_is_no_credentials(daemons, berth_registry, image):
    for who, d in daemons.items():
        for bad in ("garbage!!", "eyJ1c2VybmFtZSI6"):
            s, msgs = call(d, "POST", f"/images/create?fromImage={berth_registry.host}/par/app"
                                      "&tag=1", auth=bad)
            assert s == 200 and msgs[-1]["status"].startswith("Status: "), (who, bad, msgs)


def test_platform_miss_is_an_error_in_the_stream(daemons, berth_registry):
    api = Api(berth_registry.url)
    d, doc = api.push_image("par/plat", "single", [b"l"])
    raw = json.dumps(doc).encode()
    idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": [{"mediaType": doc["mediaType"], "digest": d,
                                     "size": len(raw),
                                     "platform": {"os": "linux", "architecture": "amd64"}}]})
    assert api.push_manifest("par/plat", "multi", idx.encode(),
                             "application/vnd.oci.image.index.v1+json").status == 201
    for who, daemon in daemons.items():
        s, msgs = call(daemon, "POST", f"/images/create?fromImage={berth_registry.host}/par/plat"
                                       "&tag=multi&platform=linux/s390x")
        assert s == 200 and msgs[0] == {"status": "Pulling from par/plat", "id": "multi"}, who
        assert in_band_error(msgs).startswith(
            "no matching manifest for linux/s390x in the manifest list entries"), who


def test_platform_words_parse_as_dockerd(daemons, berth_registry, image):
    """--platform as containerd's parser reads it: one word is an OS or an architecture,
    capitals are folded, and bad specifiers are refused (400) in the same words."""
    base = f"/images/create?fromImage={berth_registry.host}/par/app&tag=1&platform="
    for spec in ("foo", "linux//x", "linux/ar%20m", "linux/amd64/v2/x"):
        got = {who: call(d, "POST", base + spec) for who, d in daemons.items()}
        assert got["berth"] == got["docker"] and got["berth"][0] == 400, (spec, got)
    for spec in ("linux", "AMD64", "Linux/x86_64"):
        for who, d in daemons.items():
            s, msgs = call(d, "POST", base + spec)
            assert s == 200 and msgs[-1]["status"].startswith("Status: "), (spec, who, msgs)


def test_artifacts_are_not_pulled_as_images(daemons, berth_registry):
    """A Helm chart or an SBOM artifact: refused before any of it is fetched, as dockerd."""
    api = Api(berth_registry.url)
    empty = api.push_blob("par/sbom", b"{}")
    art = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "artifactType": "application/vnd.example.sbom",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty,
                      "size": 2},
           "layers": [{"mediaType": "application/spdx+json",
                       "digest": api.push_blob("par/sbom", b'{"spdx": 1}'), "size": 11}]}
    assert api.push_manifest("par/sbom", "1", art).status == 201
    for who, d in daemons.items():
        s, msgs = call(d, "POST", f"/images/create?fromImage={berth_registry.host}/par/sbom"
                                  "&tag=1")
        assert [m.get("status") for m in msgs[:-1]] == ["Pulling from par/sbom"], (who, msgs)
        assert in_band_error(msgs) == "unsupported media type application/vnd.oci.empty.v1+json"


def test_corrupt_layer_reads_as_dockerd(daemons):
    from .test_daemon import _faulty

    ft = _faulty("corrupt", "parity-corrupt", 50_000)
    try:
        got = {who: call(d, "POST", f"/images/create?fromImage=127.0.0.1:{ft.port}/bad/app"
                                    "&tag=1") for who, d in daemons.items()}
        errs = {who: in_band_error(msgs) for who, (_, msgs) in got.items()}
        assert errs["berth"] == errs["docker"] == \
            f"filesystem layer verification failed for digest {sha(ft.f.layer)}"
    finally:
        ft.stop()


def test_push_stream_matches_dockerd(daemons, berth_registry):
    host = berth_registry.host
    for who, d in daemons.items():
        # no such image, then no such tag: errors in the stream, after the first line
        s, msgs = call(d, "POST", f"/images/{host}/par/none-{who}/push?tag=1")
        assert s == 200, (who, msgs)
        assert msgs[0] == {"status": f"The push refers to repository [{host}/par/none-{who}]"}
        assert in_band_error(msgs) == f"An image does not exist locally with the tag: " \
                                      f"{host}/par/none-{who}", who
        d.docker("tag", "busybox:latest", f"{host}/par/push-{who}:1")
        s, msgs = call(d, "POST", f"/images/{host}/par/push-{who}/push?tag=2")
        assert in_band_error(msgs) == f"tag does not exist: {host}/par/push-{who}:2", who
    # a registry that does not answer: the error right after the first line, no layer listed
    closed = f"127.0.0.1:{free_port()}"
    for who, d in daemons.items():
        d.docker("tag", "busybox:latest", f"{closed}/par/x:1")
        s, msgs = call(d, "POST", f"/images/{closed}/par/x/push?tag=1")
        assert [m.get("status") for m in msgs[:-1]] == [
            f"The push refers to repository [{closed}/par/x]"], (who, msgs)
        assert in_band_error(msgs) == f'Get "http://{closed}/v2/": dial tcp {closed}: ' \
                                      "connect: connection refused", who
        d.docker("rmi", f"{closed}/par/x:1")
    ids = {}
    for who, d in daemons.items():
        s, msgs = call(d, "POST", f"/images/{host}/par/push-{who}/push?tag=1")
        assert s == 200 and not [m for m in msgs if "error" in m], (who, msgs)
        assert msgs[0] == {"status": f"The push refers to repository [{host}/par/push-{who}]"}
        done = [m for m in msgs if m.get("status", "").startswith("1: digest: ")]
        assert len(done) == 1 and "progressDetail" not in done[0], (who, done)
        assert msgs[-1]["aux"]["Tag"] == "1", who
        ids[who] = {m["id"] for m in msgs if m.get("status") == "Preparing"}
    # the same imported busybox has the same diffID in both, and docker shows layers by it
    assert ids["berth"] == ids["docker"] and len(ids["berth"]) == 1
    for who, d in daemons.items():
        d.docker("rmi", f"{host}/par/push-{who}:1")
