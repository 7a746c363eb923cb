#!/usr/bin/env python3
"""Writes vectors.json: Coffer frame test vectors (see ../../FRAMING.md).

This is an implementation of the framing independent of frame.go (its own
bitwise CRC-32C), so that TestFrameVectors checks the Go code against
something other than itself. The expected events of each stream are written
out by hand below, following the rules in FRAMING.md. Run from this folder:

    python3 gen_vectors.py > vectors.json
"""

import json
import struct


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def raw(id_, payload, version=1, flags=0, length=None):
    if length is None:
        length = len(payload)
    hdr = b"CF" + struct.pack(">BBII", version, flags, id_, length)
    hdr += struct.pack(">I", crc32c(hdr))
    body = hdr + payload
    return body + struct.pack(">I", crc32c(body))


def fields(frame):
    """The decoded fields of one whole frame."""
    version, flags, id_, length, hcrc = struct.unpack(">BBIII", frame[2:16])
    return {
        "version": version,
        "flags": flags,
        "id": id_,
        "length": length,
        "header_crc": frame[12:16].hex(),
        "payload": frame[16:-4].hex(),
        "crc": frame[-4:].hex(),
    }


def clean(b):
    """The rules below assume no magic after the start of b."""
    assert b"CF" not in b[1:], b.hex()
    return b


def frame(off, id_, payload):
    return {"event": "frame", "offset": off, "id": id_, "payload": payload.hex()}


def garbage(off, n):
    return {"event": "garbage", "offset": off, "skipped": n}


def err(kind, off, id_=None, length=None, **kw):
    e = {"event": kind, "offset": off}
    if id_ is not None:
        e["id"] = id_
        e["length"] = length
    e.update(kw)
    return e


EOF = {"event": "EOF"}
UNEXPECTED_EOF = {"event": "unexpected EOF"}

# {"v": 1} in CBOR: a map of one text key to an unsigned integer.
CBOR = bytes.fromhex("a1617601")

vectors = []


def add(name, stream, events, single=False):
    v = {"name": name, "stream": stream.hex()}
    if single:
        v["frame"] = fields(stream)
    v["events"] = events
    vectors.append(v)


f0 = clean(raw(0, b""))
add("empty payload", f0, [frame(0, 0, b""), EOF], single=True)

f1 = clean(raw(1, CBOR))
add("CBOR payload", f1, [frame(0, 1, CBOR), EOF], single=True)

f2 = raw(0xFFFFFFFF, b"CF\x01\x00 a magic inside a payload is data")
add("largest id, payload holding a magic", f2,
    [frame(0, 0xFFFFFFFF, b"CF\x01\x00 a magic inside a payload is data"), EOF], single=True)

f3 = clean(raw(0x0102, b"\x00" * 32))
add("two frames", f1 + f3, [frame(0, 1, CBOR), frame(len(f1), 0x0102, b"\x00" * 32), EOF])

add("empty stream", b"", [EOF])

g = b"\x00\xff noise \x7f"
add("garbage then frame", g + f1, [garbage(0, len(g)), frame(len(g), 1, CBOR), EOF])

add("frame then garbage", f1 + g, [frame(0, 1, CBOR), garbage(len(f1), len(g)), EOF])

add("false magic in garbage", b"xxCFzz" + f1, [
    garbage(0, 2),
    err("bad version", 2, version=ord("z")),
    garbage(4, 2),
    frame(6, 1, CBOR), EOF])

bad_crc = bytearray(f3)
bad_crc[20] ^= 0x01
bad_crc = clean(bytes(bad_crc))
add("bad checksum", bad_crc + f1, [
    err("bad checksum", 0, 0x0102, 32),
    garbage(2, len(bad_crc) - 2),
    frame(len(bad_crc), 1, CBOR), EOF], single=True)

bad_len = bytearray(f3)
bad_len[11] = 0x40  # length 64, not covered by the header CRC any more
bad_len = clean(bytes(bad_len))
add("bad header checksum", bad_len + f1, [
    err("bad header checksum", 0),
    garbage(2, len(bad_len) - 2),
    frame(len(bad_len), 1, CBOR), EOF], single=True)

v2 = clean(raw(5, CBOR, version=2))
add("unknown version", v2 + f1, [
    err("bad version", 0, version=2),
    garbage(2, len(v2) - 2),
    frame(len(v2), 1, CBOR), EOF], single=True)

fl = clean(raw(6, CBOR, flags=0x01))
add("reserved flag set", fl + f1, [
    err("bad flags", 0, 6, len(CBOR), flags=1),
    garbage(2, len(fl) - 2),
    frame(len(fl), 1, CBOR), EOF], single=True)

big = clean(raw(7, b"", length=0x4001)[:16])  # a header alone
add("payload too large", big + f1, [
    err("payload too large", 0, 7, 0x4001),
    garbage(2, len(big) - 2),
    frame(len(big), 1, CBOR), EOF])

add("truncated at the end", f3[:-3], [UNEXPECTED_EOF])

long = clean(raw(8, b"\x11" * 100))
add("truncated, then a frame at the end", long[:40] + f1, [
    err("truncated", 0, 8, 100),
    garbage(2, 38),
    frame(40, 1, CBOR), EOF])

doc = {
    "description": "Coffer frame test vectors, written by gen_vectors.py; see protocol/FRAMING.md. "
                   "stream: the bytes read, in hex. frame: the fields of a stream holding one frame. "
                   "events: what successive FrameReader.Next calls return: a frame (offset, id, payload), "
                   "a recoverable error (its kind, offset of the magic or of the first skipped byte, "
                   "and id and declared length when the header checksum verified), "
                   "then EOF or unexpected EOF.",
    "vectors": vectors,
}
print(json.dumps(doc, indent=1))
