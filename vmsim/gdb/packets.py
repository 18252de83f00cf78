"""GDB remote serial protocol framing: `$data#cs`, acknowledgements and 0x03.

The reader is a small state machine fed with whatever `recv` returned, so a packet split
across reads or several packets in one read come out the same.
"""
from __future__ import annotations

from dataclasses import dataclass

INTERRUPT = 0x03
_ESCAPED = frozenset(b"$#}*")


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data for a reply: `}` then the byte xor 0x20 for $ # } * (never RLE)."""
    out = bytearray()
    for byte in data:
        if byte in _ESCAPED:
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for byte in it:
        out.append(next(it, 0) ^ 0x20 if byte == 0x7D else byte)
    return bytes(out)


def frame(data: bytes) -> bytes:
    body = escape(data)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


@dataclass(frozen=True)
class Packet:
    data: bytes            # unescaped payload
    valid: bool            # the checksum matched


class Reader:
    """Splits a byte stream into Packet, "ack", "nak" and "interrupt" items."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Packet | str]:
        self._buf += chunk
        items: list[Packet | str] = []
        while self._buf:
            first = self._buf[0]
            if first == ord("$"):
                end = self._buf.find(b"#")
                if end < 0 or len(self._buf) < end + 3:
                    break                                   # wait for the rest
                body = bytes(self._buf[1:end])
                try:
                    valid = int(self._buf[end + 1:end + 3], 16) == checksum(body)
                except ValueError:
                    valid = False
                del self._buf[:end + 3]
                items.append(Packet(unescape(body), valid))
                continue
            del self._buf[0]
            if first == ord("+"):
                items.append("ack")
            elif first == ord("-"):
                items.append("nak")
            elif first == INTERRUPT:
                items.append("interrupt")
            # anything else between packets is line noise: dropped
        return items
