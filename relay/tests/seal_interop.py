"""The seal of relay/PROTOCOL.md, implemented from the document with Python's `cryptography`
package (OpenSSL underneath), for relay/tests/seal_interop.rs.

Reads {"secret", "sealed", "to_seal"} (hex) on stdin: opens `sealed` (a relay datagram sealed
by the Rust code) and seals `to_seal` (a NAK with zeroed seal room) as a receiver would, with
nonce counter 12345. Writes {"opened", "sealed"} (hex) on stdout.
"""

import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER = 48
SEAL = 24


def key(secret: bytes, info: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"relay-wire v2", info=info
    ).derive(secret)
    return AESGCM(derived)


def nonce(datagram: bytes, counter: bytes) -> bytes:
    # The header's epoch (bytes 8..12, little-endian as sent), then the 8-byte counter.
    return datagram[8:12] + counter


def main() -> None:
    request = json.load(sys.stdin)
    secret = bytes.fromhex(request["secret"])

    sealed = bytes.fromhex(request["sealed"])
    seal = sealed[-SEAL:]
    body = key(secret, b"relay datagrams").decrypt(
        nonce(sealed, seal[:8]), sealed[HEADER:-SEAL] + seal[8:], sealed[:HEADER]
    )
    opened = sealed[:HEADER] + body + seal

    plain = bytes.fromhex(request["to_seal"])
    counter = (12345).to_bytes(8, "little")
    out = key(secret, b"receiver requests").encrypt(
        nonce(plain, counter), plain[HEADER:-SEAL], plain[:HEADER]
    )
    ours = plain[:HEADER] + out[:-16] + counter + out[-16:]

    json.dump({"opened": opened.hex(), "sealed": ours.hex()}, sys.stdout)


if __name__ == "__main__":
    main()
