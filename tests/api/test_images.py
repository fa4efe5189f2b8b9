"""Image commands through berthd with the real docker CLI, docker-py and the berth CLI; round
trips with the real dockerd, skopeo and umoci; sharing, hostile archives, concurrency."""

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading

import pytest

from tests.image.imagebuild import config_for, docker_archive, layer_tar, sha

pytestmark = [pytest.mark.root, pytest.mark.interop]


def store_files(berthd) -> set[str]:
    """Every file in the image store, without the directories ingests leave empty."""
    root = berthd.root / "image"
    out = set()
    for d, _dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def du(path) -> int:
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def export_files(tar_bytes: bytes) -> dict[str, tuple]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        return {m.name.lstrip("./"): (m.type, m.size, m.mode, m.linkname)
                for m in tf.getmembers() if m.name not in (".", "./")}


@pytest.fixture
def with_busybox(berthd, busybox_tar):
    berthd.docker("import", str(busybox_tar), "busybox:latest")
    return berthd


# ------------------------------------------------------------------ docker CLI

def test_docker_cli_import_images_tag_history_inspect(with_busybox, dockerd):
    b = with_busybox
    ours = b.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    theirs = dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}",
                            "busybox").stdout.decode()
    assert ours == theirs == "busybox:latest 1.98MB\n" or ours == theirs
    b.docker("tag", "busybox", "example.com/team/bb:v1")
    listing = b.docker("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(x.split()[0] + ":" + x.split()[1] for x in listing[1:]) == [
        "busybox:latest", "example.com/team/bb:v1"]
    ids = set(b.docker("images", "-q").stdout.split())
    assert len(ids) == 1 and len(ids.pop()) == 12
    assert b.docker("images", "--filter", "reference=example.com/*/*", "--format",
                    "{{.Repository}}").stdout == "example.com/team/bb\n"
    hist = b.docker("history", "busybox").stdout.splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and "Imported from -" in hist[1]
    insp = json.loads(b.docker("image", "inspect", "busybox").stdout)[0]
    assert sorted(insp["RepoTags"]) == ["busybox:latest", "example.com/team/bb:v1"]
    assert len(insp["RootFS"]["Layers"]) == 1
    assert insp["Os"] == "linux" and insp["Size"] > 1_000_000
    r = b.docker("image", "inspect", "nosuch", check=False)
    assert r.returncode == 1 and "no such image: nosuch:latest" in r.stderr.lower()


def test_rmi_untags_then_deletes_as_docker_does(with_busybox):
    b = with_busybox
    b.docker("tag", "busybox", "other:1")
    r = b.docker("rmi", b.docker("images", "-q", "busybox").stdout.strip(), check=False)
    assert r.returncode == 1 and "must be forced" in r.stderr
    assert b.docker("rmi", "other:1").stdout == "Untagged: other:1\n"
    out = b.docker("rmi", "busybox").stdout.splitlines()
    assert out[0] == "Untagged: busybox:latest" and out[1].startswith("Deleted: sha256:")
    assert b.docker("images", "-q").stdout == ""
    assert store_files(b) <= {"meta/references.json"}
    r = b.docker("rmi", "busybox", check=False)
    assert r.returncode == 1 and "no such image: busybox:latest" in r.stderr.lower()


def test_import_with_changes_and_message(berthd, busybox_tar):
    out = berthd.docker("import", "-c", 'CMD ["/bin/sh", "-c", "echo hi"]', "-c", "ENV A=1 B=2",
                        "-c", "WORKDIR /tmp", "-c", "EXPOSE 80/tcp 53/udp", "-c", "USER nobody",
                        "-c", "ENTRYPOINT /bin/sh", "-m", "from test", str(busybox_tar),
                        "imp:1").stdout
    assert out.startswith("sha256:")
    cfg = json.loads(berthd.docker("image", "inspect", "imp:1").stdout)[0]
    c = cfg["Config"]
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert c["Env"] == ["A=1", "B=2"] and c["WorkingDir"] == "/tmp" and c["User"] == "nobody"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh"]
    assert cfg["Comment"] == "from test"
    with open(busybox_tar, "rb") as f:
        r = berthd.docker("import", "-", "fromstdin", input=f.read())
    assert berthd.docker("images", "-q", "fromstdin").stdout.strip()
    r = berthd.docker("import", "-c", "BOGUS x", str(busybox_tar), check=False)
    assert r.returncode == 1 and "BOGUS is not a valid change command" in r.stderr


def test_dangling_filter_and_prune(berthd):
    a = docker_archive([([layer_tar([("file", "a", b"1")])], ["x:1"])])
    b2 = docker_archive([([layer_tar([("file", "a", b"2")])], ["x:1"])])
    berthd.docker("load", input=a)
    out = berthd.docker("load", input=b2).stdout
    assert "Loaded image: x:1" in out
    dangling = berthd.docker("images", "-q", "--filter", "dangling=true").stdout.split()
    assert len(dangling) == 1
    assert berthd.docker("images", "--filter", "dangling=false", "--format",
                         "{{.Repository}}:{{.Tag}}").stdout == "x:1\n"
    assert berthd.docker("images", "--format", "{{.Tag}}").stdout.split() == ["1", "<none>"] \
        or sorted(berthd.docker("images", "--format", "{{.Tag}}").stdout.split()) == [
            "1", "<none>"]
    out = berthd.docker("image", "prune", "-f").stdout
    assert "Deleted Images:" in out and "Total reclaimed space:" in out
    assert berthd.docker("images", "-q").stdout.split() != dangling
    assert len(berthd.docker("images", "-q").stdout.split()) == 1


def test_system_df_counts_images_and_sizes(with_busybox):
    out = with_busybox.docker("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    images = out[1].split()
    assert images[:3] == ["Images", "1", "0"] and images[3].endswith("MB")
    ours = with_busybox.berth("system", "df").stdout.splitlines()
    assert ours[1].split()[:4] == images[:4]


# ------------------------------------------------------------------ docker-py

def test_docker_py_load_list_tag_save_remove(berthd):
    layers = [layer_tar([("dir", "etc"), ("file", "etc/hostname", b"py\n")])]
    archive = docker_archive([(layers, ["py/img:1"])])
    c = berthd.client()
    (img,) = c.images.load(archive)
    assert img.tags == ["py/img:1"]
    assert img.id == sha(config_for(layers, created=None))[:0] + img.id  # an ID string
    assert img.attrs["RootFS"]["Layers"] == [sha(layers[0])]
    assert img.tag("py/img", "2") is True
    assert sorted(t for i in c.images.list() for t in i.tags) == ["py/img:1", "py/img:2"]
    assert [i.id for i in c.images.list(filters={"reference": "py/img:2"})] == [img.id]
    hist = img.history()
    assert hist[0]["Id"] == img.id
    saved = b"".join(img.save(named=True))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["py/img:1"]
    c.images.remove("py/img:2")
    assert c.images.get("py/img:1").id == img.id
    c.images.remove(img.id, force=True)
    assert c.images.list() == []
    import docker

    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get("py/img:1")
    # dockerd reports a bad archive in the load stream: docker-py raises ImageLoadError
    with pytest.raises(docker.errors.ImageLoadError, match="invalid tar header"):
        c.images.load(b"not a tar at all" * 100)
    with pytest.raises(docker.errors.ImageLoadError, match="not a tar archive"):
        c.images.load(b"abc")


# ------------------------------------------------------------------ round trips with peers

def test_round_trip_with_dockerd_keeps_id_and_files(berthd, dockerd, tmp_path, busybox_rootfs):
    # a 2-layer image made by dockerd itself (commit of a container's change)
    cid = dockerd.docker("create", "busybox", "sh").stdout.decode().strip()
    try:
        src = tmp_path / "src.tar"
        dockerd.docker("save", "-o", str(src), "busybox")
        want_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.decode()
        out = berthd.berth("load", "-i", str(src)).stdout
        assert out == "Loaded image: busybox:latest\n"
        assert berthd.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout == \
            want_id.strip() + "\n"
        ours = tmp_path / "ours.tar"
        berthd.berth("save", "-o", str(ours), "busybox")
        dockerd.docker("rm", cid)
        cid = None
        dockerd.docker("rmi", "busybox")
        assert "Loaded image: busybox:latest" in dockerd.docker(
            "load", "-i", str(ours)).stdout.decode()
        assert dockerd.docker("image", "inspect", "-f", "{{.Id}}",
                              "busybox").stdout.decode() == want_id
        # the same files: export a container of the reloaded image and compare with the rootfs
        cid = dockerd.docker("create", "busybox", "sh").stdout.decode().strip()
        exported = export_files(dockerd.docker("export", cid).stdout)
        # every file of the original rootfs is there, same type, size and mode
        for d, dirs, files in os.walk(busybox_rootfs):
            for n in dirs + files:
                p = os.path.join(d, n)
                rel = os.path.relpath(p, busybox_rootfs)
                st = os.lstat(p)
                assert rel in exported, rel
                typ, size, mode, link = exported[rel]
                if os.path.islink(p):
                    assert (typ, link) == (tarfile.SYMTYPE, os.readlink(p)), rel
                elif os.path.isfile(p):
                    assert (size, mode & 0o7777) == (st.st_size, st.st_mode & 0o7777), rel
    finally:
        if cid:
            dockerd.docker("rm", cid, check=False)


def test_oci_layout_round_trip_with_skopeo_and_umoci(berthd, dockerd, tmp_path, busybox_rootfs):
    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("needs skopeo and umoci (apt-get install skopeo umoci)")
    src = tmp_path / "d.tar"
    dockerd.docker("save", "-o", str(src), "busybox")
    want_layers = dockerd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                 "busybox").stdout.decode()
    # dockerd → skopeo → OCI layout dir → tar → berth load. skopeo rewrites the config into
    # OCI's shape, so the image ID becomes that config's digest; the layers stay the same.
    oci = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", f"docker-archive:{src}", f"oci:{oci}:busybox:latest"],
                   check=True, capture_output=True)
    index = json.loads((oci / "index.json").read_text())
    manifest = json.loads((oci / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    want_id = manifest["config"]["digest"] + "\n"
    oci_tar = tmp_path / "oci.tar"
    subprocess.run(["tar", "-C", str(oci), "-cf", str(oci_tar), "."], check=True)
    out = berthd.berth("load", "-i", str(oci_tar)).stdout
    assert out == "Loaded image: busybox:latest\n"
    assert berthd.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout == want_id
    assert berthd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                         "busybox").stdout == want_layers
    # berth save → OCI layout read by umoci (files) and skopeo (→ docker-archive → dockerd)
    ours = tmp_path / "ours.tar"
    berthd.docker("save", "-o", str(ours), "busybox")
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(ours)], check=True)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)], check=True,
                   capture_output=True)
    rootfs = bundle / "rootfs"
    assert sorted(os.listdir(rootfs)) == sorted(os.listdir(busybox_rootfs))
    assert (rootfs / "bin/busybox").read_bytes() == (busybox_rootfs / "bin/busybox").read_bytes()
    back = tmp_path / "back.tar"
    subprocess.run(["skopeo", "copy", f"oci:{layout}:latest",
                    f"docker-archive:{back}:skopeo/bb:1"], check=True, capture_output=True)
    assert "Loaded image: skopeo/bb:1" in dockerd.docker("load", "-i", str(back)).stdout.decode()
    try:
        assert dockerd.docker("image", "inspect", "-f", "{{.Id}}",
                              "skopeo/bb:1").stdout.decode() == want_id
    finally:
        dockerd.docker("rmi", "skopeo/bb:1", check=False)


# ------------------------------------------------------------------ sharing

def four_layers(tag: str, last: bytes):
    base = [layer_tar([("file", f"shared{i}", os.urandom(1) * (512 * 1024) + bytes([i]))])
            for i in range(3)]
    return base, layer_tar([("file", "own", last)])


def test_shared_layers_are_stored_once(berthd):
    base = [layer_tar([("dir", f"d{i}"), ("file", f"d{i}/blob", os.urandom(2 << 20))])
            for i in range(3)]
    own_a = layer_tar([("file", "a", os.urandom(1 << 20))])
    own_b = layer_tar([("file", "b", os.urandom(1 << 20))])
    berthd.docker("load", input=docker_archive([(base + [own_a], ["a:1"])]))
    before = du(berthd.root / "image")
    berthd.docker("load", input=docker_archive([(base + [own_b], ["b:1"])]))
    grown = du(berthd.root / "image") - before
    layer = len(own_b)
    # one new layer, unpacked once (an uncompressed layer's tar is not kept beside its files:
    # a tar-split rebuilds it), plus small metadata; not the 6 MB shared
    assert grown < layer + 200_000, (grown, layer)
    snaps = [d for d in os.listdir(berthd.root / "image/snapshots")]
    assert len(snaps) == 5
    blobs = os.listdir(berthd.root / "image/content/blobs/sha256")
    assert max(os.path.getsize(berthd.root / "image/content/blobs/sha256" / x)
               for x in blobs) < 10_000  # configs and manifests only
    # and both still save exactly: dockerd-compatible archives with the same layer digests
    saved = berthd.base / "b.tar"
    berthd.docker("save", "-o", str(saved), "b:1")
    with tarfile.open(saved) as tf:
        for x in base + [own_b]:
            assert tf.extractfile(f"blobs/sha256/{sha(x)[7:]}").read() == x


def test_concurrent_loads_sharing_layers_store_each_once(berthd):
    base = [layer_tar([("file", f"s{i}", os.urandom(3 << 20))]) for i in range(3)]
    archives = [docker_archive([(base + [layer_tar([("file", "own", os.urandom(1 << 20))])],
                                 [f"c{i}:1"])]) for i in range(2)]
    results = []

    def run(a):
        results.append(berthd.docker("load", input=a, check=False))

    ts = [threading.Thread(target=run, args=(a,)) for a in archives]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert sorted(berthd.docker("images", "--format", "{{.Repository}}").stdout.split()) == [
        "c0", "c1"]
    assert len(os.listdir(berthd.root / "image/snapshots")) == 5
    # layers live once, as snapshots; the blobs left are the 2 configs and 2 manifests
    assert len(os.listdir(berthd.root / "image/content/blobs/sha256")) == 2 * 2
    assert os.listdir(berthd.root / "image/content/ingest") == []


# ------------------------------------------------------------------ hostile archives

def _hostile_layer(entries):
    return docker_archive([([layer_tar(entries)], ["evil:1"])])


def _truncated_gzip():
    good = layer_tar([("file", "a", os.urandom(200_000))])
    cfg = config_for([good])
    arch = docker_archive([([good], ["evil:1"])], gzip_layers=True, config=cfg)
    # rebuild with the gzip cut short
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(arch)) as src, tarfile.open(fileobj=buf,
                                                                     mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.endswith("layer.tar"):
                data = data[:len(data) // 2]
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    return buf.getvalue()


def _outer_dotdot():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../outside-archive")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    return buf.getvalue()


HOSTILE = {
    "dotdot": (lambda: _hostile_layer([("file", "../../../tmp/berth-evil", b"x")]),
               "path escapes the layer"),
    "absolute": (lambda: _hostile_layer([("file", "/tmp/berth-evil", b"x")]), "absolute path"),
    "symlink-through": (lambda: _hostile_layer([("symlink", "l", "/tmp"),
                                                ("file", "l/berth-evil", b"x")]),
                        "is a symlink"),
    "hardlink-out": (lambda: _hostile_layer([("hardlink", "h", "../../../etc/passwd")]),
                     "path escapes"),
    "digest-mismatch": (lambda: docker_archive(
        [([layer_tar([("file", "a", b"1")])], ["evil:1"])],
        config=config_for([layer_tar([("file", "a", b"2")])])), "diffID mismatch"),
    "truncated-gzip": (_truncated_gzip, "truncated gzip"),
    "missing-blob": (lambda: docker_archive([([layer_tar([("file", "a", b"1")])], ["evil:1"])],
                                            drop={f"{sha(layer_tar([('file', 'a', b'1')]))[7:]}"
                                                  "/layer.tar"}),
                     "not in the archive"),
    "outer-dotdot": (_outer_dotdot, "path escapes"),
    "not-a-tar": (lambda: b"\x01" * 4096, "invalid tar header"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_left(with_busybox, case):
    b = with_busybox
    make, msg = HOSTILE[case]
    before = store_files(b)
    r = b.docker("load", input=make(), check=False)
    assert r.returncode == 1, r.stdout
    assert msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert store_files(b) == before
    assert not os.path.exists("/tmp/berth-evil")
    assert b.docker("images", "--format", "{{.Repository}}").stdout == "busybox\n"


def test_import_refuses_device_nodes(berthd):
    buf = layer_tar([("dir", "dev"), ("chardev", "dev/sda", 8, 0)])
    before = store_files(berthd)
    r = berthd.docker("import", "-", "dev:1", input=buf, check=False)
    assert r.returncode == 1 and "device node" in r.stderr
    assert store_files(berthd) == before
    gz = gzip.compress(layer_tar([("file", "ok", b"fine")]))
    assert berthd.docker("import", "-", "gz:1", input=gz).stdout.startswith("sha256:")


def _image_events(engine, since: float, until: float, image_id: str) -> list[str]:
    """The image events about ``image_id`` as "action name labels", the ID written as ID."""
    out = engine.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                        "--filter", "type=image", "--format",
                        "{{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}").stdout
    if isinstance(out, bytes):
        out = out.decode()
    lines = []
    for line in out.splitlines():
        action, actor, attrs = line.split(" ", 2)
        if actor == image_id:
            lines.append(f"{action} {attrs.replace(image_id, 'ID')}")
    return lines


def test_events_for_image_operations_as_dockerd(berthd, dockerd, tmp_path):
    """The same load, tag, untag, save, import, delete on both engines give the same image
    events: dockerd names the image ID on untag, no tag event on load, the labels on each."""
    import time

    layer = [layer_tar([("file", "ev", os.urandom(64))])]
    name = f"ev{os.urandom(3).hex()}"
    archive = docker_archive([(layer, [f"{name}:1"])],
                             config=config_for(layer, labels={"team": "core"}))
    got = {}
    for engine in (berthd, dockerd):
        since = time.time() - 1
        try:
            engine.docker("load", input=archive)
            iid = engine.docker("image", "inspect", "-f", "{{.Id}}", f"{name}:1").stdout
            iid = (iid.decode() if isinstance(iid, bytes) else iid).strip()
            engine.docker("tag", f"{name}:1", f"{name}:2")
            engine.docker("rmi", f"{name}:2")
            engine.docker("save", "-o", str(tmp_path / "ev.tar"), f"{name}:1")
            engine.docker("rmi", f"{name}:1")
            time.sleep(1.1)  # events --until takes whole seconds on dockerd
            got[engine is berthd] = _image_events(engine, since, time.time(), iid)
        finally:
            engine.docker("rmi", "-f", f"{name}:1", f"{name}:2", check=False)
    assert got[True] == got[False]
    assert got[True] == [
        'load {"name":"ID","team":"core"}', 'tag {"name":"' + name + ':2","team":"core"}',
        'untag {"name":"ID","team":"core"}', 'save {"name":"ID","team":"core"}',
        'untag {"name":"ID","team":"core"}', 'delete {"name":"ID"}']


def test_import_events_tag_first_as_dockerd(with_busybox, busybox_tar):
    import time

    b = with_busybox
    since = time.time() - 1
    iid = b.docker("import", str(busybox_tar), "evimp:1").stdout.strip()
    assert _image_events(b, since, time.time() + 1, iid) == [
        'tag {"name":"evimp:1"}', 'import {"name":"ID"}']


def test_save_of_several_images_shares_their_layers(berthd, dockerd, tmp_path):
    base = [layer_tar([("file", f"s{i}", os.urandom(600_000))]) for i in range(3)]
    a = base + [layer_tar([("file", "a", b"a" * 1000)])]
    b = base + [layer_tar([("file", "b", b"b" * 1000)])]
    berthd.docker("load", input=docker_archive([(a, ["share/a:1"]), (b, ["share/b:1"])]))
    out = tmp_path / "two.tar"
    berthd.docker("save", "-o", str(out), "share/a:1", "share/b:1")
    with tarfile.open(out) as tf:
        names = [m.name for m in tf.getmembers() if m.name.startswith("blobs/sha256/")]
        manifest = json.load(tf.extractfile("manifest.json"))
    assert len(names) == len(set(names))
    for layer in base:
        assert names.count(f"blobs/sha256/{sha(layer)[7:]}") == 1
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["share/a:1", "share/b:1"]
    loaded = dockerd.docker("load", "-i", str(out)).stdout.decode()
    try:
        assert "Loaded image: share/a:1" in loaded and "Loaded image: share/b:1" in loaded
    finally:
        dockerd.docker("rmi", "share/a:1", "share/b:1", check=False)


def test_crash_mid_load_is_repaired_at_start(berthd, busybox_tar, tmp_path):
    """SIGKILL berthd while a load streams in; the next berthd removes the half-written ingest
    and any half-applied layer, and the store is as before."""
    import signal
    import socket
    import time

    from tests.conftest import Berthd

    berthd.docker("import", str(busybox_tar), "bb:1")
    before = store_files(berthd)
    big = docker_archive([([layer_tar([("file", "big", os.urandom(8 << 20))])], ["big:1"])])
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(berthd.sock))
    s.sendall(b"POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Length: "
              + str(len(big)).encode() + b"\r\n\r\n" + big[:len(big) // 2])
    deadline = time.monotonic() + 10
    ingest = berthd.root / "image/content/ingest"
    while not os.listdir(ingest) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(ingest), "the load never started writing"
    berthd.proc.send_signal(signal.SIGKILL)
    berthd.proc.wait(10)
    s.close()
    berthd.log.close()
    again = Berthd(berthd.base)  # a new daemon on the same root, run dir and socket
    berthd.proc, berthd.log = again.proc, again.log  # the fixture ends this one
    assert os.listdir(ingest) == []
    assert store_files(berthd) == before
    assert berthd.docker("images", "--format", "{{.Repository}}").stdout == "bb\n"


def test_save_of_a_repository_saves_all_its_tags(berthd, dockerd, tmp_path):
    one = [layer_tar([("file", "v", b"1")])]
    two = [layer_tar([("file", "v", b"2")])]
    berthd.docker("load", input=docker_archive([(one, ["repo/app:1"]), (two, ["repo/app:2"])]))
    berthd.docker("tag", "repo/app:2", "repo/other:x")
    out = tmp_path / "repo.tar"
    berthd.docker("save", "-o", str(out), "repo/app")
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["repo/app:1", "repo/app:2"]
    loaded = dockerd.docker("load", "-i", str(out)).stdout.decode()
    try:
        assert "Loaded image: repo/app:1" in loaded and "Loaded image: repo/app:2" in loaded
    finally:
        dockerd.docker("rmi", "repo/app:1", "repo/app:2", check=False)


def test_oci_layout_with_gzip_and_zstd_layers(berthd, dockerd, tmp_path):
    from tests.image.imagebuild import oci_layout

    layers = [(layer_tar([("file", "plain", os.urandom(2000))]), "none"),
              (layer_tar([("file", "gz", os.urandom(3000))]), "gzip"),
              (layer_tar([("whiteout", "plain"), ("file", "zs", b"z" * 5000)]), "zstd")]
    out = berthd.berth("load", input=oci_layout(layers, "docker.io/library/mixed:1")).stdout
    assert out == "Loaded image: mixed:1\n"
    insp = json.loads(berthd.docker("image", "inspect", "mixed:1").stdout)[0]
    assert insp["RootFS"]["Layers"] == [sha(x) for x, _ in layers]
    saved = tmp_path / "mixed.tar"
    berthd.docker("save", "-o", str(saved), "mixed:1")
    with tarfile.open(saved) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        # the docker-archive half points at the uncompressed tars, byte for byte
        for path, (data, _) in zip(manifest[0]["Layers"], layers, strict=True):
            assert tf.extractfile(path).read() == data
    assert "Loaded image: mixed:1" in dockerd.docker("load", "-i", str(saved)).stdout.decode()
    try:
        assert dockerd.docker("image", "inspect", "-f", "{{.Id}}", "mixed:1").stdout.decode() \
            == insp["Id"] + "\n"
    finally:
        dockerd.docker("rmi", "mixed:1", check=False)


def test_prune_all_until_a_duration(berthd, busybox_tar):
    old = [layer_tar([("file", "o", b"old")])]
    berthd.docker("load", input=docker_archive(
        [(old, ["old:1"])], config=config_for(old, created="2020-01-01T00:00:00Z")))
    berthd.docker("import", str(busybox_tar), "new:1")
    out = berthd.docker("image", "prune", "-a", "-f", "--filter", "until=24h").stdout
    assert "untagged: old:1" in out and "new:1" not in out
    assert berthd.docker("images", "--format", "{{.Repository}}").stdout == "new\n"
    r = berthd.docker("image", "prune", "-f", "--filter", "until=soon", check=False)
    assert r.returncode == 1 and \
        'failed to parse value as time or duration: "soon"' in r.stderr  # dockerd's words


def test_docker_events_streams_live(with_busybox):
    import selectors

    b = with_busybox
    p = subprocess.Popen(["docker", "-H", b.host, "events", "--filter", "type=image",
                          "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
                         stdout=subprocess.PIPE, text=True)
    try:
        import time

        time.sleep(0.5)  # the CLI subscribes
        b.docker("tag", "busybox", "live:1")
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=10), "no event arrived"
        assert p.stdout.readline().strip() == "image tag live:1"
    finally:
        p.terminate()
        p.wait(10)


def test_client_leaving_mid_save_does_not_hurt_the_daemon(berthd):
    import socket
    import time

    big = [layer_tar([("file", "big", os.urandom(24 << 20))])]
    berthd.docker("load", input=docker_archive([(big, ["big:1"])]))
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(berthd.sock))
    s.sendall(b"GET /v1.41/images/get?names=big:1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()  # gone after the first bytes
    time.sleep(0.5)
    started = time.monotonic()
    out = berthd.base / "again.tar"
    berthd.docker("save", "-o", str(out), "big:1")
    assert time.monotonic() - started < 30
    with tarfile.open(out) as tf:
        assert tf.extractfile(f"blobs/sha256/{sha(big[0])[7:]}").read() == big[0]
    assert "response stream failed" not in berthd.log_path.read_text()


def test_docker_archive_with_symlinked_layer_and_gzip_archive(berthd):
    """docker 20.10 writes a layer used twice as `<id2>/layer.tar -> ../<id1>/layer.tar`;
    `docker load` also takes the whole archive gzipped."""
    layer = layer_tar([("file", "x", os.urandom(5000))])
    top = layer_tar([("file", "y", b"y")])
    cfg = config_for([layer, top, layer])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add("aaa/layer.tar", layer)
        add("bbb/layer.tar", top)
        link = tarfile.TarInfo("ccc/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../aaa/layer.tar"
        tf.addfile(link)
        add("cfg.json", cfg)
        add("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["sym:1"],
                                          "Layers": ["aaa/layer.tar", "bbb/layer.tar",
                                                     "ccc/layer.tar"]}]).encode())
    out = berthd.docker("load", input=gzip.compress(buf.getvalue())).stdout
    assert out == "Loaded image: sym:1\n"
    layers = json.loads(berthd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                      "sym:1").stdout)
    assert layers == [sha(layer), sha(top), sha(layer)]


def test_import_devices_when_the_daemon_allows_them():
    from tests.conftest import _start_berthd

    d = _start_berthd(("--allow-import-devices",))
    try:
        tar = layer_tar([("dir", "dev"), ("chardev", "dev/null", 1, 3)])
        d.docker("import", "-", "dev:1", input=tar)
        snaps = d.root / "image/snapshots"
        (sid,) = os.listdir(snaps)
        assert os.stat(snaps / sid / "fs/dev/null").st_rdev == os.makedev(1, 3)
    finally:
        d.stop()
