"""The listening socket, bound before anything else starts: a port in use is one line at once."""

from __future__ import annotations

import errno
import socket

from app.cli.errors import CliError


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection (Linux). Without it a keep-alive client waited 40 ms
    # on each answer: the response leaves in two writes, Nagle holds the second until the client
    # ACKs the first, and the client delays that ACK (measured: GET /health 44 ms on a kept-alive
    # connection, 6 ms on a fresh one). uvloop does not set it on the sockets of a passed-in server.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(_bind_failure(host, port, exc)) from None
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}: stop the other server or set PORT to a free port"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}: set PORT to a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"cannot listen on {host}: not an address of this machine; set HOST (e.g. HOST=127.0.0.1)"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}): set HOST or PORT"
