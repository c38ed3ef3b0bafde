#!/usr/bin/env python3
"""A Binance-shaped TLS WebSocket exchange built on independent implementations.

The relay's own simulator uses the same libraries as the relay (tungstenite over rustls), so
tests against it only show that the relay talks to itself. This server uses Python's
`websockets` library (its asyncio API, default settings) over Python's `ssl` module (OpenSSL):
a different WebSocket implementation and a different TLS stack. `relay/tests/interop.rs` drives it.

Paths, as Binance serves them:
  /ws/<stream>              raw stream: each message is the event object itself
  /ws                       raw, no stream until the client SUBSCRIBEs
  /stream?streams=a/b       combined: each message is {"stream":"a","data":{...event...}}

Every stream is a trade stream: --count events per stream in total (across connections), with
consecutive trade ids, at --rate events per second per stream. The library's own keepalive pings
every client each --ping-interval seconds and drops a client that does not answer within
--ping-timeout. SUBSCRIBE requests ({"method":"SUBSCRIBE","params":[..],"id":n}) are answered with
{"result":null,"id":n} and start those streams. With --close-after K the server closes each
connection with a close frame (1000) after sending K events on it. The server exits by itself after
--lifetime seconds.

What it prints on stdout (one line each, flushed), for the test to read:
  PORT <n>                                  listening on 127.0.0.1:<n>
  OPEN <conn> <path>                        a WebSocket handshake completed
  SUBSCRIBE <conn> <id> <stream,...>        a SUBSCRIBE was answered
  REQUEST <conn> <text>                     any other client message (answered with an error)
  CLOSING <conn> <sent>                     --close-after reached; sending a close frame
  CONN <conn> sent=<n> pongs=<n> close_sent=<code|-> close_rcvd=<code|->
                                            a connection ended: events sent on it, keepalive
                                            pongs received, close codes sent and received
  SUMMARY connections=<n> sent=<n> pongs=<n> keepalive_timeouts=<n>
                                            at exit
"""

import argparse
import asyncio
import json
import ssl
import sys
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def say(line):
    print(line, flush=True)


class Exchange:
    """Trade ids and counts per stream, shared by all connections (ids continue across them)."""

    def __init__(self, count):
        self.count = count
        self.sent = {}
        self.connections = 0
        self.total_sent = 0
        self.total_pongs = 0
        self.keepalive_timeouts = 0

    def next_event(self, stream):
        """The stream's next trade event, or None once --count events were sent on it."""
        n = self.sent.get(stream, 0)
        if n >= self.count:
            return None
        self.sent[stream] = n + 1
        self.total_sent += 1
        now_ms = int(time.time() * 1000)
        trade_id = 1_000_000 + n
        price = 65000 + (n % 100) / 100
        return {
            "e": "trade",
            "E": now_ms,
            "s": stream.split("@", 1)[0].upper(),
            "t": trade_id,
            "p": f"{price:.2f}",
            "q": f"{0.001 * (1 + n % 7):.3f}",
            "T": now_ms,
            "m": False,
            "M": True,
        }


class CountingConnection(ServerConnection):
    """A default server connection that counts the pongs answering its keepalive pings."""

    pongs = 0

    async def ping(self, data=None):
        pong_received = await super().ping(data)
        pong_received.add_done_callback(self._count_pong)
        return pong_received

    def _count_pong(self, future):
        if not future.cancelled() and future.exception() is None:
            self.pongs += 1


def route(path):
    """(streams, combined) for a Binance stream path, or None if the path is not one."""
    parts = urlsplit(path)
    if parts.path == "/ws":
        return [], False
    if parts.path.startswith("/ws/") and len(parts.path) > 4:
        return [s for s in parts.path[4:].split("/") if s], False
    if parts.path == "/stream":
        streams = parse_qs(parts.query).get("streams", [""])[0]
        return [s for s in streams.split("/") if s], True
    return None


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def make_handler(exchange, args):
    async def handler(ws):
        exchange.connections += 1
        conn = exchange.connections
        streams, combined = route(ws.request.path)
        active = list(streams)
        say(f"OPEN {conn} {ws.request.path}")
        sent = 0

        async def read_requests():
            async for message in ws:
                try:
                    request = json.loads(message)
                except ValueError:
                    request = None
                if (
                    isinstance(request, dict)
                    and request.get("method") == "SUBSCRIBE"
                    and isinstance(request.get("params"), list)
                ):
                    for stream in request["params"]:
                        if stream not in active:
                            active.append(stream)
                    await ws.send(compact({"result": None, "id": request.get("id")}))
                    say(f"SUBSCRIBE {conn} {request.get('id')} {','.join(request['params'])}")
                else:
                    say(f"REQUEST {conn} {message!r}")
                    await ws.send(
                        compact({"error": {"code": 2, "msg": "Invalid request"}, "id": None})
                    )

        async def send_trades():
            nonlocal sent
            start = time.monotonic()
            tick = 0
            while True:
                tick += 1
                await asyncio.sleep(max(0.0, start + tick / args.rate - time.monotonic()))
                for stream in list(active):
                    event = exchange.next_event(stream)
                    if event is None:
                        continue
                    message = {"stream": stream, "data": event} if combined else event
                    await ws.send(compact(message))
                    sent += 1
                    if args.close_after and sent == args.close_after:
                        say(f"CLOSING {conn} {sent}")
                        await ws.close(1000, "interop: planned close")
                        return

        tasks = [asyncio.create_task(read_requests()), asyncio.create_task(send_trades())]
        try:
            await ws.wait_closed()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except (asyncio.CancelledError, ConnectionClosed):
                    pass
            close_sent = ws.protocol.close_sent
            close_rcvd = ws.protocol.close_rcvd
            if close_sent is not None and close_sent.code == 1011:
                exchange.keepalive_timeouts += 1
            exchange.total_pongs += ws.pongs
            say(
                f"CONN {conn} sent={sent} pongs={ws.pongs}"
                f" close_sent={close_sent.code if close_sent else '-'}"
                f" close_rcvd={close_rcvd.code if close_rcvd else '-'}"
            )

    return handler


def process_request(connection, request):
    if route(request.path) is None:
        return connection.respond(HTTPStatus.NOT_FOUND, f"no stream at {request.path}\n")
    return None


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", required=True, help="server certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="server private key (PEM)")
    parser.add_argument("--count", type=int, required=True, help="trade events per stream")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s per stream")
    parser.add_argument("--ping-interval", type=float, default=0.2, help="keepalive ping period, s")
    parser.add_argument("--ping-timeout", type=float, default=1.0, help="drop without a pong, s")
    parser.add_argument("--close-after", type=int, default=0, help="close each connection after K events")
    parser.add_argument("--lifetime", type=float, required=True, help="exit after this many seconds")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    exchange = Exchange(args.count)
    async with serve(
        make_handler(exchange, args),
        "127.0.0.1",
        0,
        ssl=context,
        process_request=process_request,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        close_timeout=2,
        create_connection=CountingConnection,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        say(f"PORT {port}")
        await asyncio.sleep(args.lifetime)
    say(
        f"SUMMARY connections={exchange.connections} sent={exchange.total_sent}"
        f" pongs={exchange.total_pongs} keepalive_timeouts={exchange.keepalive_timeouts}"
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
