"""A stand-in for the Hugging Face hub's file downloads on 127.0.0.1, for tests without network.

It answers what `huggingface_hub.hf_hub_download` asks, as huggingface.co does:
`HEAD`/`GET {endpoint}/{owner}/{name}/resolve/{revision}/{file}`
- a small file: 200 with `ETag` (the git blob id), `X-Repo-Commit` and `Content-Length`;
- a large (LFS) file, `.pth` / `.bin` / `.safetensors`: 302 to a second server on another port
  (the CDN) with `X-Linked-Etag` (sha256), `X-Linked-Size` and `X-Repo-Commit`; the CDN serves the
  bytes and honors `Range`, and gets no `Authorization` header from the client;
- an unknown repository: 401 with `X-Error-Code: RepoNotFound`; an unknown file: 404 with
  `X-Error-Code: EntryNotFound`.
`interrupt()` makes the next CDN transfer stop half-way (connection closed) and later ones fail
with 500 until `resume()`. Every request is recorded in `requests`.

Example:
    >>> with LocalHub({"owner/repo": {"model.safetensors": b"..."}}) as hub:
    ...     os.environ["HF_ENDPOINT"] = hub.endpoint  # doctest: +SKIP
"""

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".pth", ".bin", ".safetensors")


def closed_port_endpoint():
    """An http://127.0.0.1 endpoint where nothing listens (a hub that cannot be reached)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def git_blob_id(data):
    """The git object id of a blob (what the hub sends as ETag for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self.server.hub.handle(self, body=False)

    def do_GET(self):
        self.server.hub.handle(self, body=True)


class LocalHub:
    """Hub + CDN servers on 127.0.0.1 serving `repos` = {"owner/name": {file: bytes}}."""

    def __init__(self, repos):
        self.repos = repos
        self.requests = []
        self._cut = None  # None, "next" (cut the next transfer) or "failing" (500)
        self._servers = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.hub, server.role = self, role
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers[role] = server

    def stop(self):
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def url(self, role):
        return f"http://127.0.0.1:{self._servers[role].server_address[1]}"

    @property
    def endpoint(self):
        return self.url("hub")

    def interrupt(self):
        self._cut = "next"

    def resume(self):
        self._cut = None

    def handle(self, request, body):
        role = request.server.role
        path = unquote(urlsplit(request.path).path)
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.requests.append((role, request.command, path, headers))
        if role == "cdn":
            return self._serve_blob(request, path, body)
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._reply(request, 404, {}, b"Not Found", body)
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if repo_id not in self.repos:
            headers = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            return self._reply(request, 401, headers, b"Repository not found", body)
        files = self.repos[repo_id]
        commit = {"X-Repo-Commit": COMMIT}
        if filename not in files:
            headers = {
                **commit,
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
            }
            return self._reply(request, 404, headers, b"Entry not found", body)
        data = files[filename]
        if not filename.endswith(LFS_SUFFIXES):
            headers = {**commit, "ETag": f'"{git_blob_id(data)}"'}
            return self._reply(request, 200, headers, data, body)
        sha256 = hashlib.sha256(data).hexdigest()
        headers = {
            **commit,
            "ETag": f'"{git_blob_id(data)}"',
            "X-Linked-Etag": f'"{sha256}"',
            "X-Linked-Size": str(len(data)),
            "Location": f"{self.url('cdn')}/{repo_id}/{sha256}?filename={filename}",
        }
        return self._reply(request, 302, headers, b"Found. Redirecting", body)

    def _serve_blob(self, request, path, body):
        sha256 = path.rsplit("/", 1)[-1]
        blobs = {hashlib.sha256(d).hexdigest(): d for f in self.repos.values() for d in f.values()}
        if sha256 not in blobs:
            return self._reply(request, 404, {}, b"NoSuchKey", body)
        data = blobs[sha256]
        if self._cut == "failing":
            return self._reply(request, 500, {}, b"Internal Error", body)
        start = 0
        status, headers = 200, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start = int(ranged[len("bytes=") :].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        if self._cut == "next" and body:
            self._cut = "failing"
            request.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(payload))}.items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(payload[: len(payload) // 2])
            request.wfile.flush()
            request.close_connection = True
            request.connection.close()
            return None
        return self._reply(request, status, headers, payload, body)

    @staticmethod
    def _reply(request, status, headers, payload, body):
        request.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(payload))}.items():
            request.send_header(key, value)
        request.end_headers()
        if body:
            request.wfile.write(payload)
        return None
