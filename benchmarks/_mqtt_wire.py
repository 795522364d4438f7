"""MQTT 3.1.1 on the wire, for benchmark subscribers that must not pay a client library's costs.

Just enough to CONNECT, SUBSCRIBE and read packets off a byte stream: the benchmarks measure the
broker's fan-out, so their thousands of subscribers are bare asyncio protocols.
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(text: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_and_subscribe(
    client_id: str, topic: str, *, username: str | None = None, password: str | None = None
) -> bytes:
    """CONNECT (clean session, keep-alive 600 s) then SUBSCRIBE to `topic` at QoS 1, as one write."""
    flags = 2 | (0xC0 if username is not None else 0)
    connect = string("MQTT") + bytes([4, flags]) + (600).to_bytes(2, "big") + string(client_id)
    if username is not None:
        connect += string(username) + string(password or "")
    subscribe = (1).to_bytes(2, "big") + string(topic) + bytes([1])
    return bytes([0x10]) + varint(len(connect)) + connect + bytes([0x82]) + varint(len(subscribe)) + subscribe


def split_packets(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole packets at the start of `buffer` as (header byte, body), and the bytes left over."""
    packets = []
    while len(buffer) >= 2:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buffer):
                return packets, buffer
            byte = buffer[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if len(buffer) < i + length:
            break
        packets.append((buffer[0], buffer[i : i + length]))
        buffer = buffer[i + length :]
    return packets, buffer
