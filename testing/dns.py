"""A slow DNS server for tests: every A query is answered with one address after a delay, every
other query (AAAA included) with no records after the same delay.

    python -m testing.dns --address 127.0.0.1 --delay 1

It listens on 127.0.0.1:53, so it runs inside a network namespace whose resolv.conf points
there (`ip netns exec` mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf). It prints
"ready" once listening.
"""

import argparse
import socket
import struct
import threading
import time

A, IN = 1, 1


def answer(query: bytes, address: str) -> bytes:
    """The response to `query`: its question, and an A record for `address` if it asked for A."""
    end = 12
    while query[end]:  # the question's name: length-prefixed labels, then a zero
        end += query[end] + 1
    qtype = struct.unpack(">H", query[end + 1 : end + 3])[0]
    question = query[12 : end + 5]
    records = b""
    if qtype == A:
        records = b"\xc0\x0c" + struct.pack(">HHIH", A, IN, 60, 4) + socket.inet_aton(address)
    flags = b"\x81\x80"  # a response, recursion desired and available, no error
    header = query[:2] + flags + struct.pack(">HHHH", 1, 1 if records else 0, 0, 0)
    return header + question + records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--delay", type=float, required=True)
    args = parser.parse_args()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 53))
    print("ready", flush=True)

    def reply(query: bytes, client) -> None:
        time.sleep(args.delay)
        server.sendto(answer(query, args.address), client)

    while True:
        query, client = server.recvfrom(512)
        threading.Thread(target=reply, args=(query, client), daemon=True).start()


if __name__ == "__main__":
    main()
