"""Loopback ports for the servers the tests start."""

from __future__ import annotations

import socket


def free_port(taken: set[int] | None = None) -> int:
    """A port the kernel considers free on 127.0.0.1 and not in `taken` (then added to it). The
    probe socket is closed before the server binds the port: a tiny race, harmless on loopback,
    and some servers (aiosmtpd's Controller) need the port before they start."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if taken is None:
            return port
        if port not in taken:
            taken.add(port)
            return port
