#!/usr/bin/python3
"""Writes the Coffer record store's format vectors: one file per case.

An implementation of the on-disk format of ../../FORMAT.md ("Keys", "Device
layout": the superblock, nodes, record slots, the anchor) independent of the
Go package: written from FORMAT.md's tables alone, with HKDF-SHA-256,
HMAC-SHA-256 and ChaCha20-Poly1305 from Python's `cryptography` and
XChaCha20-Poly1305 built here from its draft (HChaCha20 written out, then
ChaCha20-Poly1305). Nothing here imports or runs the Go code.

Each case is a file in the format of protocol/testdata/vectors (README.md
beside this script): a header of "name: value" lines with `expect:`
(`success`, `tampered` or `empty`), an empty line, and the bytes under test
in hex. Run from this folder with the system Python:

    /usr/bin/python3 gen_format.py

It removes the case folders, writes every case again and writes SHA256SUMS,
which TestFormatVectors checks so that an edited case fails it.
"""

import hashlib
import hmac
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "internal", "vectorfile"))
import casefiles  # noqa: E402  the case-file writer the generators share
GROUPS = ["keys", "superblock", "anchor", "node", "record"]
CASES = {}


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


def flip(b, i, bit=1):
    b = bytearray(b)
    b[i] ^= bit
    return bytes(b)


def u64(n):
    return struct.pack(">Q", n)


def case(group, name, expect, data, comment, **headers):
    path = f"{group}/{name}"
    assert group in GROUPS and path not in CASES, path
    lines = [f"expect: {expect}"]
    for k, v in headers.items():
        lines.append(f"{k.replace('_', '-')}: {v.hex() if isinstance(v, (bytes, bytearray)) else v}")
    lines.append(f"comment: {comment}")
    h = data.hex()
    body = "\n".join(h[i:i + 64] for i in range(0, len(h), 64))
    CASES[path] = "\n".join(lines) + "\n\n" + body + ("\n" if body else "")


# ---- Primitives (FORMAT.md, "Conventions") ---------------------------------

def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(ikm)


def mac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def seal(key, plaintext, ad):
    return ChaCha20Poly1305(key).encrypt(bytes(12), plaintext, ad)  # each block key seals once




def seal_x(key, nonce24, plaintext, ad):
    return ChaCha20Poly1305(casefiles.hchacha20(key, nonce24[:16])).encrypt(bytes(4) + nonce24[16:], plaintext, ad)


# ---- Fixed inputs -------------------------------------------------------------

SEALING = seq(32, 0x40)
OTHER_SEALING = seq(32, 0x41)
STORE_ID = seq(16, 0x10)
ANCHOR_KEY = hkdf(SEALING, b"", b"coffer/store anchor v1")
SUPER_KEY = hkdf(SEALING, b"", b"coffer/store superblock v1")
ID_KEY = hkdf(SEALING, STORE_ID, b"coffer/store id v1")


def hashed_id(user):
    return mac(ID_KEY, user)


def keys():
    user = b"alice"
    case("keys", "derived", "success", hashed_id(user),
         "The keys derived from a sealing key and a store id, and a user id's hashed id.",
         sealing_key=SEALING, store_id=STORE_ID, user_id=user, anchor_key=ANCHOR_KEY, superblock_key=SUPER_KEY,
         id_key=ID_KEY)


# ---- Superblock -----------------------------------------------------------------

def superblock_bytes(store_id=STORE_ID, sectors=8 * 1024, magic=b"CofferStore/v1\x00\x00", node_size=4096,
                     capacity=39, key=SUPER_KEY):
    head = magic + store_id + u64(sectors) + struct.pack(">II", node_size, capacity)
    assert len(head) == 48
    b = head + mac(key, head)
    return b + bytes(512 - len(b))


def superblock():
    good = superblock_bytes()
    common = dict(sealing_key=SEALING)
    case("superblock", "ok", "success", good, "A superblock for 1024 groups.", store_id=STORE_ID, sectors=8 * 1024,
         **common)
    case("superblock", "all-zero", "empty", bytes(512), "A zero sector: no superblock was ever written.", **common)
    case("superblock", "mac-flipped", "tampered", flip(good, 48), "The MAC's first byte flipped.", **common)
    case("superblock", "store-id-flipped", "tampered", flip(good, 16), "A store id byte flipped after the MAC.", **common)
    case("superblock", "sectors-flipped", "tampered", flip(good, 39), "The sector count altered after the MAC.",
         **common)
    case("superblock", "other-sealing-key", "tampered", superblock_bytes(key=hkdf(OTHER_SEALING, b"", b"coffer/store superblock v1")),
         "MACed under another device's sealing key.", **common)
    case("superblock", "wrong-magic", "tampered", superblock_bytes(magic=b"CofferStore/v2\x00\x00"),
         "Magic CofferStore/v2, with a valid MAC: a format this reader does not know.", **common)
    case("superblock", "wrong-magic-unmacced", "tampered", flip(good, 0), "The magic's first byte flipped.", **common)
    case("superblock", "node-size-8192", "tampered", superblock_bytes(node_size=8192), "Node size 8192, validly MACed.",
         **common)
    case("superblock", "capacity-40", "tampered", superblock_bytes(capacity=40), "Node capacity 40, validly MACed.",
         **common)
    case("superblock", "reserved-not-zero", "tampered", flip(good, 511), "The last reserved byte is not zero.",
         **common)


# ---- Anchor -------------------------------------------------------------------

def anchor_bytes(nonce=seq(24, 0x70), store_id=STORE_ID, sequence=42, epoch=3, counter=41, level=1, loc=16,
                 root_hash=seq(32, 0x90), root_key=seq(32, 0xB0), records=7, magic=b"CAN1", key=ANCHOR_KEY,
                 reserved1=bytes(3), reserved2=bytes(8), tail=bytes(84)):
    p = store_id + u64(sequence) + u64(epoch) + struct.pack(">I", counter) + bytes([level]) + reserved1 + u64(loc) + \
        root_hash + root_key + u64(records) + reserved2
    assert len(p) == 128
    b = magic + nonce + seal_x(key, nonce, p, b"coffer/store anchor v1")
    assert len(b) == 172
    return b + tail


def anchor():
    good = anchor_bytes()
    common = dict(sealing_key=SEALING)
    case("anchor", "ok", "success", good, "An anchor naming a level-1 root at sector 16, 7 records.",
         store_id=STORE_ID, sequence=42, epoch=3, counter=41, root_level=1, root_loc=16, root_hash=seq(32, 0x90),
         root_key=seq(32, 0xB0), records=7, **common)
    case("anchor", "all-zero", "empty", bytes(256), "A block of zeros: the anchor was never written.", **common)
    case("anchor", "wrong-magic", "tampered", anchor_bytes(magic=b"CAN2"), "Magic CAN2.", **common)
    case("anchor", "nonce-flipped", "tampered", flip(good, 4), "The nonce's first byte flipped.", **common)
    case("anchor", "ciphertext-flipped", "tampered", flip(good, 28), "The ciphertext's first byte flipped.", **common)
    case("anchor", "tag-flipped", "tampered", flip(good, 171), "The tag's last byte flipped.", **common)
    case("anchor", "tail-not-zero", "tampered", flip(good, 255), "The last of the 84 zero bytes is not zero.", **common)
    case("anchor", "other-sealing-key", "tampered", anchor_bytes(key=hkdf(OTHER_SEALING, b"", b"coffer/store anchor v1")),
         "Sealed under another device's sealing key.", **common)
    case("anchor", "level-25", "tampered", anchor_bytes(level=25), "A root level of 25 (at most 24), validly sealed.",
         **common)
    case("anchor", "reserved-after-level", "tampered", anchor_bytes(reserved1=b"\x00\x01\x00"),
         "Payload bytes 37 to 39 not zero, validly sealed.", **common)
    case("anchor", "reserved-at-end", "tampered", anchor_bytes(reserved2=b"\x00" * 7 + b"\x01"),
         "Payload bytes 120 to 127 not zero, validly sealed.", **common)


# ---- Nodes ----------------------------------------------------------------------

NODE_AD = b"coffer/store node v1"


def node_plain(kind, level, entries, count=None, reserved=bytes(4), tail_byte=0):
    p = bytes([kind, level]) + struct.pack(">H", len(entries) if count is None else count) + reserved
    for key, loc, h, k in entries:
        p += key + u64(loc) + h + k
    p += bytes(4080 - len(p))
    if tail_byte:
        p = p[:-1] + bytes([tail_byte])
    return p


def node_bytes(plain, loc, block_key, store_id=STORE_ID):
    b = seal(block_key, plain, NODE_AD + store_id + u64(loc))
    assert len(b) == 4096
    return b


def node():
    bk = seq(32, 0xC0)
    leaf_entries = [(hashed_id(u), 24 + i, seq(32, 0x20 + i), seq(32, 0x50 + i))
                    for i, u in enumerate([b"alice", b"bob", b"carol"])]
    leaf_entries.sort()
    leaf = node_plain(1, 0, leaf_entries)
    internal_entries = [(bytes(32), 16, seq(32, 1), seq(32, 2)), (b"\x80" + bytes(31), 32, seq(32, 3), seq(32, 4))]
    internal = node_plain(2, 1, internal_entries)
    empty = node_plain(1, 0, [])

    def nc(name, expect, data, comment, plain=None, loc=8, level=0, key=bk, store_id=STORE_ID, h=None):
        headers = dict(block_key=key, store_id=store_id, loc=loc, level=level,
                       hash=h if h is not None else hashlib.sha256(data).digest())
        if plain is not None:
            headers["plaintext"] = plain
        case("node", name, expect, data, comment, **headers)

    nc("leaf", "success", node_bytes(leaf, 8, bk), "A leaf of three records at sector 8.", plain=leaf)
    nc("internal", "success", node_bytes(internal, 40, bk), "An internal node of two children at sector 40.",
       plain=internal, loc=40, level=1)
    nc("empty-leaf", "success", node_bytes(empty, 8, bk), "The empty root of a new store.", plain=empty)
    good = node_bytes(leaf, 8, bk)
    nc("hash-mismatch", "tampered", flip(good, 100), "A byte flipped; the parent's hash is of the original.",
       h=hashlib.sha256(good).digest())
    nc("ciphertext-flipped", "tampered", flip(good, 100), "A byte flipped and the hash made to match: the tag fails.")
    nc("other-loc", "tampered", node_bytes(leaf, 16, bk), "Sealed for sector 16, read at sector 8.")
    nc("other-store", "tampered", node_bytes(leaf, 8, bk, seq(16, 0x11)), "Sealed for another store id.")
    nc("other-key", "tampered", node_bytes(leaf, 8, seq(32, 0xC1)), "Sealed under another block key.")
    nc("level-mismatch", "tampered", node_bytes(internal, 40, bk), "A level-1 node where the parent expects level 2.",
       loc=40, level=2)
    swapped = node_plain(1, 0, [leaf_entries[1], leaf_entries[0], leaf_entries[2]])
    nc("keys-out-of-order", "tampered", node_bytes(swapped, 8, bk), "Entry keys not increasing, validly sealed.")
    dup = node_plain(1, 0, [leaf_entries[0], leaf_entries[0]])
    nc("keys-repeated", "tampered", node_bytes(dup, 8, bk), "One key twice, validly sealed.")
    nc("count-40", "tampered", node_bytes(node_plain(1, 0, leaf_entries, count=40), 8, bk),
       "A count of 40 (at most 39), validly sealed.")
    nc("leaf-at-level-1", "tampered", node_bytes(node_plain(1, 1, leaf_entries), 8, bk),
       "Kind leaf with level 1, validly sealed.", level=1)
    nc("internal-at-level-0", "tampered", node_bytes(node_plain(2, 0, internal_entries), 8, bk),
       "Kind internal with level 0, validly sealed.")
    nc("kind-3", "tampered", node_bytes(node_plain(3, 0, leaf_entries), 8, bk), "Kind 3, validly sealed.")
    nc("level-25", "tampered", node_bytes(node_plain(2, 25, internal_entries), 8, bk),
       "Level 25 (at most 24), validly sealed.", level=25)
    nc("reserved-not-zero", "tampered", node_bytes(node_plain(1, 0, leaf_entries, reserved=b"\x00\x00\x00\x01"), 8, bk),
       "Header bytes 4 to 7 not zero, validly sealed.")
    nc("tail-not-zero", "tampered", node_bytes(node_plain(1, 0, leaf_entries, tail_byte=1), 8, bk),
       "The last plaintext byte after the entries not zero, validly sealed.")


# ---- Record slots ---------------------------------------------------------------

REC_AD = b"coffer/store record v1"


def record_bytes(record, loc, hid, version, block_key, store_id=STORE_ID, magic=b"CRS1", length=None, pad_byte=0,
                 tail=bytes(42)):
    p = struct.pack(">H", len(record) if length is None else length) + record
    p += bytes(442 - len(p))
    if pad_byte:
        p = p[:-1] + bytes([pad_byte])
    sealed = seal(block_key, p, REC_AD + store_id + u64(loc) + hid + u64(version))
    b = magic + u64(version) + sealed
    assert len(b) == 470
    return b + tail


def record():
    bk, hid, rec = seq(32, 0xD0), hashed_id(b"alice"), b"an opaque record of the vault"

    def rc(name, expect, data, comment, loc=24, h=hid, key=bk, hash_=None, **out):
        case("record", name, expect, data, comment, block_key=key, store_id=STORE_ID, loc=loc, hashed_id=h,
             hash=hash_ if hash_ is not None else hashlib.sha256(data).digest(), **out)

    good = record_bytes(rec, 24, hid, 42, bk)
    rc("ok", "success", good, "A record written by commit 42 in sector 24.", record=rec, version=42)
    full = b"\xaa" * 440
    rc("largest", "success", record_bytes(full, 24, hid, 1, bk), "A record of 440 bytes, the most allowed.",
       record=full, version=1)
    rc("empty", "success", record_bytes(b"", 24, hid, 7, bk), "A record of 0 bytes.", record=b"", version=7)
    rc("hash-mismatch", "tampered", flip(good, 100), "A byte flipped; the leaf's hash is of the original.",
       hash_=hashlib.sha256(good).digest())
    rc("ciphertext-flipped", "tampered", flip(good, 100), "A byte flipped and the hash made to match.")
    rc("other-user", "tampered", good, "Served for another user's hashed id.", h=hashed_id(b"bob"))
    rc("other-slot", "tampered", good, "Copied to sector 25.", loc=25)
    older = bytearray(good)
    older[4:12] = u64(41)
    rc("version-altered", "tampered", bytes(older), "The version field changed from 42 to 41.")
    rc("wrong-magic", "tampered", record_bytes(rec, 24, hid, 42, bk, magic=b"CRS2"), "Magic CRS2.")
    rc("tail-not-zero", "tampered", record_bytes(rec, 24, hid, 42, bk, tail=bytes(41) + b"\x01"),
       "The last of the 42 zero bytes is not zero.")
    rc("length-441", "tampered", record_bytes(b"\xaa" * 440, 24, hid, 42, bk, length=441),
       "A length of 441 (at most 440), validly sealed.")
    rc("padding-not-zero", "tampered", record_bytes(rec, 24, hid, 42, bk, pad_byte=1),
       "The last padding byte not zero, validly sealed.")


def main():
    keys()
    superblock()
    anchor()
    node()
    record()
    casefiles.write(HERE, GROUPS, CASES)


if __name__ == "__main__":
    main()
