"""berthd answers as dockerd does, side by side: the same archive loaded into both, the same
calls made, the answers compared (JSON shapes and order, null vs [], rmi's records, filters,
error wording). Images get unique names; dockerd's are removed in a finally."""

import json
import os
import shutil
import subprocess
from urllib.parse import quote

import pytest

from tests.image.imagebuild import config_for, docker_archive, layer_tar

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _out(r) -> str:
    return r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout


def _err(r) -> str:
    return r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr


@pytest.fixture
def pair(berthd, dockerd):
    """(berthd, dockerd, name): both with the same labelled two-layer image loaded as NAME:1
    and the same busybox-free layers; whatever NAME* is left on dockerd is removed after."""
    name = f"par{os.urandom(3).hex()}"
    layers = [layer_tar([("file", "a", b"a" * 3000)]), layer_tar([("file", "b", b"b" * 70)])]
    archive = docker_archive([(layers, [f"{name}:1"])], config=config_for(
        layers, created="2021-02-03T04:05:06Z", labels={"team": "core"}))
    for e in (berthd, dockerd):
        e.docker("load", input=archive)
    try:
        yield berthd, dockerd, name
    finally:
        left = _out(dockerd.docker("images", "-q", "--no-trunc", "--filter",
                                   f"reference={name}*", check=False)).split()
        left += _out(dockerd.docker("images", "-q", "--no-trunc", "--filter",
                                    f"reference=*/{name}*", check=False)).split()
        if left:
            dockerd.docker("rmi", "-f", *sorted(set(left)), check=False)


def _api(engine, path: str):
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(engine.sock))

    c = Conn("localhost", timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_inspect_json_has_dockerd_fields_order_and_nulls(pair):
    b, d, name = pair
    ours = _api(b, f"/v1.41/images/{name}:1/json")[1]
    theirs = _api(d, f"/v1.41/images/{name}:1/json")[1]
    # the daemon's own paths and times differ; everything else is the image's
    for doc in (ours, theirs):
        doc["GraphDriver"]["Data"] = sorted(doc["GraphDriver"]["Data"] or {})
        doc.pop("Metadata")
        doc.pop("DockerVersion")
    assert list(ours) == list(theirs)  # no Variant when the image has none
    assert list(ours["Config"]) == list(theirs["Config"])
    assert ours == theirs


def test_list_json_nulls_and_reference_globs_as_dockerd(pair):
    b, d, name = pair
    for e in (b, d):
        e.docker("tag", f"{name}:1", f"example.com:5000/team/{name}:v1")
    for filt in [name, f"{name}*", "*", f"*/team/{name}", f"example.com:5000/*/{name}",
                 f"{name}:1", "*:v1"]:
        q = "/v1.41/images/json?filters=" + quote(json.dumps({"reference": [filt]}))
        ours, theirs = _api(b, q)[1], _api(d, q)[1]
        theirs = [i for i in theirs if any(name in t for t in i["RepoTags"] or [])]
        assert [(i["RepoTags"], i["RepoDigests"], i["Labels"]) for i in ours] == \
            [(i["RepoTags"], i["RepoDigests"], i["Labels"]) for i in theirs], filt
    st, body = _api(b, "/v1.41/images/json?filters=" + quote(json.dumps({"reference": ["["]})))
    assert (st, body["message"]) == (400, "syntax error in pattern")


def test_rmi_records_as_dockerd(pair, tmp_path):
    """Untag vs delete, by tag, by ID, with references in one or several repositories."""
    b, d, name = pair
    steps = [
        ("tag", f"{name}:1", f"{name}:2"),
        ("tag", f"{name}:1", f"other{name}:1"),
        ("rmi", "ID"),               # several repositories: must be forced
        ("rmi", f"{name}:2"),        # untag only
        ("rmi", f"other{name}:1"),   # untag only
        ("tag", f"{name}:1", f"{name}:3"),
        ("rmi", "ID"),               # two tags of one repository: must be forced
        ("rmi", "-f", "ID"),         # untags both, deletes
        ("rmi", f"{name}:1"),
    ]
    got = {}
    for e in (b, d):
        iid = _out(e.docker("image", "inspect", "-f", "{{.Id}}", f"{name}:1")).strip()
        lines = []
        for step in steps:
            args = [a.replace("ID", iid[7:19]) if a == "ID" else a for a in step]
            r = e.docker(*args, check=False)
            lines.append((r.returncode, sorted(_out(r).replace(iid, "ID").splitlines()),
                          _err(r).replace(iid[7:19], "ID").strip()))
        got[e is b] = lines
    assert got[True] == got[False]
    assert "Deleted: ID" in got[True][-2][1]
    assert "No such image" in got[True][-1][2]


def test_untagging_the_last_tag_drops_the_repositorys_digests(pair, tmp_path):
    """A pulled image keeps repo@digest; removing its last repo:tag drops that too."""
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        pytest.skip("needs skopeo and the reference registry")
    from tests.distribution.regprocs import start_reference_registry

    b, d, name = pair
    reg = start_reference_registry(tmp_path / "reg")
    try:
        arch = tmp_path / "img.tar"
        d.docker("save", "-o", str(arch), f"{name}:1")
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"docker-archive:{arch}", f"docker://{reg.host}/{name}:1"], check=True)
        ref = f"{reg.host}/{name}:1"
        got = {}
        for e in (b, d):
            e.docker("pull", "-q", ref)
            r1 = _out(e.docker("rmi", ref)).splitlines()
            digests = _out(e.docker("image", "inspect", "-f", "{{json .RepoDigests}}",
                                    f"{name}:1")).strip()
            got[e is b] = (r1, digests)
        assert got[True] == got[False]
        assert got[True][0][0] == f"Untagged: {ref}"
        assert got[True][0][1].startswith(f"Untagged: {reg.host}/{name}@sha256:")
        assert got[True][1] == "[]"
    finally:
        reg.stop()


@pytest.mark.parametrize("args", [
    ["image", "prune", "-f", "--filter", "bogus=1"],
    ["image", "prune", "-f", "--filter", "until=soon"],
    ["images", "--filter", "dangling=maybe"],
    ["images", "--filter", "bogus=1"],
    ["rmi", "nosuch"],
    ["history", "nosuch:tag"],
    ["tag", "nosuch", "x"],
])
def test_errors_in_dockerds_words(berthd, dockerd, args):
    ours, theirs = berthd.docker(*args, check=False), dockerd.docker(*args, check=False)
    assert (ours.returncode, _err(ours)) == (theirs.returncode, _err(theirs))


def test_prune_label_not_filter(berthd):
    """``label!=`` keeps what carries the label (dockerd's prune filter; not tried on the
    shared dockerd, whose other dangling images a prune would take)."""
    for v in ("yes", "no"):
        layer = [layer_tar([("file", "x", v.encode())])]
        berthd.docker("load", input=docker_archive([(layer, [])], config=config_for(
            layer, labels={"keep": v})))
    berthd.docker("image", "prune", "-f", "--filter", "label!=keep=yes")
    left = _out(berthd.docker("images", "--format", "{{.ID}}", "--filter", "dangling=true"))
    kept = _out(berthd.docker("images", "-q", "--filter", "label=keep=yes"))
    assert left.split() == kept.split() and len(kept.split()) == 1


@pytest.fixture
def timeless(berthd, dockerd):
    """(berthd, dockerd, name): NAME:none, an image whose config and first history step have
    no `created` (the second step is from 1999), and NAME:epoch, created at the Unix epoch."""
    name = f"tl{os.urandom(3).hex()}"
    layers = [layer_tar([("file", "a", b"a" * 100)]), layer_tar([("file", "b", b"b" * 10)])]
    diff_ids = [f"sha256:{__import__('hashlib').sha256(x).hexdigest()}" for x in layers]
    base = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    none = dict(base, history=[{"created_by": "step 0"},
                               {"created": "1999-12-31T00:00:00Z", "created_by": "step 1"}])
    epoch = dict(base, created="1970-01-01T00:00:00Z",
                 history=[{"created": "1970-01-01T00:00:00Z", "created_by": f"s{i}"}
                          for i in range(2)])
    for e in (berthd, dockerd):
        for tag, cfg in (("none", none), ("epoch", epoch)):
            e.docker("load", input=docker_archive([(layers, [f"{name}:{tag}"])],
                                                  config=json.dumps(cfg).encode()))
    try:
        yield berthd, dockerd, name
    finally:
        left = _out(dockerd.docker("images", "-q", "--no-trunc", "--filter",
                                   f"reference={name}*", check=False)).split()
        if left:
            dockerd.docker("rmi", "-f", *sorted(set(left)), check=False)


def test_an_image_without_created_time_shows_as_on_dockerd(timeless):
    """No `created`: Go's zero time in the API (inspect 0001-01-01T00:00:00Z, Created
    -62135596800 in the list and history), N/A in the docker CLI's tables — not "56 years
    ago" — and the same from the berth CLI and docker-py."""
    import docker

    b, d, name = timeless

    def listed(e, ref: str) -> list[int]:
        q = "/v1.41/images/json?filters=" + quote(json.dumps({"reference": [ref]}))
        return [i["Created"] for i in _api(e, q)[1]]

    for tag in ("none", "epoch"):
        assert listed(b, f"{name}:{tag}") == listed(d, f"{name}:{tag}")
        ours, theirs = (_api(e, f"/v1.41/images/{name}:{tag}/history")[1] for e in (b, d))
        assert [h["Created"] for h in ours] == [h["Created"] for h in theirs]
        ours, theirs = (_api(e, f"/v1.41/images/{name}:{tag}/json")[1] for e in (b, d))
        assert ours["Created"] == theirs["Created"]
    assert listed(b, f"{name}:none") == [-62135596800]
    assert _api(b, f"/v1.41/images/{name}:none/json")[1]["Created"] == "0001-01-01T00:00:00Z"
    for tag in ("none", "epoch"):
        ref = f"{name}:{tag}"
        for args in (["images", ref], ["images", "--format", "{{.CreatedSince}}|{{.CreatedAt}}",
                                       ref],
                     ["images", "--format", "json", ref], ["history", ref],
                     ["history", "--format", "json", ref],
                     ["history", "-H=false", ref],
                     ["history", "--format", "{{.CreatedSince}}|{{.CreatedAt}}", ref]):
            theirs = _out(d.docker(*args))
            assert _out(b.docker(*args)) == theirs, args
            assert _out(b.berth(*args)) == theirs, args
    assert "N/A" in _out(b.berth("images", f"{name}:none")).splitlines()[1]
    assert "years ago" in _out(b.berth("images", f"{name}:epoch")).splitlines()[1]
    got = []
    for e in (b, d):
        c = docker.DockerClient(base_url=e.host)
        try:
            img = c.images.get(f"{name}:none")
            got.append((img.attrs["Created"], [h["Created"] for h in img.history()]))
        finally:
            c.close()
    assert got[0] == got[1] == ("0001-01-01T00:00:00Z", [946598400, -62135596800])
