"""The image store's parts on a temp root: content store, tar reader, layer apply (with
hostile archives), compression, references, snapshots mounted through overlay, GC."""

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import threading

import pytest
import zstandard

from berth.errors import InvalidArgument
from berth.image import reference as refs
from berth.image import tarstream
from berth.image.apply import Applier, UnsafeLayer
from berth.image.compression import CorruptLayer, decompressed
from berth.image.content import ContentStore, DigestMismatch, SizeMismatch
from berth.image.snapshot import Snapshotter, mount_all
from berth.image.store import ImageStore, chain_ids

from .imagebuild import layer_tar, sha


def reader_of(data: bytes):
    return io.BytesIO(data).read


def files_in(root) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


# ------------------------------------------------------------------ content store

def test_blob_commit_verifies_digest_and_size(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"hello" * 1000
    w = cs.writer(expected=sha(data), size=len(data))
    w.write(data[:10])
    w.write(data[10:])
    assert w.commit() == sha(data)
    assert cs.read(sha(data)) == data
    assert cs.ingests() == []

    w = cs.writer(expected=sha(b"other"), size=5)
    w.write(b"wrong")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        w.commit()
    assert list(cs.walk()) == [sha(data)] and cs.ingests() == []

    w = cs.writer(expected=sha(b"abc"), size=3)
    with pytest.raises(SizeMismatch):
        w.write(b"abcd")
    w.abort()
    assert list(cs.walk()) == [sha(data)] and cs.ingests() == []


def test_existing_blob_is_success_and_resume_offset(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(3 << 20)
    d = sha(data)
    w = cs.writer(expected=d, size=len(data))
    w.write(data[:1 << 20])
    w.close()  # the writer died: the ingest stays for a resume
    w = cs.writer(expected=d, size=len(data))
    assert w.offset == 1 << 20
    w.write(data[w.offset:])
    assert w.commit() == d
    again = cs.writer(expected=d, size=len(data))
    assert again.exists and again.offset == len(data)
    again.write(b"ignored")
    assert again.commit() == d
    assert list(cs.walk()) == [d] and cs.ingests() == []


def test_concurrent_writers_of_one_digest_end_with_one_blob(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(4 << 20)
    d = sha(data)
    errors = []

    def write():
        try:
            w = cs.writer(expected=d, size=len(data))
            for i in range(0, len(data), 1 << 18):
                w.write(data[i:i + (1 << 18)])
            assert w.commit() == d
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=write) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert list(cs.walk()) == [d] and cs.ingests() == []
    assert cs.read(d) == data


# ------------------------------------------------------------------ compression

def test_gzip_zstd_plain_and_truncated():
    data = os.urandom(100_000) + b"x" * 100_000
    for blob in (data, gzip.compress(data), zstandard.ZstdCompressor().compress(data),
                 gzip.compress(data[:5000]) + gzip.compress(data[5000:])):
        read, _ = decompressed(reader_of(blob))
        got = b"".join(iter(lambda r=read: r(65536), b""))
        assert got == data
    bad = gzip.compress(data)[:-20]
    read, kind = decompressed(reader_of(bad))
    assert kind == "gzip"
    with pytest.raises(CorruptLayer, match="truncated gzip"):
        while read(65536):
            pass


# ------------------------------------------------------------------ tar reader

def test_tar_reader_long_names_xattrs_and_truncation():
    long = "d/" + "x" * 150 + "/file"
    ti = tarfile.TarInfo(long)
    ti.size = 3
    ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(b"abc"))
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(b"abc"))
    for data in (buf.getvalue(), gnu.getvalue()):
        r = tarstream.TarReader(reader_of(data))
        (e,) = list(r)
        assert e.name == long and e.size == 3
    r = tarstream.TarReader(reader_of(buf.getvalue()))
    e = next(iter(r))
    assert e.xattrs == {"user.k": b"v"} and r.read_content(e) == b"abc"
    with pytest.raises(tarstream.BadArchive, match="unexpected end"):
        list(tarstream.TarReader(reader_of(buf.getvalue()[:700])))


def test_tar_writer_is_read_by_gnu_tar(tmp_path):
    out = io.BytesIO()
    tw = tarstream.TarWriter(out.write)
    tw.add_dir("blobs")
    tw.add_bytes("blobs/" + "y" * 120, b"payload")
    tw.close()
    p = tmp_path / "a.tar"
    p.write_bytes(out.getvalue())
    listing = subprocess.run(["tar", "-tf", str(p)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing == ["blobs/", "blobs/" + "y" * 120]


# ------------------------------------------------------------------ layer apply

def apply(tmp_path, data: bytes, allow_devices=True) -> str:
    d = tmp_path / "layer"
    d.mkdir()
    Applier(str(d), "layer", allow_devices=allow_devices).apply(
        tarstream.TarReader(reader_of(data)))
    return str(d)


@pytest.mark.root
def test_apply_overlay_format(tmp_path):
    setuid = tarfile.TarInfo("bin/su")
    setuid.size, setuid.mode, setuid.uid, setuid.gid, setuid.mtime = 2, 0o4755, 0, 0, 1234567
    owned = tarfile.TarInfo("home/u/f")
    owned.size, owned.uid, owned.gid, owned.mode = 1, 1000, 1001, 0o600
    d = apply(tmp_path, layer_tar([
        ("dir", "etc"), ("file", "etc/passwd", b"root"), ("symlink", "etc/link", "/etc/passwd"),
        ("hardlink", "etc/hard", "etc/passwd"), ("whiteout", "etc/gone"), ("opaque", "var"),
        ("raw", setuid, b"#!"), ("raw", owned, b"x"),
    ]))
    st = os.lstat(f"{d}/etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(f"{d}/var", "trusted.overlay.opaque") == b"y"
    assert os.readlink(f"{d}/etc/link") == "/etc/passwd"
    assert os.stat(f"{d}/etc/hard").st_ino == os.stat(f"{d}/etc/passwd").st_ino
    st = os.stat(f"{d}/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 1234567
    st = os.stat(f"{d}/home/u/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o600)
    assert stat.S_IMODE(os.stat(f"{d}/home").st_mode) == 0o755  # implicit parent


HOSTILE = [
    ("dotdot", [("file", "../escape", b"x")], "path escapes the layer"),
    ("deep-dotdot", [("dir", "a"), ("file", "a/../../escape", b"x")], "path escapes"),
    ("absolute", [("file", "/abs-escape", b"x")], "absolute path"),
    ("symlink-through", [("symlink", "link", "/tmp"), ("file", "link/escape", b"x")],
     "is a symlink"),
    ("symlink-rel-through", [("symlink", "up", "../../.."), ("file", "up/escape", b"x")],
     "is a symlink"),
    ("hardlink-out", [("hardlink", "h", "../../etc/passwd")], "path escapes"),
    ("hardlink-abs", [("hardlink", "h", "/etc/passwd")], "absolute path"),
    ("hardlink-missing", [("hardlink", "h", "etc/passwd")], "not a file in this layer"),
]


@pytest.mark.root
@pytest.mark.parametrize("name,entries,msg", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_layers_are_refused_before_writing(tmp_path, name, entries, msg):
    outside = tmp_path / "escape"
    with pytest.raises(UnsafeLayer, match=msg):
        apply(tmp_path, layer_tar(entries))
    assert not outside.exists() and not os.path.exists("/abs-escape")
    assert not os.path.exists("/tmp/escape")


@pytest.mark.root
def test_device_nodes_only_where_allowed(tmp_path):
    data = layer_tar([("chardev", "dev-null", 1, 3)])
    with pytest.raises(UnsafeLayer, match="device node"):
        apply(tmp_path, data, allow_devices=False)
    d = tmp_path / "ok"
    d.mkdir()
    Applier(str(d), allow_devices=True).apply(tarstream.TarReader(reader_of(data)))
    assert os.stat(d / "dev-null").st_rdev == os.makedev(1, 3)


# ------------------------------------------------------------------ references

@pytest.mark.parametrize("given,full,fam", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
    ("index.docker.io/a/b", "docker.io/a/b:latest", "a/b:latest"),
    ("localhost:5000/a/b:1", "localhost:5000/a/b:1", "localhost:5000/a/b:1"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("example.com/x@sha256:" + "a" * 64, "example.com/x@sha256:" + "a" * 64,
     "example.com/x@sha256:" + "a" * 64),
])
def test_reference_normalisation(given, full, fam):
    r = refs.parse(given).with_default_tag()
    assert str(r) == full and r.familiar() == fam


@pytest.mark.parametrize("bad,msg", [("", "invalid reference format"),
                                     ("Busybox", "must be lowercase"),
                                     ("a:b:c", "invalid reference format"),
                                     ("a" * 64, "64-byte hexadecimal")])
def test_reference_errors(bad, msg):
    with pytest.raises(InvalidArgument, match=msg):
        refs.parse(bad)


# ------------------------------------------------------------------ snapshots + overlay

@pytest.mark.root
def test_layered_image_mounts_through_overlay_with_expected_files(tmp_path):
    """base + a layer deleting a file + a layer replacing a directory opaquely."""
    store = ImageStore(str(tmp_path / "store"))
    layers = [
        layer_tar([("dir", "etc"), ("file", "etc/keep", b"k"), ("file", "etc/delete-me", b"d"),
                   ("dir", "data"), ("file", "data/old1", b"1"), ("file", "data/old2", b"2")]),
        layer_tar([("whiteout", "etc/delete-me"), ("file", "etc/added", b"a")]),
        layer_tar([("dir", "data"), ("opaque", "data"), ("file", "data/new", b"n")]),
    ]
    diff_ids = [sha(x) for x in layers]
    chains = chain_ids(diff_ids)
    with store.lease() as lease:
        for data, d, c in zip(layers, diff_ids, chains, strict=True):
            blob = store.content.write_blob(data)
            lease.blobs.add(blob)
            store.unpack(blob, d, c, lease)
        store.link_chain(chains)
        mounts = store.snapshots.prepare("container-test", chains[-1])
    target = tmp_path / "rootfs"
    target.mkdir()
    mount_all(mounts, str(target))
    try:
        assert files_in(target) == {"etc", "etc/keep", "etc/added", "data", "data/new"}
        (target / "etc/written").write_text("rw")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    upper = store.snapshots.dir_of("container-test")
    assert os.listdir(os.path.join(upper, "etc")) == ["written"]
    # committed layers were not touched by the container's write
    assert "written" not in os.listdir(store.snapshots.dir_of(chains[0]) + "/etc")
    store.snapshots.remove("container-test")


@pytest.mark.root
def test_snapshot_remove_refuses_parent_with_children(tmp_path):
    sn = Snapshotter(str(tmp_path))
    sn.prepare("k", None)
    sn.commit("base", "k")
    sn.prepare("child", "base")
    with pytest.raises(Exception, match="has children"):
        sn.remove("base")
    sn.remove("child")
    sn.remove("base")
    assert sn.walk() == []


@pytest.mark.root
def test_gc_keeps_leased_and_sweeps_the_rest(tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    data = layer_tar([("file", "a", b"a")])
    with store.lease() as lease:
        d = store.content.write_blob(data)
        lease.blobs.add(d)
        store.unpack(d, d, d, lease)
        store.gc()
        assert store.content.exists(d) and store.snapshots.exists(d)
    # lease ended with nothing recorded: the next GC takes both
    store.gc()
    assert not store.content.exists(d) and not store.snapshots.exists(d)


@pytest.mark.root
def test_unpack_with_wrong_diff_id_leaves_nothing(tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    data = layer_tar([("file", "a", b"a")])
    wrong = sha(b"not it")
    with pytest.raises(DigestMismatch, match="diffID mismatch"), store.lease() as lease:
        d = store.content.write_blob(data)
        lease.blobs.add(d)
        store.unpack(d, wrong, wrong, lease)
    assert list(store.content.walk()) == [] and store.snapshots.walk() == []


def test_chain_ids_follow_the_oci_rule():
    a, b = sha(b"a"), sha(b"b")
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


@pytest.mark.root
def test_container_changes_commit_as_a_layer_with_whiteouts(tmp_path):
    """prepare → mount → delete / add / replace a directory → commit_layer: the layer tar has
    OCI whiteouts, and the committed chain mounts with exactly the changed files."""
    store = ImageStore(str(tmp_path / "store"))
    base = layer_tar([("dir", "etc"), ("file", "etc/keep", b"k"), ("file", "etc/rm", b"r"),
                      ("dir", "data"), ("file", "data/old", b"o"), ("file", "hl", b"h")])
    with store.lease() as lease:
        d = store.content.write_blob(base)
        lease.blobs.add(d)
        store.unpack(d, d, d, lease)
        store.snapshots.prepare("c1", d)
        target = tmp_path / "rootfs"
        target.mkdir()
        mount_all(store.snapshots.mounts("c1"), str(target))
        try:
            os.unlink(target / "etc/rm")
            (target / "etc/new").write_text("n")
            subprocess.run(["rm", "-rf", str(target / "data")], check=True)
            (target / "data").mkdir()
            (target / "data/fresh").write_text("f")
            os.link(target / "etc/new", target / "etc/new-link")
        finally:
            subprocess.run(["umount", str(target)], check=True)
        diff_id, chain, _ = store.commit_layer("c1", lease)
        with tarfile.open(store.content.path(diff_id)) as tf:
            names = {m.name.rstrip("/"): m for m in tf.getmembers()}
        assert "etc/.wh.rm" in names and "data/.wh..wh..opq" in names
        assert names["etc/new-link"].islnk() and names["etc/new-link"].linkname == "etc/new"
        assert "etc/keep" not in names  # unchanged lower files are not in the diff
        store.snapshots.view("v1", chain)
        view = tmp_path / "view"
        view.mkdir()
        mount_all(store.snapshots.mounts("v1"), str(view))
        try:
            assert files_in(view) == {"etc", "etc/keep", "etc/new", "etc/new-link", "data",
                                      "data/fresh", "hl"}
        finally:
            subprocess.run(["umount", str(view)], check=True)
        store.snapshots.remove("v1")
        store.snapshots.remove("c1")


def _gnu_tar(tmp_path, build) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    build(src)
    out = tmp_path / "layer.tar"
    subprocess.run(["tar", "--xattrs", "-C", str(src), "-cf", str(out), "."], check=True)
    return out.read_bytes()


@pytest.mark.root
def test_uncompressed_layer_is_kept_once_and_rebuilt_exactly(tmp_path):
    """GNU tar's own archive (10 KiB records, long names, hard links, empty files, xattrs):
    after unpack the blob is dropped and the rebuilt tar has the same bytes."""
    def build(src):
        (src / ("d" * 120)).mkdir()
        (src / ("d" * 120) / ("f" * 130)).write_bytes(os.urandom(5000))
        (src / "empty").write_bytes(b"")
        (src / "big").write_bytes(os.urandom(3 << 20))
        os.link(src / "big", src / "big-link")
        os.symlink("big", src / "sym")
        os.setxattr(src / "empty", "user.k", b"v")

    data = _gnu_tar(tmp_path, build)
    store = ImageStore(str(tmp_path / "store"))
    with store.lease() as lease:
        d = store.content.write_blob(data)
        lease.blobs.add(d)
        store.unpack(d, d, d, lease)
        assert store.drop_layer_blob(d)
    assert not os.path.exists(store.content.path(d))  # no tar on disk...
    assert store.content.exists(d) and store.content.size(d) == len(data)  # ...yet readable
    with store.open_layer(d) as f:
        assert f.read() == data
    assert store.content.read(d) == data
    assert b"".join(store.content.reader(d, offset=12345, chunk=4096)) == data[12345:]
    assert list(store.content.walk()) == []  # GC and listings see real blobs only


@pytest.mark.root
def test_layer_that_overwrites_itself_keeps_its_blob(tmp_path):
    """A path written twice in one layer: the files cannot rebuild the tar, the blob stays."""
    data = layer_tar([("file", "a", b"first"), ("file", "a", b"second")])
    store = ImageStore(str(tmp_path / "store"))
    with store.lease() as lease:
        d = store.content.write_blob(data)
        lease.blobs.add(d)
        store.unpack(d, d, d, lease)
        assert not store.drop_layer_blob(d)
    with store.open_layer(d) as f:
        assert f.read() == data
    assert open(os.path.join(store.snapshots.dir_of(d), "a"), "rb").read() == b"second"


@pytest.mark.root
def test_same_layer_in_another_chain_is_rebuilt_from_its_snapshot(tmp_path):
    x = layer_tar([("file", "x", os.urandom(2 << 20))])
    y = layer_tar([("file", "y", b"y")])
    store = ImageStore(str(tmp_path / "store"))
    with store.lease() as lease:
        dx = store.content.write_blob(x)
        store.unpack(dx, dx, dx, lease)
        assert store.drop_layer_blob(dx)
        dy = store.content.write_blob(y)
        store.unpack(dy, dy, dy, lease)
        chain = chain_ids([dy, dx])
        store.unpack(dx, dx, chain[1], lease)  # x on top of y: needs x's tar again
        store.link_chain(chain)
        assert files_in(store.snapshots.dir_of(chain[1])) == {"x"}


@pytest.mark.root
def test_overlay_xattrs_from_an_archive_are_not_applied(tmp_path):
    d = tarfile.TarInfo("dir")
    d.type = tarfile.DIRTYPE
    d.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                     "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.ok": "1"}
    layer = apply(tmp_path, layer_tar([("raw", d, None)]))
    names = os.listxattr(os.path.join(layer, "dir"))
    assert "user.ok" in names and not [n for n in names if n.startswith("trusted.overlay.")]


def test_archive_reader_keeps_bounded_memory(tmp_path, monkeypatch):
    """Small files beyond the memory budget go to the content store, not to RAM; the
    manifest is still found there."""
    from berth.image import archive
    from berth.image.store import Lease

    from .imagebuild import docker_archive

    monkeypatch.setattr(archive, "MEMORY", 10_000)
    layers = [layer_tar([("file", f"f{i}", b"x" * 3000)]) for i in range(4)]
    data = docker_archive([(layers, ["m:1"])])
    cs = ContentStore(str(tmp_path))

    class FakeStore:  # a lease needs only a lock and a list
        lock = threading.RLock()
        _leases: list = []

    lease = Lease(FakeStore())
    r = archive.ArchiveReader(cs, lease)
    (img,) = r.read(reader_of(data))
    assert r._in_memory <= 10_000
    assert img.tags == ["m:1"] and [la["digest"] for la in img.layers] == [sha(x) for x in layers]
