"""The distribution-spec surface of berth's registry, checked side by side with the reference
registry (Debian's docker-registry 2.8) where the spec fixes the behaviour; berth-only checks
cover what 2.8 predates (referrers, OCI-Subject, ?tag=) or leaves optional.
"""

import json
import os
import uuid

import pytest

from .regapi import Api, sha
from .regprocs import start_berth_registry, start_reference_registry

pytestmark = pytest.mark.interop


@pytest.fixture(params=["berth", "reference"])
def api(request, tmp_path):
    start = start_berth_registry if request.param == "berth" else start_reference_registry
    r = start(tmp_path)
    try:
        a = Api(r.url)
        a.impl = request.param
        a.proc = r
        yield a
    finally:
        r.stop()


def repo() -> str:
    return f"t{uuid.uuid4().hex[:8]}/app"


def test_base_endpoint(api):
    r = api.req("GET", "/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_upload_and_fetch(api):
    name, data = repo(), os.urandom(5000)
    d = api.push_blob(name, data)
    r = api.req("HEAD", f"/v2/{name}/blobs/{d}")
    assert r.status == 200
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == "5000"
    r = api.req("GET", f"/v2/{name}/blobs/{d}")
    assert r.status == 200 and r.body == data
    assert r.headers["Docker-Content-Digest"] == d
    # the blob is not visible in another repository until mounted or uploaded there
    r = api.req("GET", f"/v2/{repo()}/blobs/{d}")
    assert r.status == 404 and r.code == "BLOB_UNKNOWN"


def test_blob_etag_is_the_digest_on_head_and_get(api):
    name, data = repo(), os.urandom(300)
    d = api.push_blob(name, data)
    assert api.req("HEAD", f"/v2/{name}/blobs/{d}").headers["ETag"] == f'"{d}"'
    assert api.req("GET", f"/v2/{name}/blobs/{d}").headers["ETag"] == f'"{d}"'


def test_method_not_allowed_names_the_allowed(api):
    name = repo()
    api.push_image(name, "v1", [b"m"])
    r = api.req("POST", f"/v2/{name}/manifests/v1")
    assert r.status == 405
    assert sorted(r.headers["Allow"].split(", ")) == ["DELETE", "GET", "HEAD", "PUT"]


def test_range_requests(api):
    name, data = repo(), os.urandom(1000)
    d = api.push_blob(name, data)
    r = api.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.headers["Content-Range"] == "bytes 10-19/1000"
    r = api.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=990-"})
    assert r.status == 206 and r.body == data[990:]
    r = api.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=5000-"})
    assert r.status == 416


def test_chunked_upload_in_order(api):
    name, data = repo(), os.urandom(300)
    r = api.req("POST", f"/v2/{name}/blobs/uploads/", b"", {"Content-Length": "0"})
    assert r.status == 202
    loc = r.headers["Location"]
    r = api.req("PATCH", loc, data[:100], {"Content-Range": "0-99",
                                           "Content-Type": "application/octet-stream"})
    assert r.status == 202
    assert r.headers["Range"] == "0-99"
    loc = r.headers["Location"]
    if api.impl == "berth":
        # out of order, after a gap: the spec says 416 (2.8 accepts it and corrupts the upload)
        r = api.req("PATCH", loc, data[150:200], {"Content-Range": "150-199",
                                                  "Content-Type": "application/octet-stream"})
        assert r.status == 416 and r.code == "RANGE_INVALID"
    r = api.req("GET", loc)
    assert r.status == 204 and r.headers["Range"] == "0-99"
    r = api.req("PATCH", loc, data[100:200], {"Content-Range": "100-199",
                                              "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["Range"] == "0-199"
    loc = r.headers["Location"]
    sep = "&" if "?" in loc else "?"
    r = api.req("PUT", f"{loc}{sep}digest={sha(data)}", data[200:],
                {"Content-Type": "application/octet-stream", "Content-Range": "200-299"})
    assert r.status == 201
    assert r.headers["Docker-Content-Digest"] == sha(data)
    assert api.req("GET", f"/v2/{name}/blobs/{sha(data)}").body == data


def test_wrong_digest_is_refused(api):
    name = repo()
    r = api.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = r.headers["Location"]
    sep = "&" if "?" in loc else "?"
    wrong = sha(b"something else")
    r = api.req("PUT", f"{loc}{sep}digest={wrong}", b"payload",
                {"Content-Type": "application/octet-stream"})
    assert r.status == 400 and r.code == "DIGEST_INVALID"
    assert api.req("HEAD", f"/v2/{name}/blobs/{wrong}").status == 404
    assert api.req("HEAD", f"/v2/{name}/blobs/{sha(b'payload')}").status == 404


def test_cancel_upload(api):
    name = repo()
    loc = api.req("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    r = api.req("PATCH", loc, b"abc")
    assert r.status == 202
    loc = r.headers["Location"]
    assert api.req("DELETE", loc).status == 204
    r = api.req("GET", loc)
    assert r.status == 404 and r.code == "BLOB_UPLOAD_UNKNOWN"


def test_manifest_naming_missing_blob_is_refused(api):
    name = repo()
    cfg = b"{}"
    cd = api.push_blob(name, cfg)
    missing = sha(b"never pushed")
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                      "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": missing, "size": 12}]}
    r = api.push_manifest(name, "v1", doc)
    assert r.status == 400 and r.code == "MANIFEST_BLOB_UNKNOWN"
    assert api.req("GET", f"/v2/{name}/manifests/v1").status == 404


def test_manifest_roundtrip_and_negotiation(api):
    name = repo()
    digest, doc = api.push_image(name, "v1", [os.urandom(100)])
    raw = json.dumps(doc).encode()
    assert digest == sha(raw)
    for ref in ("v1", digest):
        r = api.req("GET", f"/v2/{name}/manifests/{ref}",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status == 200 and r.body == raw
        assert r.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert r.headers["Docker-Content-Digest"] == digest
    r = api.req("HEAD", f"/v2/{name}/manifests/v1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200 and r.headers["Content-Length"] == str(len(raw))
    # an OCI manifest is not served to a client that accepts only docker's types
    r = api.req("GET", f"/v2/{name}/manifests/v1",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status == 404
    r = api.req("GET", f"/v2/{name}/manifests/nope")
    assert r.status == 404 and r.code == "MANIFEST_UNKNOWN"
    r = api.push_manifest(name, sha(b"x"), raw)
    assert r.status == 400 and r.code == "DIGEST_INVALID"


def test_tags_pagination(api):
    name = repo()
    digest, doc = api.push_image(name, "b", [os.urandom(10)])
    for t in ("c", "a"):
        assert api.push_manifest(name, t, doc).status == 201
    body = api.req("GET", f"/v2/{name}/tags/list").json()
    assert body["name"] == name and sorted(body["tags"]) == ["a", "b", "c"]
    if api.impl == "berth":
        # the spec wants lexical order; 2.8 answers in directory order
        # so is pagination (n, last, Link), which 2.8's tags endpoint does not implement
        assert body["tags"] == ["a", "b", "c"]
        r = api.req("GET", f"/v2/{name}/tags/list?n=2")
        assert r.json()["tags"] == ["a", "b"]
        assert 'rel="next"' in r.headers["Link"]
        assert api.req("GET", f"/v2/{name}/tags/list?n=2&last=b").json()["tags"] == ["c"]
        r = api.req("GET", f"/v2/{name}/tags/list?n=0")
        assert r.json()["tags"] == [] and "Link" not in r.headers
    r = api.req("GET", f"/v2/{repo()}/tags/list")
    assert r.status == 404 and r.code == "NAME_UNKNOWN"


def test_cross_repository_mount(api):
    a, b = repo(), repo()
    d = api.push_blob(a, os.urandom(64))
    r = api.req("POST", f"/v2/{b}/blobs/uploads/?mount={d}&from={a}")
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
    assert api.req("HEAD", f"/v2/{b}/blobs/{d}").status == 200
    # a source that lacks the blob: an upload session starts instead
    r = api.req("POST", f"/v2/{b}/blobs/uploads/?mount={sha(b'no')}&from={a}")
    assert r.status == 202 and r.headers["Location"]


def test_deletes(api):
    name = repo()
    layer = os.urandom(10)
    digest, _ = api.push_image(name, "v1", [layer])
    assert api.req("DELETE", f"/v2/{name}/manifests/{digest}").status == 202
    r = api.req("GET", f"/v2/{name}/manifests/{digest}")
    assert r.status == 404 and r.code == "MANIFEST_UNKNOWN"
    assert api.req("GET", f"/v2/{name}/manifests/v1").status == 404
    assert api.req("DELETE", f"/v2/{name}/blobs/{sha(layer)}").status == 202
    r = api.req("GET", f"/v2/{name}/blobs/{sha(layer)}")
    assert r.status == 404 and r.code == "BLOB_UNKNOWN"


def test_a_reference_that_is_no_tag_names_no_manifest(api):
    # the conformance suite asks for ".INVALID_MANIFEST_NAME" and wants 404, as the
    # reference registry answers (its routes do not match such a reference)
    name = repo()
    api.push_image(name, "v1", [b"z"])
    for method in ("GET", "HEAD", "DELETE"):
        r = api.req(method, f"/v2/{name}/manifests/.INVALID_MANIFEST_NAME")
        assert r.status == 404, (method, r.status, r.body)
    r = api.req("GET", f"/v2/{name}/manifests/v1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200


def test_unauthorized_body_keeps_its_message_for_docker(tmp_path):
    """docker's client drops an error's message when it equals the code's own and the detail
    is null, and prints a bare "unauthorized"; both registries send the access asked for."""
    from .regprocs import htpasswd_file

    pw = htpasswd_file(tmp_path / "htpasswd", {"u": "p"})
    for start in (start_berth_registry, start_reference_registry):
        r = start(tmp_path / start.__name__, htpasswd=str(pw)) \
            if start is start_reference_registry else start(tmp_path / start.__name__,
                                                            "--htpasswd", str(pw))
        try:
            ans = Api(r.url).req("GET", "/v2/x/y/manifests/1")
            assert ans.status == 401 and ans.code == "UNAUTHORIZED"
            (err,) = ans.json()["errors"]
            assert err["message"] == "authentication required"
            assert {"Type": "repository", "Name": "x/y", "Action": "pull"}.items() <= \
                err["detail"][0].items()
        finally:
            r.stop()


def test_catalog(api):
    a, b = repo(), repo()
    api.push_image(a, "1", [b"x"])
    api.push_image(b, "1", [b"y"])
    repos = api.req("GET", "/v2/_catalog").json()["repositories"]
    assert a in repos and b in repos and repos == sorted(repos)
    r = api.req("GET", "/v2/_catalog?n=1")
    (first,) = r.json()["repositories"]
    # the next page's link, with the name encoded as the reference registry writes it
    assert r.headers["Link"] == \
        f'</v2/_catalog?last={first.replace("/", "%2F")}&n=1>; rel="next"'
    nxt = api.req("GET", r.headers["Link"][1:].split(">")[0]).json()["repositories"]
    assert nxt and nxt[0] > first


# -- berth only: what the reference registry 2.8 predates or leaves out --------------------------


@pytest.fixture
def bapi(tmp_path):
    r = start_berth_registry(tmp_path)
    try:
        a = Api(r.url)
        a.proc = r
        yield a
    finally:
        r.stop()


def test_single_post_monolithic(bapi):
    name, data = repo(), os.urandom(77)
    r = bapi.req("POST", f"/v2/{name}/blobs/uploads/?digest={sha(data)}", data,
                 {"Content-Type": "application/octet-stream"})
    assert r.status == 201 and r.headers["Location"].endswith(sha(data))
    assert bapi.req("GET", f"/v2/{name}/blobs/{sha(data)}").body == data


def test_referrers_and_subject(bapi):
    name = repo()
    subject_digest, subject_doc = bapi.push_image(name, "v1", [b"base"])
    raw = json.dumps(subject_doc).encode()
    empty = bapi.push_blob(name, b"{}")
    sig = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "artifactType": "application/vnd.example.sig",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty,
                      "size": 2},
           "layers": [],
           "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": subject_digest, "size": len(raw)},
           "annotations": {"org.example": "yes"}}
    sig_raw = json.dumps(sig).encode()
    r = bapi.push_manifest(name, sha(sig_raw), sig_raw)
    assert r.status == 201 and r.headers["OCI-Subject"] == subject_digest
    r = bapi.req("GET", f"/v2/{name}/referrers/{subject_digest}")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    (ref,) = r.json()["manifests"]
    assert ref["digest"] == sha(sig_raw) and ref["artifactType"] == "application/vnd.example.sig"
    assert ref["annotations"] == {"org.example": "yes"}
    r = bapi.req("GET", f"/v2/{name}/referrers/{subject_digest}?artifactType=other/x")
    assert r.json()["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"
    # a subject that does not exist yet is accepted (referrers may come first)
    assert bapi.req("GET", f"/v2/{name}/referrers/{sha(b'none')}").json()["manifests"] == []
    assert bapi.req("GET", f"/v2/{name}/referrers/sha256:bad").status == 400


def test_mount_without_from(bapi):
    # the spec's automatic content discovery: with no auth every blob is readable anyway
    data = os.urandom(33)
    d = bapi.push_blob(repo(), data)
    other = repo()
    r = bapi.req("POST", f"/v2/{other}/blobs/uploads/?mount={d}")
    assert r.status == 201 and r.headers["Location"] == f"/v2/{other}/blobs/{d}"
    assert bapi.req("GET", f"/v2/{other}/blobs/{d}").body == data
    r = bapi.req("POST", f"/v2/{other}/blobs/uploads/?mount={sha(b'absent')}")
    assert r.status == 202


def test_push_by_digest_with_tags(bapi):
    name = repo()
    _, doc = bapi.push_image(name, "seed", [b"l"])
    raw = json.dumps({**doc, "annotations": {"v": "2"}}).encode()
    r = bapi.push_manifest(name, f"{sha(raw)}?tag=1.0&tag=latest", raw)
    assert r.status == 201
    assert sorted(r.headers.get_all("OCI-Tag")) == ["1.0", "latest"]
    assert bapi.req("GET", f"/v2/{name}/manifests/1.0").body == raw


def test_bad_names_and_sizes(bapi):
    assert bapi.req("GET", "/v2/UPPER/tags/list").code == "NAME_INVALID"
    assert bapi.req("GET", "/v2/a/../b/tags/list").status in (400, 404)
    r = bapi.push_manifest(repo(), "big", b"{" + b" " * (4 * 1024 * 1024 + 10) + b"}")
    assert r.status == 413
    r = bapi.push_manifest(repo(), "x", b"not json")
    assert r.status == 400 and r.code == "MANIFEST_INVALID"


def test_sha512_blob(bapi):
    import hashlib

    name, data = repo(), os.urandom(99)
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = bapi.req("POST", f"/v2/{name}/blobs/uploads/?digest-algorithm=sha512")
    loc = r.headers["Location"]
    r = bapi.req("PUT", f"{loc}?digest={d}", data, {"Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert bapi.req("GET", f"/v2/{name}/blobs/{d}").body == data
