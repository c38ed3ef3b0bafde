"""Binance's own Python connector (binance-connector) against `relay receive --serve-ws`: the
client code is what it would be against Binance, only the base URL changes.

    serve_client.py BASE_URL OUT_FILE raw|combined STREAM...

Connects (/ws for raw, /stream for combined, as the connector does), SUBSCRIBEs to the streams,
asks LIST_SUBSCRIPTIONS, prints "subscribed" once the subscription is answered, and records every
text message until the server closes the connection; then writes them to OUT_FILE, one per line.
"""

import json
import sys
import threading

from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

base, out, form, streams = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
messages = []
subscribed = threading.Event()
closed = threading.Event()


def on_message(_, message):
    messages.append(message)
    if json.loads(message).get("id") == 1:
        subscribed.set()


client = SpotWebsocketStreamClient(
    stream_url=base,
    on_message=on_message,
    on_close=lambda _: closed.set(),
    on_error=lambda _, e: closed.set(),
    is_combined=(form == "combined"),
)
client.subscribe(stream=streams, id=1)
client.list_subscribe(id=2)
if not subscribed.wait(timeout=30):
    sys.exit("no reply to SUBSCRIBE within 30 s")
print("subscribed", flush=True)
if not closed.wait(timeout=120):
    sys.exit("the server did not close the connection within 120 s")
with open(out, "w") as f:
    for message in messages:
        f.write(message + "\n")
