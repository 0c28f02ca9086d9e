"""A deliberately dumb HTTP/1.1 client: sends exactly the bytes it is given.

httpx refuses to send malformed headers (CR/LF inside values, non-token names); an attacker's
client does not. Fuzzing goes through this so the Worker sees what an attacker could send.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def _read_response(sock: socket.socket, head_request: bool) -> bytes:
    """Read one response by its framing: servers may keep the connection open regardless."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if head_request or b" 204 " in head.split(b"\r\n", 1)[0] or b" 304 " in head[:16]:
        return head + b"\r\n\r\n"
    length = None
    for line in lower.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1].strip())
    chunked = b"transfer-encoding: chunked" in lower
    while True:
        if length is not None and len(body) >= length:
            break
        if chunked and (body.endswith(b"0\r\n\r\n") or body == b"0\r\n\r\n"):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if length is not None:
        # A fuzzed header can smuggle a second request ("\r\n\r\n<html>"); the server's answer
        # to it may arrive in the same read and is not part of this response.
        body = body[:length]
    return head + b"\r\n\r\n" + body


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


def send(
    base_url: str,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    timeout: float = 30.0,
) -> RawResponse:
    """Send one request with Connection: close and return the parsed response."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + f"{host}:{port}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = _read_response(sock, head_request=method.upper() == b"HEAD")
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    parsed = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines) if k]
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in parsed):
        payload = _dechunk(payload)
    return RawResponse(status, parsed, payload)
