#!/usr/bin/env python3
"""Minimal HTTP/3 GET client built on aioquic (not on quinn), for the interop suite.

    h3get.py --ca CA.crt HOST PORT PATH OUTFILE

Verifies the server against CA.crt (HOST may be an IP literal: aioquic then
sends no SNI and checks the certificate's IP SAN), GETs PATH, writes the body
to OUTFILE, prints ":status <code>" and one "name: value" line per response
header on stdout. Exits 0 when a response arrived (any status), 1 otherwise.
"""

import argparse
import asyncio
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated


class H3Client(QuicConnectionProtocol):
    """Collects the HTTP/3 events of one request stream."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = H3Connection(self._quic)
        self.headers = []
        self.body = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated) and not self.done.done():
            self.done.set_exception(ConnectionError(
                f"connection closed: error {event.error_code} {event.reason_phrase!r}"))
        for ev in self._h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.headers.extend(ev.headers)
            elif isinstance(ev, DataReceived):
                self.body.extend(ev.data)
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

    async def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
            (b"user-agent", b"outpost-interop-aioquic"),
        ], end_stream=True)
        self.transmit()
        await self.done


async def fetch(a):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name=a.host)
    config.load_verify_locations(cafile=a.ca)
    async with connect(a.host, a.port, configuration=config,
                       create_protocol=H3Client) as client:
        await client.get(f"{a.host}:{a.port}", a.path)
        with open(a.outfile, "wb") as f:
            f.write(client.body)
        # Like `curl -D -`: a status line, then the regular header fields.
        status = dict(client.headers).get(b":status", b"?").decode()
        print(f"HTTP/3 {status}")
        for name, value in client.headers:
            if not name.startswith(b":"):
                print(f"{name.decode()}: {value.decode(errors='replace')}")
        print(f"# {len(client.body)} body bytes", file=sys.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("outfile")
    args = ap.parse_args()
    try:
        # The timeout covers the handshake as well as the response.
        asyncio.run(asyncio.wait_for(fetch(args), args.timeout))
    except Exception as e:  # one readable line for the suite's FAIL message
        print(f"h3get: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
