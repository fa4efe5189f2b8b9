"""A tiny synchronous HTTP helper for talking to a registry in tests (http.client, no deps)."""

import hashlib
import http.client
import json
import ssl
import urllib.parse


class Resp:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            return self.json()["errors"][0]["code"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Api:
    def __init__(self, url: str, auth: str | None = None, cafile: str | None = None) -> None:
        u = urllib.parse.urlsplit(url)
        self.scheme, self.netloc = u.scheme, u.netloc
        self.auth = auth
        self.ctx = ssl.create_default_context(cafile=cafile) if u.scheme == "https" else None

    def req(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
            ) -> Resp:
        if path.startswith("http"):
            u = urllib.parse.urlsplit(path)
            path = u.path + (f"?{u.query}" if u.query else "")
        if self.scheme == "https":
            c = http.client.HTTPSConnection(self.netloc, timeout=30, context=self.ctx)
        else:
            c = http.client.HTTPConnection(self.netloc, timeout=30)
        h = dict(headers or {})
        if self.auth and "Authorization" not in h:
            h["Authorization"] = self.auth
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            try:
                body = r.read()
            except http.client.IncompleteRead as e:
                # the reference registry announces the blob's length on some 416 answers
                body = e.partial
            return Resp(r.status, r.headers, body)
        finally:
            c.close()

    # conveniences built on the protocol
    def push_blob(self, name: str, data: bytes) -> str:
        r = self.req("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status == 202, (r.status, r.body)
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        d = sha(data)
        r = self.req("PUT", f"{loc}{sep}digest={d}", data,
                     {"Content-Type": "application/octet-stream"})
        assert r.status == 201, (r.status, r.body)
        return d

    def push_manifest(self, name: str, ref: str, doc: dict | bytes,
                      media_type: str = "application/vnd.oci.image.manifest.v1+json") -> Resp:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.req("PUT", f"/v2/{name}/manifests/{ref}", raw, {"Content-Type": media_type})

    def push_image(self, name: str, tag: str, layers: list[bytes], **extra) -> tuple[str, dict]:
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = self.push_blob(name, cfg)
        descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": self.push_blob(name, b), "size": len(b)} for b in layers]
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": cd, "size": len(cfg)}, "layers": descs, **extra}
        r = self.push_manifest(name, tag, doc)
        assert r.status == 201, (r.status, r.body)
        return r.headers["Docker-Content-Digest"], doc
