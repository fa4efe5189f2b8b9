"""Pure logic of the registry client: references, challenges, credentials, settings, manifests,
platform choice, progress text. No network, no root.
"""

import base64
import json

import pytest

from berth.distribution import dockerconfig, jsonmessage, media, reference
from berth.distribution.client import _error_text, parse_challenges
from berth.distribution.settings import RegistrySettings
from berth.errors import InvalidArgument

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,registry,repo,tag,digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", None),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
    ("localhost/app:v", "localhost", "app", "v", None),
    ("reg.example:443/a/b/c:t", "reg.example:443", "a/b/c", "t", None),
    (f"app@{D}", "docker.io", "library/app", None, D),
    (f"127.0.0.1:5000/app:1@{D}", "127.0.0.1:5000", "app", "1", D),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
])
def test_reference_normalisation(text, registry, repo, tag, digest):
    r = reference.parse(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)


def test_reference_familiar_forms():
    assert str(reference.parse("busybox")) == "busybox:latest"
    assert reference.parse("127.0.0.1:5000/x/y:2").name == "127.0.0.1:5000/x/y"
    assert reference.parse(f"a@{D}").ref == D


@pytest.mark.parametrize("bad", ["", "app/UPPER", "app:", "app@sha256:abc", "a//b", "-a",
                                 "app:" + "t" * 129, " app", "app@md5:" + "a" * 32])
def test_reference_rejects(bad):
    with pytest.raises(reference.InvalidReference):
        reference.parse(bad)


@pytest.mark.parametrize("text,shown", [
    # what the docker CLI 28 prints for each, checked here by hand
    ("Busybox", "library/Busybox"), ("127.0.0.1:5000/Pj/app:1", "Pj/app"), ("Pj/App", "App"),
    ("a/B@sha256:" + "0" * 64, "a/B@sha256")])
def test_uppercase_message_is_dockers(text, shown):
    with pytest.raises(reference.InvalidReference) as e:
        reference.parse(text)
    assert str(e.value) == f"invalid reference format: repository name ({shown}) must be " \
                           "lowercase"


def test_challenge_parsing():
    (c,) = parse_challenges('Bearer realm="https://auth.example/token",'
                            'service="registry.example",scope="repository:a/b:pull,push"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "registry.example",
                        "scope": "repository:a/b:pull,push"}
    cs = parse_challenges('Basic realm="x", Bearer realm="y",error="insufficient_scope"')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[1].params["error"] == "insufficient_scope"
    assert parse_challenges("") == []


def test_error_bodies_read_as_docker_words():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
    assert _error_text(404, body.encode()) == ("MANIFEST_UNKNOWN",
                                               "manifest unknown: manifest unknown")
    assert _error_text(502, b"<html>bad gateway</html>")[1].startswith("unexpected status 502")


def test_docker_config_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"psFormat": "table {{.ID}}"}))
    assert dockerconfig.get("127.0.0.1:5000") is None
    dockerconfig.store("127.0.0.1:5000", dockerconfig.Credentials("al", "pw:with:colons"))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["psFormat"] == "table {{.ID}}"  # other keys kept
    assert base64.b64decode(doc["auths"]["127.0.0.1:5000"]["auth"]) == b"al:pw:with:colons"
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    c = dockerconfig.get("127.0.0.1:5000")
    assert (c.username, c.password) == ("al", "pw:with:colons")
    dockerconfig.store("docker.io", dockerconfig.Credentials("hub", "x"))
    assert "https://index.docker.io/v1/" in json.loads((tmp_path / "config.json").read_text())[
        "auths"]
    assert dockerconfig.get("docker.io").username == "hub"
    assert dockerconfig.erase("127.0.0.1:5000")
    assert dockerconfig.get("127.0.0.1:5000") is None
    assert not dockerconfig.erase("127.0.0.1:5000")


def test_docker_config_keys_with_scheme(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    auth = base64.b64encode(b"u:p").decode()
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"https://reg.example:5000/v2/": {"auth": auth}}}))
    assert dockerconfig.get("reg.example:5000").password == "p"


def test_docker_config_credential_helper(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "store.json"
    helper = bindir / "docker-credential-testhelper"
    helper.write_text(f"""#!/bin/sh
case "$1" in
  get) read url; if [ -f {store} ]; then cat {store}; else echo "credentials not found"; \
exit 1; fi ;;
  store) cat > {store} ;;
  erase) rm -f {store} ;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "testhelper"}))
    assert dockerconfig.get("r.example") is None
    dockerconfig.store("r.example", dockerconfig.Credentials("hu", "hp"))
    assert json.loads(store.read_text())["Secret"] == "hp"
    # the secret is in the helper, not in the file
    assert "hp" not in (tmp_path / "config.json").read_text()
    assert dockerconfig.get("r.example").username == "hu"


def test_insecure_and_endpoints():
    s = RegistrySettings(insecure_registries=["10.1.0.0/16", "reg.local:5000"],
                         registry_mirrors=["http://127.0.0.1:6000"])
    assert s.is_insecure("127.0.0.1:5000") and s.is_insecure("127.5.6.7")
    assert s.is_insecure("localhost:5000") and s.is_insecure("[::1]:5000")
    assert s.is_insecure("10.1.2.3:5000") and s.is_insecure("reg.local:5000")
    assert not s.is_insecure("reg.example") and not s.is_insecure("10.2.0.1")
    eps = s.endpoints("127.0.0.1:5000")
    assert [e.url for e in eps] == ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]
    assert [e.url for e in s.endpoints("reg.example")] == ["https://reg.example"]
    hub = s.endpoints("docker.io")
    assert hub[0].url == "http://127.0.0.1:6000" and hub[0].mirror
    assert [e.url for e in s.endpoints("docker.io", push=True)] == [
        "https://registry-1.docker.io"]
    # mirrors serve docker.io only
    assert all(not e.mirror for e in s.endpoints("127.0.0.1:5000"))


def test_daemon_json_settings():
    s = RegistrySettings.from_daemon_json({"insecure-registries": ["a:1"],
                                           "registry-mirrors": ["https://m.example/"],
                                           "max-concurrent-downloads": 5})
    assert s.registry_mirrors == ["https://m.example"] and s.max_concurrent_downloads == 5
    with pytest.raises(InvalidArgument):
        RegistrySettings.from_daemon_json({"max-concurrent-downloads": 0})
    with pytest.raises(InvalidArgument):
        RegistrySettings.from_daemon_json({"registry-mirrors": ["m.example"]})


def _index(*platforms):
    return json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": "sha256:" + str(i) * 64, "size": 1,
         "platform": p} for i, p in enumerate(platforms)]}).encode()


def test_platform_choice():
    idx = media.parse_manifest(_index(
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "amd64"}))
    assert media.choose(idx, media.parse_platform("linux/amd64")).digest == "sha256:" + "4" * 64
    assert media.choose(idx, media.parse_platform("linux/arm/v7")).digest == "sha256:" + "2" * 64
    assert media.choose(idx, media.parse_platform("linux/arm64")).digest == "sha256:" + "3" * 64
    assert media.choose(idx, media.parse_platform("arm64")).digest == "sha256:" + "3" * 64
    with pytest.raises(media.PlatformNotFound, match="no matching manifest for linux/s390x"):
        media.choose(idx, media.parse_platform("linux/s390x"))
    with pytest.raises(InvalidArgument):
        media.parse_platform("linux/")


def test_manifest_parsing():
    m = media.parse_manifest(json.dumps({
        "schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST,
        "config": {"mediaType": media.DOCKER_CONFIG, "digest": D, "size": 3},
        "layers": [{"mediaType": media.DOCKER_LAYER_GZIP, "digest": D, "size": 9},
                   {"mediaType": media.DOCKER_FOREIGN_LAYER, "digest": D, "size": 9,
                    "urls": ["https://x"]}]}).encode())
    assert m.media_type == media.DOCKER_MANIFEST and not m.is_index
    assert len(m.blobs()) == 2  # the foreign layer is not the registry's to hold
    for bad, msg in [(b"[]", "not a JSON object"), (b"{", "not JSON"),
                     (json.dumps({"schemaVersion": 1}).encode(), "schema1"),
                     (json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                                  "config": {"mediaType": "x", "digest": "sha256:zz",
                                             "size": 1}}).encode(), "invalid digest")]:
        with pytest.raises(media.InvalidManifest, match=msg):
            media.parse_manifest(bad)
    with pytest.raises(media.InvalidManifest, match="does not match Content-Type"):
        media.parse_manifest(_index(), media.DOCKER_MANIFEST)


def test_progress_text():
    # the very texts dockerd 20.10 sent here for a 200282-byte layer (go-units, 4 digits)
    assert jsonmessage.human_size(1069327) == "1.069MB"
    assert jsonmessage.human_size(512) == "512B"
    assert jsonmessage.bar(3678, 200282) == "[>" + " " * 50 + "]  3.678kB/200.3kB"
    assert jsonmessage.bar(200282, 200282) == "[" + "=" * 50 + ">]  200.3kB/200.3kB"
    assert jsonmessage.bar(50, 100) == "[" + "=" * 25 + ">" + " " * 25 + "]      50B/100B"
    m = jsonmessage.status("Downloading", id="abc", current=5, total=10)
    assert m["progressDetail"] == {"current": 5, "total": 10} and m["id"] == "abc"
    assert jsonmessage.short_id(D) == "a" * 12
    # messages have no progressDetail, a layer's updates always have one (as dockerd's)
    assert jsonmessage.message("Pulling from app", id="1") == {"status": "Pulling from app",
                                                               "id": "1"}
    assert jsonmessage.status("Pull complete", id="abc")["progressDetail"] == {}


def test_terminal_progress_bars():
    import io

    from berth.cli.progress import Renderer

    out = io.StringIO()
    r = Renderer(out, tty=True, width=120)
    r.feed({"status": "Pulling from app", "id": "1"})
    r.feed(jsonmessage.status("Pulling fs layer", id="aaa"))
    r.feed(jsonmessage.status("Pulling fs layer", id="bbb"))
    r.feed(jsonmessage.status("Downloading", id="aaa", current=1_000_000, total=4_000_000))
    import time

    time.sleep(0.1)
    r.feed(jsonmessage.status("Downloading", id="aaa", current=2_000_000, total=4_000_000))
    text = out.getvalue()
    assert "\x1b[2A" in text  # the first layer's line is redrawn in place, two lines up
    assert "aaa: Downloading [" in text and "2MB/4MB" in text
    # speed and time left, from the byte counts: 1 MB in ~0.1 s, 2 MB to go
    line = text.rsplit("\x1b[2K", 1)[1]
    assert "MB/s" in line and line.split("/s ")[1].split("\r")[0].endswith("s")
    plain = io.StringIO()
    p = Renderer(plain, tty=False)
    for m in (jsonmessage.status("Pulling fs layer", id="aaa"),
              jsonmessage.status("Downloading", id="aaa", current=1, total=2),
              jsonmessage.status("Download complete", id="aaa"),
              jsonmessage.error("boom")):
        p.feed(m)
    assert plain.getvalue() == "aaa: Pulling fs layer\naaa: Download complete\n"
    assert p.errors == ["boom"]


def test_berthd_registry_settings(tmp_path):
    from berth.api.daemon import parse_args, registry_settings

    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"insecure-registries": ["reg.local:5000"],
                               "max-concurrent-downloads": 4}))
    s = registry_settings(parse_args(["--config-file", str(cfg), "--registry-mirror",
                                      "http://127.0.0.1:7000", "--insecure-registry",
                                      "10.9.0.0/16", "--max-concurrent-uploads", "2"]))
    assert s.insecure_registries == ["reg.local:5000", "10.9.0.0/16"]
    assert s.registry_mirrors == ["http://127.0.0.1:7000"]
    assert (s.max_concurrent_downloads, s.max_concurrent_uploads) == (4, 2)
    with pytest.raises(InvalidArgument, match="not found"):
        registry_settings(parse_args(["--config-file", str(tmp_path / "none.json")]))


def test_x_registry_auth_codec():
    import base64 as b64

    c = dockerconfig.Credentials("u", "p?>>~")
    enc = dockerconfig.encode_registry_auth(c, "127.0.0.1:5000")
    assert "+" not in enc and "/" not in enc
    got = dockerconfig.decode_registry_auth(enc)
    assert (got.username, got.password) == ("u", "p?>>~")
    # docker-py: standard alphabet, with padding
    std = b64.b64encode(json.dumps({"username": "u", "password": "p?>>~"}).encode()).decode()
    assert dockerconfig.decode_registry_auth(std).password == "p?>>~"
    assert dockerconfig.decode_registry_auth(dockerconfig.encode_registry_auth(None)) is None
    assert dockerconfig.decode_registry_auth("") is None
    # as dockerd: a header it cannot read means no credentials, not a refused request
    assert dockerconfig.decode_registry_auth("!!!not base64") is None
    assert dockerconfig.decode_registry_auth("eyJ1c2VybmFtZSI6") is None  # cut JSON


@pytest.mark.interop
@pytest.mark.parametrize("args,stdin", [
    (["pull", "-a", "127.0.0.1:9/x:1"], None),
    (["push", "-a", "127.0.0.1:9/x:1"], None),
    (["push", "127.0.0.1:9/x@sha256:" + "a" * 64], None),
    # references the CLI itself refuses, before any daemon (or Docker Hub lookup)
    (["pull", "x:"], None), (["pull", "a//b"], None), (["pull", "Busybox"], None),
    (["push", "Busybox"], None), (["pull", "127.0.0.1:9/Pj/x:1"], None),
    (["pull", "x@sha256:abc"], None),
    (["login", "-u", "u", "-p", "x", "--password-stdin", "127.0.0.1:9"], "pw"),
    (["login", "--password-stdin", "127.0.0.1:9"], "pw"),
    (["logout", "127.0.0.1:9"], None),
    (["logout", "127.0.0.1:9"], None),
])
def test_cli_refusals_read_as_the_docker_clis(args, stdin, tmp_path, monkeypatch):
    """What both CLIs say before asking any daemon: same words, same exit status."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("docker"):
        pytest.skip("needs the docker CLI")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text('{"auths": {"127.0.0.1:9": {"auth": "dTpw"}}}')
    sock = f"unix://{tmp_path}/none.sock"  # no daemon: none of these may need one
    got = []
    for cmd in (["docker"], [sys.executable, "-m", "berth.cli.main"]):
        r = subprocess.run([*cmd, "-H", sock, *args], input=stdin, capture_output=True,
                           text=True, timeout=60)
        got.append((r.returncode, r.stdout.strip(), r.stderr.strip()))
    assert got[0] == got[1]
