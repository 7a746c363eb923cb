#!/usr/bin/python3
"""Writes the Coffer protocol test vectors: one file per case (README.md).

This generator is independent of the Go code under test. Messages are built
from the CDDL in ../../SPEC.md with Python's cbor2 (canonical=True, which for
Coffer's small integer keys is RFC 8949 core deterministic encoding);
signatures are Ed25519 from `cryptography`; the registration channel's HPKE
and RFC 9458 key schedule come from ../registration/gen_vectors.py (RFC 9180
written out by hand, X25519 and ChaCha20-Poly1305 from `cryptography`); the
session and key-wrap schedules are written out here from SPEC.md with
`cryptography`'s HKDF and AEADs. The malformed cases are built by hand,
byte by byte, each breaking one rule of SPEC.md, "Conventions".

Nothing here imports or runs the Go code, and no Go test rewrites these
files: a change to a case is a change to the protocol. Run from this folder,
with the system Python that has cbor2 and cryptography:

    /usr/bin/python3 gen_vectors.py

It removes the case folders, writes every case again and writes SHA256SUMS,
which TestProtocolVectors checks so that an edited file fails the test.
"""

import hashlib
import importlib.util
import os
import struct
import sys

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "internal", "vectorfile"))
import casefiles  # noqa: E402  the case-file writer the generators share
GROUPS = ["messages", "bodies", "signed", "registration", "session", "wrap", "hashes"]

# The registration channel's RFC 9180 / RFC 9458 implementation, shared with
# the registration run's generator (also independent of the Go code).
_spec = importlib.util.spec_from_file_location("regvec", os.path.join(HERE, "..", "registration", "gen_vectors.py"))
regvec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regvec)


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


def enc(v):
    return cbor2.dumps(v, canonical=True)


def flip(b, i, bit=1):
    b = bytearray(b)
    b[i] ^= bit
    return bytes(b)


CASES = {}


def case(group, name, expect, data, comment, **headers):
    """Records one case: group/name, the expected outcome, the bytes under
    test, a comment, and named inputs (bytes as hex, ints and str as is)."""
    assert group in GROUPS, group
    path = f"{group}/{name}"
    assert path not in CASES, path
    lines = [f"expect: {expect}"]
    for k, v in headers.items():
        k = k.replace("_", "-")
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).hex()
        lines.append(f"{k}: {v}")
    for c in comment.strip().split("\n"):
        lines.append(f"comment: {c.strip()}")
    h = data.hex()
    body = "\n".join(h[i:i + 64] for i in range(0, len(h), 64))
    CASES[path] = "\n".join(lines) + "\n\n" + body + ("\n" if body else "")


# ---- Fixed keys and values -------------------------------------------------

SIGNING = Ed25519PrivateKey.from_private_bytes(seq(32, 0x10))  # the vault's
PROVISIONING = Ed25519PrivateKey.from_private_bytes(seq(32, 0x20))
OTHER = Ed25519PrivateKey.from_private_bytes(seq(32, 0xE0))


def pub(k):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(key, context, body):
    return key.sign(context + b"\x00" + body)


def envelope(typ, body, version=1):
    return enc({1: version, 2: typ, 3: body})


def total(n):
    return struct.pack(">Q", n)


def receipt_map(kind, user_id, generation, limit, tries_left, failed=0, store_sequence=0, record_hash=None,
                request_hash=None, attempts=0, successes=0, revivable=0):
    m = {1: kind, 2: user_id, 3: generation, 4: limit, 5: tries_left, 6: failed, 7: store_sequence,
         10: total(attempts), 11: total(successes), 12: total(revivable)}
    if record_hash is not None:
        m[8] = record_hash
    if request_hash is not None:
        m[9] = request_hash
    return m


def receipt_body(m):
    """Pads a receipt to exactly 300 bytes (SPEC.md, "Receipts")."""
    m = dict(m)
    m[15] = b""
    n = 300 - len(enc(m)) - 1  # a padding of 24..255 bytes has a two-byte header
    assert 24 <= n <= 255, n
    m[15] = bytes(n)
    b = enc(m)
    assert len(b) == 300
    return b


KE1 = seq(96, 1)
RECEIPT_MAP = receipt_map(2, b"alice", 0x8000000000000001, 10, 9, store_sequence=42,
                          request_hash=hashlib.sha256(KE1).digest(), attempts=12, successes=3)
RECEIPT_BODY = receipt_body(RECEIPT_MAP)
RECEIPT = {1: RECEIPT_BODY, 2: sign(SIGNING, b"coffer/v1 receipt", RECEIPT_BODY)}

IDENTITY_MAP = {1: 1, 2: pub(SIGNING), 3: seq(32, 0x30), 4: seq(32, 0x40), 5: seq(32, 0x50), 6: 10, 7: True,
                8: "example"}
IDENTITY_BODY = enc(IDENTITY_MAP)
SIGNED_IDENTITY = {1: IDENTITY_BODY, 2: sign(PROVISIONING, b"coffer/v1 identity", IDENTITY_BODY)}

STATUS_NONCE = seq(32, 0xA0)
STATUS_MAP = {1: 1, 2: 42, 3: 43, 4: True, 5: 1, 6: 2, 7: STATUS_NONCE, 8: IDENTITY_MAP[5], 9: 1000, 10: 12000000}
STATUS_BODY = enc(STATUS_MAP)
STATUS_REPLY = {1: STATUS_BODY, 2: sign(SIGNING, b"coffer/v1 status", STATUS_BODY)}


def user_status_map(user_id, generation, limit, tries_left, failed, store_sequence=0, attempts=0, successes=0,
                    revivable=0, nonce=STATUS_NONCE):
    return {1: 1, 2: user_id, 3: nonce, 4: generation, 5: limit, 6: tries_left, 7: failed, 8: store_sequence,
            9: total(attempts), 10: total(successes), 11: total(revivable)}


def user_status_body(m, size=256):
    """Pads a user status to exactly 256 bytes (SPEC.md, "User status")."""
    m = dict(m)
    m[15] = b""
    n = size - len(enc(m)) - 1  # a padding of 24..255 bytes has a two-byte header
    assert 24 <= n <= 255, n
    m[15] = bytes(n)
    b = enc(m)
    assert len(b) == size
    return b


# Alice after one wrong password on a record with limit 10 (the receipt
# above): 9 tries left, a counter of 1, the receipt's totals.
USER_STATUS_MAP = user_status_map(b"alice", 0x8000000000000001, 10, 9, 1, store_sequence=42, attempts=12, successes=3)
USER_STATUS_BODY = user_status_body(USER_STATUS_MAP)
USER_STATUS_REPLY = {1: USER_STATUS_BODY, 2: sign(SIGNING, b"coffer/v1 user status", USER_STATUS_BODY)}


# ---- messages: envelopes, decoded as the message they name -----------------

def messages():
    ok = {
        "identity-request": (1, {}),
        "identity-reply": (1, SIGNED_IDENTITY),
        "register-start": (2, {1: b"alice", 2: seq(32, 1), 3: seq(70, 2)}),
        "register-start-reply": (2, {1: seq(16, 3), 2: seq(100, 4), 3: seq(32, 0x20)}),
        "register-finish": (3, {1: seq(16, 3), 2: seq(300, 5)}),
        "register-finish-reply": (3, {1: seq(120, 11)}),
        "login-start": (4, {1: b"alice", 2: KE1}),
        "login-start-reply": (4, {1: seq(16, 6), 2: seq(320, 7), 3: RECEIPT}),
        "login-finish": (5, {1: seq(16, 6), 2: seq(64, 8)}),
        "login-finish-reply": (5, {1: seq(200, 12)}),
        "session": (6, {1: seq(16, 6), 2: 1, 3: seq(40, 9)}),
        "session-reply": (6, {1: 1, 2: seq(200, 10)}),
        "status-request": (7, {1: STATUS_NONCE}),
        "status-reply": (7, STATUS_REPLY),
        "unsigned-identity-request": (8, {}),
        "unsigned-identity-reply": (8, IDENTITY_MAP),
        "install-identity": (9, SIGNED_IDENTITY),
        "install-identity-reply": (9, {}),
        "user-status-request": (10, {1: b"alice", 2: STATUS_NONCE}),
        "user-status-reply": (10, USER_STATUS_REPLY),
        "error": (0, {1: 8, 2: "too many operations in flight"}),
    }
    for name, (typ, body) in ok.items():
        case("messages", name, "success", envelope(typ, body),
             f"A {name} message (type {typ}) in core deterministic encoding.", message=name)
    case("messages", "error-empty-message", "success", envelope(0, {1: 11, 2: ""}),
         "An error reply whose message is the empty text string (not absent).", message="error")
    case("messages", "session-sequence-large", "success", envelope(6, {1: seq(16, 6), 2: 2**64 - 1, 3: seq(40, 9)}),
         "A session command with the largest sequence number, 2^64-1.", message="session")

    # The hand-made malformed cases, all around one login-start.
    user, ke1 = b"alice", KE1
    body = bytes([0xA2, 0x01, 0x45]) + user + bytes([0x02, 0x58, 96]) + ke1
    env_head = bytes([0xA3, 0x01, 0x01, 0x02, 0x04, 0x03])
    good = env_head + body
    assert good == envelope(4, {1: user, 2: ke1})

    def bad(name, data, comment, expect="malformed", message="login-start"):
        case("messages", name, expect, data, comment, message=message, rule=RULES[name])

    # Not the core deterministic encoding, though the values are valid.
    bad("version-one-byte-argument", bytes([0xA3, 0x01, 0x18, 0x01, 0x02, 0x04, 0x03]) + body,
        "The version 1 in a one-byte-argument form (18 01): not the shortest.")
    bad("type-two-byte-int", bytes([0xA3, 0x01, 0x01, 0x02, 0x19, 0x00, 0x04, 0x03]) + body,
        "The type 4 in a two-byte form (19 00 04).")
    bad("map-key-long-int", bytes([0xA3, 0x18, 0x01, 0x01, 0x02, 0x04, 0x03]) + body,
        "The envelope's map key 1 in a one-byte-argument form.")
    bad("envelope-keys-unsorted", bytes([0xA3, 0x02, 0x04, 0x01, 0x01, 0x03]) + body,
        "The envelope's keys in the order 2, 1, 3.")
    bad("envelope-map-length-long", bytes([0xB8, 0x03, 0x01, 0x01, 0x02, 0x04, 0x03]) + body,
        "The envelope's map length 3 in a one-byte-argument form (b8 03).")
    bad("body-keys-unsorted", env_head + bytes([0xA2, 0x02, 0x58, 96]) + ke1 + bytes([0x01, 0x45]) + user,
        "The body's keys in the order 2, 1.")
    bad("user-id-length-long", env_head + bytes([0xA2, 0x01, 0x58, 0x05]) + user + bytes([0x02, 0x58, 96]) + ke1,
        "The user id's length 5 in a one-byte-argument form (58 05).")
    bad("ke1-length-two-byte", env_head + bytes([0xA2, 0x01, 0x45]) + user + bytes([0x02, 0x59, 0x00, 96]) + ke1,
        "KE1's length 96 in a two-byte form (59 00 60).")
    bad("version-simple-value", bytes([0xA3, 0x01, 0xE1, 0x02, 0x04, 0x03]) + body,
        "The version as simple value 1 (e1), not the integer 1.")
    bad("type-float", bytes([0xA3, 0x01, 0x01, 0x02, 0xF9, 0x44, 0x00, 0x03]) + body,
        "The type as the half-precision float 4.0 (f9 44 00).")
    bad("version-true", bytes([0xA3, 0x01, 0xF5, 0x02, 0x04, 0x03]) + body,
        "The version as the boolean true.")
    bad("null-for-absent-field", bytes([0xA3, 0x01, 0x01, 0x02, 0x00, 0x03, 0xA2, 0x01, 0x0B, 0x02, 0xF6]),
        "An error reply {1: 11, 2: null}: null would otherwise read as an empty message.", message="error")
    bad("undefined-for-field", bytes([0xA3, 0x01, 0x01, 0x02, 0x00, 0x03, 0xA2, 0x01, 0x0B, 0x02, 0xF7]),
        "An error reply {1: 11, 2: undefined}.", message="error")
    bad("indefinite-length-map", env_head + bytes([0xBF, 0x01, 0x45]) + user + bytes([0x02, 0x58, 96]) + ke1 + b"\xff",
        "The body as an indefinite-length map (bf ... ff).")
    bad("indefinite-length-bytes", env_head + bytes([0xA2, 0x01, 0x45]) + user + bytes([0x02, 0x5F, 0x58, 48]) + ke1[:48] +
        bytes([0x58, 48]) + ke1[48:] + b"\xff",
        "KE1 as an indefinite-length byte string of two 48-byte chunks (5f ... ff).")
    bad("indefinite-length-envelope", bytes([0xBF, 0x01, 0x01, 0x02, 0x04, 0x03]) + body + b"\xff",
        "The envelope as an indefinite-length map.")
    # Strictness beyond the encoding.
    bad("duplicate-key", env_head + bytes([0xA3, 0x01, 0x45]) + user + bytes([0x01, 0x45]) + b"alicf" +
        bytes([0x02, 0x58, 96]) + ke1, "The body has key 1 twice (with two different user ids).")
    bad("duplicate-key-same-value", env_head + bytes([0xA3, 0x01, 0x45]) + user + bytes([0x01, 0x45]) + user +
        bytes([0x02, 0x58, 96]) + ke1, "The body has key 1 twice, with the same user id.")
    bad("unknown-field", envelope(4, {1: user, 2: ke1, 3: 0}), "The body has an unknown key 3.")
    bad("unknown-envelope-field", enc({1: 1, 2: 4, 3: {1: user, 2: ke1}, 4: 0}), "The envelope has an unknown key 4.")
    bad("tag", env_head + bytes([0xD8, 0x18]) + enc({1: user, 2: ke1}), "The body wrapped in tag 24.")
    bad("tagged-envelope", bytes([0xD9, 0xD9, 0xF7]) + good, "The envelope behind the self-describe tag 55799.")
    bad("trailing-byte", good + b"\x00", "One byte (00) after the envelope.")
    bad("trailing-item", good + enc({}), "A second item (an empty map) after the envelope.")
    bad("short-ke1", envelope(4, {1: user, 2: ke1[:95]}), "KE1 of 95 bytes, not 96.")
    bad("long-ke1", envelope(4, {1: user, 2: ke1 + b"\x00"}), "KE1 of 97 bytes, not 96.")
    bad("missing-ke1", envelope(4, {1: user}), "No KE1.")
    bad("empty-body", envelope(4, {}), "An empty body for a login-start.")
    bad("empty-user-id", envelope(4, {1: b"", 2: ke1}), "A user id of 0 bytes (bstr[1..64]).")
    bad("long-user-id", envelope(4, {1: b"u" * 65, 2: ke1}), "A user id of 65 bytes (bstr[1..64]).")
    case("messages", "user-id-64-bytes", "success", envelope(4, {1: b"u" * 64, 2: ke1}),
         "A user id of 64 bytes, the most allowed.", message="login-start")
    bad("text-for-bytes", envelope(4, {1: "alice", 2: ke1}), "The user id as a text string.")
    bad("int-for-bytes", envelope(4, {1: 7, 2: ke1}), "The user id as an integer.")
    bad("bytes-for-int", enc({1: 1, 2: b"\x04", 3: {1: user, 2: ke1}}), "The envelope's type as a byte string.")
    bad("negative-for-uint", enc({1: 1, 2: -4, 3: {1: user, 2: ke1}}), "The envelope's type as -4.")
    bad("negative-key", envelope(4, {-1: user, 2: ke1}), "The body's key -1 for 1.")
    bad("text-key", envelope(4, {"1": user, 2: ke1}), "The body's key \"1\" (text) for 1.")
    bad("array-not-map", envelope(4, [user, ke1]), "The body as an array.")
    bad("envelope-array", enc([1, 4, {1: user, 2: ke1}]), "The envelope as an array.")
    bad("body-as-bytes", enc({1: 1, 2: 4, 3: enc({1: user, 2: ke1})}),
        "The body as a byte string holding the encoded map, not the map.")
    bad("truncated", good[:-3], "The last three bytes cut off.")
    bad("empty", b"", "Nothing at all.")
    bad("deep-nesting", env_head + bytes([0xA2, 0x01, 0x45]) + user + bytes([0x02]) + b"\x81" * 100 + b"\x00",
        "KE1 replaced by 100 nested one-element arrays (nesting is at most 8).")
    bad("huge-byte-count", env_head + bytes([0xA1, 0x01, 0x5B]) + b"\xff" * 8,
        "A byte string that claims 2^64-1 bytes.")
    bad("oversize", envelope(2, {1: user, 2: seq(32, 1), 3: bytes(16384)}),
        "A register-start of more than 16 KiB (16384 + 55 bytes): over the message limit.", message="register-start")
    bad("sealed-too-long", envelope(2, {1: user, 2: seq(32, 1), 3: bytes(2049)}),
        "A register-start whose sealed field is 2049 bytes, over the 2048 allowed.", message="register-start")
    bad("wrong-type", envelope(7, {1: user, 2: ke1}), "A login-start body under type 7 (status).")
    bad("unknown-type", envelope(12, {1: user, 2: ke1}), "Type 12: no such message.")
    bad("version-2", envelope(4, {1: user, 2: ke1}, version=2), "Version 2.", expect="unsupported-version")
    bad("version-0", envelope(4, {1: user, 2: ke1}, version=0), "Version 0.", expect="unsupported-version")
    bad("error-without-message", envelope(0, {1: 8}),
        "An error reply without its message (the field is required; it may be empty).", message="error")
    bad("error-code-0", envelope(0, {1: 0, 2: ""}), "An error reply with code 0.", message="error")
    bad("error-message-too-long", envelope(0, {1: 1, 2: "x" * 257}), "An error message of 257 bytes (at most 256).",
        message="error")
    bad("error-invalid-utf8", bytes([0xA3, 0x01, 0x01, 0x02, 0x00, 0x03, 0xA2, 0x01, 0x01, 0x02, 0x62, 0xC3, 0x28]),
        "An error message that is not UTF-8 (c3 28).", message="error")
    bad("session-sequence-0", envelope(6, {1: seq(16, 6), 2: 0, 3: seq(40, 9)}),
        "A session command with sequence 0 (reserved for the login reply).", message="session")
    bad("session-sequence-bignum", envelope(6, {1: seq(16, 6), 2: 2**64, 3: seq(40, 9)}),
        "A session sequence of 2^64: a bignum (tag 2), over 64 bits.", message="session")
    bad("short-handle", envelope(5, {1: seq(15, 6), 2: seq(64, 8)}), "A login-finish with a 15-byte handle.",
        message="login-finish")
    bad("status-nonce-31", envelope(7, {1: STATUS_NONCE[:31]}), "A status request with a 31-byte nonce.",
        message="status-request")
    bad("identity-request-not-empty", envelope(1, {1: 0}), "An identity request whose body is not empty.",
        message="identity-request")
    bad("user-status-nonce-31", envelope(10, {1: user, 2: STATUS_NONCE[:31]}),
        "A user-status request with a 31-byte nonce.", message="user-status-request")
    bad("user-status-without-user-id", envelope(10, {2: STATUS_NONCE}),
        "A user-status request without the user id cofferd routes it by.", message="user-status-request")
    bad("user-status-reply-body-255", envelope(10, {1: USER_STATUS_BODY[:-1], 2: USER_STATUS_REPLY[2]}),
        "A user-status reply whose body is 255 bytes (every one is 256).", message="user-status-reply")


# The rule of SPEC.md, "Conventions", that each malformed message breaks.
# "encoding": not the core deterministic encoding (shortest forms, sorted
# keys, definite lengths, nothing after the item), so an independent check of
# RFC 8949 section 4.2.1 rejects it; the others are kinds of item no message
# holds, or values the message's schema refuses.
RULES = {}
for _n in ["version-one-byte-argument", "type-two-byte-int", "map-key-long-int", "envelope-keys-unsorted",
           "envelope-map-length-long", "body-keys-unsorted", "user-id-length-long", "ke1-length-two-byte",
           "indefinite-length-map", "indefinite-length-bytes", "indefinite-length-envelope", "duplicate-key",
           "duplicate-key-same-value", "trailing-byte", "trailing-item", "truncated", "empty",
           "huge-byte-count"]:
    RULES[_n] = "encoding"
for _n in ["version-simple-value", "type-float", "version-true", "null-for-absent-field", "undefined-for-field",
           "tag", "tagged-envelope", "session-sequence-bignum"]:
    RULES[_n] = "item-kind"
for _n in ["unknown-field", "unknown-envelope-field", "negative-key", "text-key"]:
    RULES[_n] = "unknown-key"
for _n in ["short-ke1", "long-ke1", "empty-user-id", "long-user-id", "short-handle", "status-nonce-31",
           "sealed-too-long", "user-status-nonce-31", "user-status-reply-body-255"]:
    RULES[_n] = "length"
for _n in ["text-for-bytes", "int-for-bytes", "bytes-for-int", "negative-for-uint", "array-not-map",
           "envelope-array", "body-as-bytes", "error-invalid-utf8"]:
    RULES[_n] = "type"
for _n in ["missing-ke1", "empty-body", "identity-request-not-empty", "error-without-message",
           "user-status-without-user-id"]:
    RULES[_n] = "missing-or-extra"
for _n in ["wrong-type", "unknown-type", "error-code-0", "error-message-too-long", "session-sequence-0"]:
    RULES[_n] = "value"
RULES["version-2"] = RULES["version-0"] = "version"
RULES["deep-nesting"] = "nesting"
RULES["oversize"] = "size"


# ---- bodies: signed or sealed contents, decoded as the structure they name -

def bodies():
    case("bodies", "receipt", "success", RECEIPT_BODY, "An attempt receipt, padded to 300 bytes.", body="receipt")
    locked = receipt_body(receipt_map(3, b"someone", 1 << 63, 30, 0, attempts=300, revivable=29999))
    case("bodies", "receipt-locked-revivable", "success", locked,
         "A locked receipt that may still be revived for 29999 ms.", body="receipt")
    full = receipt_body(receipt_map(5, b"u" * 64, 2**64 - 1, 100, 99, failed=2**32 - 1, store_sequence=2**64 - 1,
                                    record_hash=bytes(32), request_hash=bytes(32), attempts=2**64 - 1,
                                    successes=2**64 - 1))
    case("bodies", "receipt-largest", "success", full, "A receipt with every field at its largest.", body="receipt")

    padded = bytearray(RECEIPT_BODY)
    padded[-1] = 1
    case("bodies", "receipt-padding-not-zero", "malformed", bytes(padded), "The padding's last byte is 01.",
         body="receipt")
    m = dict(RECEIPT_MAP)
    m[10] = b"\x00\x00\x00\x0c"
    case("bodies", "receipt-total-4-bytes", "malformed", receipt_body(m), "attempts_total as a 4-byte string.",
         body="receipt")
    m = dict(RECEIPT_MAP)
    m[10] = 12
    case("bodies", "receipt-total-as-int", "malformed", receipt_body(m), "attempts_total as an integer.",
         body="receipt")
    case("bodies", "receipt-tries-above-limit", "malformed",
         receipt_body(receipt_map(2, b"u", 1 << 63, 3, 4)), "4 tries left of a limit of 3.", body="receipt")
    case("bodies", "receipt-attempt-revivable", "malformed",
         receipt_body(receipt_map(2, b"u", 1 << 63, 3, 2, revivable=5)), "An attempt receipt that claims to be revivable.",
         body="receipt")
    case("bodies", "receipt-kind-7", "malformed", receipt_body(receipt_map(7, b"u", 1 << 63, 3, 2)),
         "Receipt kind 7: no such kind.", body="receipt")
    case("bodies", "receipt-limit-101", "malformed", receipt_body(receipt_map(2, b"u", 1 << 63, 101, 2)),
         "A limit of 101 (at most 100).", body="receipt")
    case("bodies", "receipt-record-hash-31", "malformed",
         receipt_body(receipt_map(1, b"u", 1 << 63, 3, 3, record_hash=bytes(31))), "A 31-byte record hash.",
         body="receipt")

    case("bodies", "status", "success", STATUS_BODY, "A status.", body="status")
    case("bodies", "status-version-2", "malformed", enc({**STATUS_MAP, 1: 2}), "A status of version 2.", body="status")
    case("bodies", "status-without-pending-logins", "malformed", enc({k: v for k, v in STATUS_MAP.items() if k != 5}),
         "A status without its field 5 (pending_logins): every field of a Status is required.", body="status")
    case("bodies", "status-without-firmware-hash", "malformed", enc({k: v for k, v in STATUS_MAP.items() if k != 8}),
         "A status without its field 8 (firmware_hash), as firmware from before it was signed in every status sends.",
         body="status")
    case("bodies", "status-firmware-hash-31", "malformed", enc({**STATUS_MAP, 8: STATUS_MAP[8][:31]}),
         "A 31-byte firmware hash.", body="status")
    case("bodies", "status-without-record-capacity", "malformed", enc({k: v for k, v in STATUS_MAP.items() if k != 10}),
         "A status without its field 10 (record_capacity), as firmware from before it was signed sends.", body="status")
    case("bodies", "status-without-occupancy", "malformed", enc({k: v for k, v in STATUS_MAP.items() if k not in (9, 10)}),
         "A status without records and record_capacity (fields 9 and 10), as firmware from before they were signed sends.",
         body="status")
    case("bodies", "status-records-above-capacity", "malformed", enc({**STATUS_MAP, 9: 12000001}),
         "A status holding more records than its capacity.", body="status")
    case("bodies", "status-full", "success", enc({**STATUS_MAP, 9: 12000000}),
         "A status of a full store: as many records as its capacity.", body="status")
    case("bodies", "status-no-store", "success", enc({k: v for k, v in STATUS_MAP.items() if k not in (9, 10)} | {9: 0, 10: 0}),
         "A status of a vault without a record store of its own: 0 records of 0.", body="status")
    case("bodies", "user-status", "success", USER_STATUS_BODY,
         "A user status after one wrong password (limit 10), padded to 256 bytes.", body="user-status")
    case("bodies", "user-status-locked-revivable", "success",
         user_status_body(user_status_map(b"someone", 1 << 63, 30, 0, 30, attempts=300, revivable=29999)),
         "A locked record whose final login may still revive it for 29999 ms.", body="user-status")
    case("bodies", "user-status-largest", "success",
         user_status_body(user_status_map(b"u" * 64, 2**64 - 1, 100, 0, 2**32 - 1, store_sequence=2**64 - 1,
                                          attempts=2**64 - 1, successes=2**64 - 1, revivable=2**64 - 1)),
         "A user status with every field at its largest (the counter, as in receipts, at 2^32-1: a uint "
         "on the device's 32-bit ARM).", body="user-status")
    padded = bytearray(USER_STATUS_BODY)
    padded[-1] = 1
    case("bodies", "user-status-padding-not-zero", "malformed", bytes(padded), "The padding's last byte is 01.",
         body="user-status")
    case("bodies", "user-status-tries-above-limit", "malformed",
         user_status_body(user_status_map(b"u", 1 << 63, 3, 4, 0)), "4 tries left of a limit of 3.", body="user-status")
    case("bodies", "user-status-tries-not-counter", "malformed",
         user_status_body(user_status_map(b"u", 1 << 63, 10, 9, 2)),
         "9 tries left of 10 with a counter of 2: tries_left must be limit - counter.", body="user-status")
    case("bodies", "user-status-revivable-with-tries", "malformed",
         user_status_body(user_status_map(b"u", 1 << 63, 3, 1, 2, revivable=5)),
         "A record with a try left that claims to be revivable.", body="user-status")
    case("bodies", "user-status-version-2", "malformed", user_status_body({**USER_STATUS_MAP, 1: 2}),
         "A user status of version 2.", body="user-status")
    m = dict(USER_STATUS_MAP)
    m[9] = 12
    case("bodies", "user-status-total-as-int", "malformed", user_status_body(m), "attempts_total as an integer.",
         body="user-status")
    case("bodies", "identity", "success", IDENTITY_BODY, "An identity bundle's body.", body="identity")
    case("bodies", "identity-name-65", "malformed", enc({**IDENTITY_MAP, 8: "n" * 65}),
         "An identity name of 65 bytes (at most 64).", body="identity")
    case("bodies", "identity-without-insecure", "malformed", enc({k: v for k, v in IDENTITY_MAP.items() if k != 7}),
         "An identity without its field 7 (insecure): every field of an Identity is required.", body="identity")
    case("bodies", "identity-max-limit-0", "malformed", enc({**IDENTITY_MAP, 6: 0}), "max_limit 0 (1..100).",
         body="identity")
    case("bodies", "identity-insecure-as-int", "malformed", enc({**IDENTITY_MAP, 7: 1}),
         "insecure as the integer 1, not a boolean.", body="identity")

    cmds = {
        "command-release": ({1: 1, 6: seq(32, 0x33)}, "success", "release, with the login's confirmation."),
        "command-delete": ({1: 4}, "success", "delete."),
        "command-close": ({1: 5}, "success", "close."),
        "command-change-start": ({1: 2, 2: seq(32, 1)}, "success", "change-start with a blinded element."),
        "command-change-finish": ({1: 3, 3: seq(192, 2), 4: seq(72, 3), 5: 5}, "success",
                                  "change-finish with a record, a wrapped key and a limit."),
        "command-0": ({1: 0}, "malformed", "Command 0: no such command."),
        "command-99": ({1: 99}, "malformed", "Command 99: no such command."),
        "command-release-with-limit": ({1: 1, 5: 3}, "malformed", "release carries a limit."),
        "command-release-with-record": ({1: 1, 3: seq(192, 2)}, "malformed", "release carries a record."),
        "command-change-start-without-blinded": ({1: 2}, "malformed", "change-start without its blinded element."),
        "command-change-start-blinded-31": ({1: 2, 2: seq(31, 1)}, "malformed", "A 31-byte blinded element."),
        "command-change-start-with-limit": ({1: 2, 2: seq(32, 1), 5: 3}, "malformed", "change-start with a limit."),
        "command-change-finish-limit-0": ({1: 3, 3: seq(192, 2), 4: seq(72, 3), 5: 0}, "malformed",
                                          "change-finish with limit 0 (1..100)."),
        "command-change-finish-limit-101": ({1: 3, 3: seq(192, 2), 4: seq(72, 3), 5: 101}, "malformed",
                                            "change-finish with limit 101 (1..100)."),
        "command-change-finish-wrapped-10": ({1: 3, 3: seq(192, 2), 4: seq(10, 3), 5: 5}, "malformed",
                                             "A wrapped key of 10 bytes (48..128)."),
        "command-change-finish-with-blinded": ({1: 3, 2: seq(32, 1), 3: seq(192, 2), 4: seq(72, 3), 5: 5}, "malformed",
                                               "change-finish with a blinded element."),
        "command-confirm-31": ({1: 1, 6: seq(31, 0x33)}, "malformed", "A 31-byte confirmation."),
        # Optional fields are absent or valid: SPEC.md, "Conventions" (a byte string
        # whose length differs from the one given is malformed; one encoding per message).
        "command-release-empty-blinded": ({1: 1, 2: b""}, "malformed",
                                          "release with an empty blinded element (bstr[32]? is absent or 32 bytes)."),
        "command-release-limit-0": ({1: 1, 5: 0}, "malformed",
                                    "release with limit 0 present: limit is absent or 1..100."),
        "command-release-empty-confirm": ({1: 1, 6: b""}, "malformed",
                                          "release with an empty confirmation (bstr[32]? is absent or 32 bytes)."),
    }
    for name, (m, expect, comment) in cmds.items():
        case("bodies", name, expect, enc(m), comment, body="session-command")

    case("bodies", "session-reply-release", "success", enc({1: seq(72, 3), 4: RECEIPT}),
         "A release's reply: the wrapped key and a receipt.", body="session-reply-inner")
    case("bodies", "session-reply-change-start", "success", enc({2: seq(32, 1), 3: seq(32, 2)}),
         "A change-start's reply: evaluated element and server public key.", body="session-reply-inner")
    case("bodies", "session-reply-close", "success", enc({}), "A close's reply: nothing.", body="session-reply-inner")
    case("bodies", "session-reply-evaluated-only", "malformed", enc({2: seq(32, 1)}),
         "An evaluated element without the server public key.", body="session-reply-inner")
    case("bodies", "session-reply-empty-wrapped", "malformed", enc({1: b""}),
         "An empty wrapped key (absent or 48..128 bytes).", body="session-reply-inner")

    case("bodies", "register-finish-inner", "success", enc({1: seq(192, 0x80), 2: seq(48, 0x10), 3: 10}),
         "A registration's record, wrapped key and limit.", body="register-finish-inner")
    case("bodies", "register-finish-inner-wrapped-129", "malformed", enc({1: seq(192, 0x80), 2: seq(129, 0x10), 3: 10}),
         "A wrapped key of 129 bytes (48..128).", body="register-finish-inner")
    case("bodies", "register-finish-inner-record-191", "malformed", enc({1: seq(191, 0x80), 2: seq(48, 0x10), 3: 10}),
         "A record of 191 bytes (192).", body="register-finish-inner")


# ---- signed: signed structures, verified with the key given ----------------

def signed():
    sk, pk = SIGNING, pub(SIGNING)

    def receipt_case(name, expect, body, signature, comment, **h):
        case("signed", name, expect, enc({1: body, 2: signature}), comment, signed="receipt",
             public_key=h.pop("public_key", pk), **h)

    receipt_hash = hashlib.sha256(b"coffer/v1 confirm\x00" + RECEIPT_BODY).digest()
    receipt_case("receipt", "success", RECEIPT_BODY, RECEIPT[2],
                 "A signed attempt receipt; receipt-hash names it in a login confirmation.", receipt_hash=receipt_hash)
    receipt_case("receipt-other-key", "authentication", RECEIPT_BODY, RECEIPT[2],
                 "Verified with another vault's key.", public_key=pub(OTHER))
    receipt_case("receipt-body-flipped", "authentication", flip(RECEIPT_BODY, 299), RECEIPT[2],
                 "The last padding byte of the body flipped after signing.")
    receipt_case("receipt-signature-flipped", "authentication", RECEIPT_BODY, flip(RECEIPT[2], 0),
                 "The first signature byte flipped.")
    receipt_case("receipt-signed-as-identity", "authentication", RECEIPT_BODY,
                 sign(sk, b"coffer/v1 identity", RECEIPT_BODY), "Signed under the identity context, not the receipt's.")
    receipt_case("receipt-signed-without-context", "authentication", RECEIPT_BODY, sk.sign(RECEIPT_BODY),
                 "Signed over the body alone, without the context.")
    dirty = flip(RECEIPT_BODY, 299)
    receipt_case("receipt-signed-padding-not-zero", "malformed", dirty, sign(sk, b"coffer/v1 receipt", dirty),
                 "A validly signed body whose padding is not zero.")
    short = RECEIPT_BODY[:-1]
    receipt_case("receipt-299-bytes", "malformed", short, sign(sk, b"coffer/v1 receipt", short),
                 "A validly signed body of 299 bytes (every receipt is 300).")
    receipt_case("receipt-signature-63-bytes", "malformed", RECEIPT_BODY, RECEIPT[2][:63],
                 "A signature of 63 bytes.")

    ppk = pub(PROVISIONING)
    case("signed", "identity", "success", enc(SIGNED_IDENTITY), "An identity bundle signed by the provisioning key.",
         signed="identity", public_key=ppk)
    case("signed", "identity-vault-key", "authentication", enc(SIGNED_IDENTITY),
         "Verified with the vault's own signing key instead of the pinned provisioning key.",
         signed="identity", public_key=pk)
    as_receipt = {1: IDENTITY_BODY, 2: sign(PROVISIONING, b"coffer/v1 receipt", IDENTITY_BODY)}
    case("signed", "identity-signed-as-receipt", "authentication", enc(as_receipt),
         "Signed under the receipt context.", signed="identity", public_key=ppk)
    long_name = IDENTITY_BODY.replace(bytes([0x08, 0x67]) + b"example", bytes([0x08, 0x78, 0x07]) + b"example")
    assert long_name != IDENTITY_BODY
    case("signed", "identity-signed-noncanonical", "malformed",
         enc({1: long_name, 2: sign(PROVISIONING, b"coffer/v1 identity", long_name)}),
         "A validly signed body whose name length is in a long form (78 07).", signed="identity", public_key=ppk)

    def status_case(name, expect, body, signature, comment, nonce=STATUS_NONCE, public_key=pk):
        case("signed", name, expect, enc({1: body, 2: signature}), comment, signed="status", public_key=public_key,
             nonce=nonce)

    status_case("status", "success", STATUS_BODY, STATUS_REPLY[2], "A signed status answering the nonce.")
    status_case("status-other-key", "authentication", STATUS_BODY, STATUS_REPLY[2], "Another vault's key.",
                public_key=pub(OTHER))
    status_case("status-replayed", "replayed", STATUS_BODY, STATUS_REPLY[2],
                "A genuine status answering another request's nonce.", nonce=seq(32, 0xB0))
    status_case("status-signed-as-receipt", "authentication", STATUS_BODY,
                sign(sk, b"coffer/v1 receipt", STATUS_BODY), "Signed under the receipt context.")
    no_fw = enc({k: v for k, v in STATUS_MAP.items() if k != 8})
    status_case("status-without-firmware-hash", "malformed", no_fw, sign(sk, b"coffer/v1 status", no_fw),
                "A validly signed status without a firmware hash (older firmware): it cannot say what runs.")
    i = STATUS_BODY.index(bytes([0x02, 0x18, 0x2A]))
    longseq = STATUS_BODY[:i] + bytes([0x02, 0x19, 0x00, 0x2A]) + STATUS_BODY[i + 3:]
    status_case("status-signed-noncanonical", "malformed", longseq, sign(sk, b"coffer/v1 status", longseq),
                "A validly signed body whose store sequence 42 is in a two-byte form (19 00 2a).")

    def user_status_case(name, expect, body, signature, comment, nonce=STATUS_NONCE, public_key=pk, user_id=b"alice"):
        case("signed", name, expect, enc({1: body, 2: signature}), comment, signed="user-status",
             public_key=public_key, nonce=nonce, user_id=user_id)

    user_status_case("user-status", "success", USER_STATUS_BODY, USER_STATUS_REPLY[2],
                     "A signed user status answering the request for alice with the nonce.")
    user_status_case("user-status-other-key", "authentication", USER_STATUS_BODY, USER_STATUS_REPLY[2],
                     "Another vault's key.", public_key=pub(OTHER))
    user_status_case("user-status-replayed", "replayed", USER_STATUS_BODY, USER_STATUS_REPLY[2],
                     "A genuine user status answering another request's nonce.", nonce=seq(32, 0xB0))
    user_status_case("user-status-other-user", "other-user", USER_STATUS_BODY, USER_STATUS_REPLY[2],
                     "A genuine user status, with the nonce, about alice: the request asked about bob.", user_id=b"bob")
    user_status_case("user-status-signed-as-status", "authentication", USER_STATUS_BODY,
                     sign(sk, b"coffer/v1 status", USER_STATUS_BODY), "Signed under the status context.")
    user_status_case("user-status-signed-as-receipt", "authentication", USER_STATUS_BODY,
                     sign(sk, b"coffer/v1 receipt", USER_STATUS_BODY), "Signed under the receipt context.")
    short = enc({**USER_STATUS_MAP, 15: bytes(256 - len(enc({**USER_STATUS_MAP, 15: b""})) - 2)})
    assert len(short) == 255
    i = short.index(bytes([0x08, 0x18, 0x2A]))
    longseq = short[:i] + bytes([0x08, 0x19, 0x00, 0x2A]) + short[i + 3:]
    assert len(longseq) == 256
    user_status_case("user-status-signed-noncanonical", "malformed", longseq,
                     sign(sk, b"coffer/v1 user status", longseq),
                     "A validly signed 256-byte body whose store sequence 42 is in a two-byte form (19 00 2a), "
                     "one padding byte fewer.")


# ---- registration: the HPKE channel and its response keys -------------------

VAULT_HPKE = seq(32, 0xA0)
OTHER_HPKE = seq(32, 0xB0)
HANDLE = seq(16, 3)
NONCE_A, NONCE_B = seq(32, 0x20), seq(32, 0x60)


def hpke_start(sk_r, inner_plaintext, user_id=b"alice", sk_e=seq(32, 0xC0)):
    pk_r = regvec.x25519_public(sk_r)
    e, key, base_nonce, exporter = regvec.hpke_setup_sender(sk_e, pk_r, b"coffer/v1 register")
    sealed = ChaCha20Poly1305(key).encrypt(base_nonce, inner_plaintext, b"")
    secret = regvec.labeled_expand(regvec.HPKE_SUITE, exporter, b"sec", b"coffer/v1 register response", 32)
    return {1: user_id, 2: e, 3: sealed}, secret


def run_keys(e, secret, response_nonce):
    prk = regvec.extract(e + response_nonce, secret)
    return {name: (regvec.expand(prk, b"coffer/v1 register " + name.encode() + b" key", 32),
                   regvec.expand(prk, b"coffer/v1 register " + name.encode() + b" nonce", 12))
            for name in ("start-reply", "finish", "finish-reply")}


def seal(keys, name, plaintext, aad=HANDLE):
    k, n = keys[name]
    return ChaCha20Poly1305(k).encrypt(n, plaintext, aad)


def registration():
    inner = enc({1: b"alice", 2: seq(32, 1)})
    start, secret = hpke_start(VAULT_HPKE, inner)
    start_env = envelope(2, start)
    common = dict(vault_hpke_private_key=VAULT_HPKE)

    def reg(name, expect, data, comment, step, **h):
        case("registration", name, expect, data, comment, registration=step, **{**common, **h})

    reg("start", "success", start_env, "A RegisterStart the vault opens; plaintext is the inner message.",
        "start", plaintext=inner, exported_secret=secret)
    other, _ = hpke_start(OTHER_HPKE, inner)
    reg("start-other-vault", "authentication", envelope(2, other), "Sealed to another vault's HPKE key.", "start")
    reg("start-sealed-flipped", "authentication", envelope(2, {**start, 3: flip(start[3], 0)}),
        "The first ciphertext byte flipped.", "start")
    reg("start-tag-flipped", "authentication", envelope(2, {**start, 3: flip(start[3], len(start[3]) - 1)}),
        "The last tag byte flipped.", "start")
    reg("start-enc-flipped", "authentication", envelope(2, {**start, 2: flip(start[2], 0)}),
        "The encapsulated key's first byte flipped.", "start")
    mismatch, _ = hpke_start(VAULT_HPKE, enc({1: b"mallory", 2: seq(32, 1)}))
    reg("start-user-mismatch", "malformed", envelope(2, mismatch),
        "The sealed user id (mallory) differs from the routed one (alice).", "start")
    nc, _ = hpke_start(VAULT_HPKE, bytes([0xA2, 0x01, 0x58, 0x05]) + b"alice" + bytes([0x02, 0x58, 0x20]) + seq(32, 1))
    reg("start-inner-noncanonical", "malformed", envelope(2, nc),
        "It opens, but the sealed message's user id length is in a long form.", "start")

    keys = run_keys(start[2], secret, NONCE_A)
    keys_b = run_keys(start[2], secret, NONCE_B)
    reply_inner = enc({1: seq(32, 0x40), 2: seq(32, 0x60)})
    sealed_reply = seal(keys, "start-reply", reply_inner)
    h = dict(register_start=start_env)
    reg("start-reply", "success", envelope(2, {1: HANDLE, 2: sealed_reply, 3: NONCE_A}),
        "The vault's reply, opened by the client under the keys of its response nonce.", "start-reply",
        plaintext=reply_inner, start_reply_key=keys["start-reply"][0], start_reply_nonce=keys["start-reply"][1],
        finish_key=keys["finish"][0], finish_nonce=keys["finish"][1], finish_reply_key=keys["finish-reply"][0],
        finish_reply_nonce=keys["finish-reply"][1], **h)
    reg("start-reply-other-nonce", "authentication", envelope(2, {1: HANDLE, 2: sealed_reply, 3: NONCE_B}),
        "Sealed under the keys of one response nonce, carrying another.", "start-reply", **h)
    reg("start-reply-flipped", "authentication", envelope(2, {1: HANDLE, 2: flip(sealed_reply, 5), 3: NONCE_A}),
        "A ciphertext byte flipped.", "start-reply", **h)
    reg("start-reply-other-handle", "authentication", envelope(2, {1: seq(16, 4), 2: sealed_reply, 3: NONCE_A}),
        "Sealed with one handle as associated data, carrying another.", "start-reply", **h)
    reg("start-reply-inner-malformed", "malformed",
        envelope(2, {1: HANDLE, 2: seal(keys, "start-reply", enc({1: seq(31, 0x40), 2: seq(32, 0x60)})), 3: NONCE_A}),
        "It opens, but the evaluated element is 31 bytes.", "start-reply", **h)

    h = dict(register_start=start_env, response_nonce=NONCE_A, handle=HANDLE)
    finish_inner = enc({1: seq(192, 0x80), 2: seq(48, 0x10), 3: 10})
    sealed_finish = seal(keys, "finish", finish_inner)
    reg("finish", "success", envelope(3, {1: HANDLE, 2: sealed_finish}),
        "The client's finish, opened by the vault under the keys of the nonce it drew.", "finish",
        plaintext=finish_inner, **h)
    reg("finish-flipped", "authentication", envelope(3, {1: HANDLE, 2: flip(sealed_finish, 0)}),
        "A ciphertext byte flipped.", "finish", **h)
    reg("finish-of-another-run", "authentication", envelope(3, {1: HANDLE, 2: seal(keys_b, "finish", finish_inner)}),
        "Sealed under the keys of another response nonce (a replayed start's run).", "finish", **h)
    reg("finish-start-reply-key", "authentication",
        envelope(3, {1: HANDLE, 2: seal(keys, "start-reply", finish_inner)}),
        "Sealed under the run's start-reply key instead of its finish key.", "finish", **h)
    reg("finish-limit-0", "malformed",
        envelope(3, {1: HANDLE, 2: seal(keys, "finish", enc({1: seq(192, 0x80), 2: seq(48, 0x10), 3: 0}))}),
        "It opens, but the limit is 0.", "finish", **h)

    receipt = enc(RECEIPT)
    sealed_receipt = seal(keys, "finish-reply", receipt)
    reg("finish-reply", "success", envelope(3, {1: sealed_receipt}),
        "The vault's sealed receipt, opened by the client.", "finish-reply", plaintext=receipt, **h)
    reg("finish-reply-flipped", "authentication", envelope(3, {1: flip(sealed_receipt, 7)}),
        "A ciphertext byte flipped.", "finish-reply", **h)
    reg("finish-reply-of-another-run", "authentication", envelope(3, {1: seal(keys_b, "finish-reply", receipt)}),
        "A reply sealed in another run (another response nonce).", "finish-reply", **h)
    reg("finish-reply-other-handle", "authentication",
        envelope(3, {1: seal(keys, "finish-reply", receipt, aad=seq(16, 4))}),
        "Sealed with another handle as associated data.", "finish-reply", **h)


# ---- session: keys from the OPAQUE session key, sealed commands ------------

def hkdf512(ikm, salt, info, n=32):
    return HKDF(algorithm=hashes.SHA512(), length=n, salt=salt, info=info).derive(ikm)


def nonce(s):
    return bytes(4) + struct.pack(">Q", s)


def session():
    session_key, handle = seq(64, 0x60), seq(16, 6)
    to_vault = hkdf512(session_key, handle, b"coffer/v1 session to-vault")
    to_client = hkdf512(session_key, handle, b"coffer/v1 session to-client")
    common = dict(opaque_session_key=session_key, handle=handle)

    def sess(name, expect, data, comment, direction, **h):
        case("session", name, expect, data, comment, session=direction, **{**common, **h})

    cmd = enc({1: 1, 6: seq(32, 0x33)})
    sealed = ChaCha20Poly1305(to_vault).encrypt(nonce(1), cmd, handle)
    sess("command", "success", envelope(6, {1: handle, 2: 1, 3: sealed}),
         "A release with its confirmation, sealed to the vault with sequence 1.", "to-vault",
         expected_seq=1, plaintext=cmd, to_vault_key=to_vault, to_client_key=to_client)
    sess("command-replayed", "sequence", envelope(6, {1: handle, 2: 1, 3: sealed}),
         "The same command again, when the vault expects sequence 2.", "to-vault", expected_seq=2)
    sess("command-claims-next-sequence", "authentication", envelope(6, {1: handle, 2: 2, 3: sealed}),
         "Sealed with sequence 1's nonce, relabelled sequence 2.", "to-vault", expected_seq=2)
    sess("command-flipped", "authentication", envelope(6, {1: handle, 2: 1, 3: flip(sealed, 3)}),
         "A ciphertext byte flipped.", "to-vault", expected_seq=1)
    sess("command-other-handle", "authentication",
         envelope(6, {1: handle, 2: 1, 3: ChaCha20Poly1305(to_vault).encrypt(nonce(1), cmd, seq(16, 7))}),
         "Sealed with another handle as associated data.", "to-vault", expected_seq=1)
    sess("command-client-key", "authentication",
         envelope(6, {1: handle, 2: 1, 3: ChaCha20Poly1305(to_client).encrypt(nonce(1), cmd, handle)}),
         "Sealed under the to-client key (a reflected reply).", "to-vault", expected_seq=1)
    bad_cmd = enc({1: 1, 5: 3})
    sess("command-opens-malformed", "malformed",
         envelope(6, {1: handle, 2: 1, 3: ChaCha20Poly1305(to_vault).encrypt(nonce(1), bad_cmd, handle)}),
         "It opens, but release carries a limit.", "to-vault", expected_seq=1)
    nc_cmd = bytes([0xA2, 0x18, 0x01, 0x01, 0x06, 0x58, 0x20]) + seq(32, 0x33)
    sess("command-opens-noncanonical", "malformed",
         envelope(6, {1: handle, 2: 1, 3: ChaCha20Poly1305(to_vault).encrypt(nonce(1), nc_cmd, handle)}),
         "It opens, but the command's key 1 is in a long form.", "to-vault", expected_seq=1)

    reply = enc({})
    sealed_reply = ChaCha20Poly1305(to_client).encrypt(nonce(1), reply, handle)
    sess("reply", "success", envelope(6, {1: 1, 2: sealed_reply}), "A close's reply, sealed to the client.",
         "to-client", expected_seq=1, plaintext=reply)
    sess("reply-flipped", "authentication", envelope(6, {1: 1, 2: flip(sealed_reply, 0)}), "A byte flipped.",
         "to-client", expected_seq=1)
    sess("reply-vault-key", "authentication",
         envelope(6, {1: 1, 2: ChaCha20Poly1305(to_vault).encrypt(nonce(1), reply, handle)}),
         "Sealed under the to-vault key.", "to-client", expected_seq=1)

    login = enc({1: seq(72, 3), 4: RECEIPT})
    sealed_login = ChaCha20Poly1305(to_client).encrypt(nonce(0), login, handle)
    sess("login-reply", "success", envelope(5, {1: sealed_login}),
         "The login's sealed reply (sequence 0): the wrapped key and the release receipt.", "login-reply",
         expected_seq=0, plaintext=login)
    sess("login-reply-sequence-1", "authentication",
         envelope(5, {1: ChaCha20Poly1305(to_client).encrypt(nonce(1), login, handle)}),
         "The login reply sealed with sequence 1 instead of 0.", "login-reply", expected_seq=0)


# ---- wrap: the backup key under the export key -----------------------------

def wrap():
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305 as C
    export, user, k, n24 = seq(64, 0x80), b"alice", seq(32, 0x90), seq(24, 0x70)
    wrap_key = hkdf512(export, None, b"coffer/v1 wrap")
    # XChaCha20-Poly1305 = HChaCha20 subkey + ChaCha20-Poly1305 with nonce 0^4 || n[16:24].
    wrapped = n24 + C(casefiles.hchacha20(wrap_key, n24[:16])).encrypt(bytes(4) + n24[16:], k, user)
    common = dict(export_key=export, user_id=user)
    case("wrap", "wrapped", "success", wrapped, "K wrapped under the export key.", wrap="unwrap", backup_key=k,
         wrap_key=wrap_key, **common)
    case("wrap", "wrapped-other-user", "authentication", wrapped, "Opened with another user id.", wrap="unwrap",
         export_key=export, user_id=b"bob")
    case("wrap", "wrapped-other-export-key", "authentication", wrapped, "Opened with another export key.",
         wrap="unwrap", export_key=seq(64, 0x81), user_id=user)
    case("wrap", "wrapped-flipped", "authentication", flip(wrapped, 30), "A ciphertext byte flipped.", wrap="unwrap",
         **common)
    case("wrap", "wrapped-nonce-flipped", "authentication", flip(wrapped, 0), "A nonce byte flipped.", wrap="unwrap",
         **common)
    case("wrap", "wrapped-truncated", "authentication", wrapped[:39], "Shorter than a nonce and a tag.", wrap="unwrap",
         **common)




# ---- hashes -----------------------------------------------------------------

def hashes_():
    record, wrapped, limit = seq(192, 1), seq(72, 3), 10
    h = hashlib.sha256(b"coffer/v1 record\x00" + record + bytes([len(wrapped)]) + wrapped +
                       struct.pack(">H", limit)).digest()
    case("hashes", "record-hash", "success", h, "record_hash of a record, a wrapped key and a limit.",
         hash="record", record=record, wrapped=wrapped, limit=limit)
    case("hashes", "request-hash", "success", hashlib.sha256(KE1).digest(), "request_hash: SHA-256 of a KE1.",
         hash="request", ke1=KE1)


def main():
    messages()
    bodies()
    signed()
    registration()
    session()
    wrap()
    hashes_()
    casefiles.write(HERE, GROUPS, CASES)


if __name__ == "__main__":
    main()
