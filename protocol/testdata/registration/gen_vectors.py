#!/usr/bin/env python3
"""Writes vectors.json: one Coffer registration run, byte for byte.

This is an implementation of the registration channel (../../SPEC.md,
"Registration (HPKE channel)") independent of the Go code: the HPKE key
schedule of RFC 9180 (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305) and the response keys of RFC 9458 section 4.4 are written
out here from the RFCs' formulas with hmac/hashlib; X25519 and
ChaCha20-Poly1305 come from the `cryptography` package (not Go). The sender's
ephemeral key is fixed, which Go's crypto/hpke cannot do, so the vector
includes the RegisterStart a client would send. TestRegistrationVectors
checks the Go code against it. Run from this folder:

    python3 gen_vectors.py > vectors.json
"""

import hashlib
import hmac
import json
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


# RFC 5869 HKDF-SHA256.
def extract(salt, ikm):
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def expand(prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


# RFC 9180 labelled KDF.
def labeled_extract(suite, salt, label, ikm):
    return extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    return expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


KEM_SUITE = b"KEM" + struct.pack(">H", 0x0020)
HPKE_SUITE = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0003)


def x25519_public(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def hpke_setup_sender(sk_e, pk_r, info):
    """SetupBaseS with a given ephemeral key: (enc, key, base_nonce, exporter_secret)."""
    enc = x25519_public(sk_e)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    dh = X25519PrivateKey.from_private_bytes(sk_e).exchange(X25519PublicKey.from_public_bytes(pk_r))
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared_secret = labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + pk_r, 32)
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = labeled_extract(HPKE_SUITE, shared_secret, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    base_nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    exporter_secret = labeled_expand(HPKE_SUITE, secret, b"exp", context, 32)
    return enc, key, base_nonce, exporter_secret


# Core deterministic CBOR, just what these messages need.
def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 26]) + struct.pack(">I", n)


def uint(n):
    return head(0, n)


def bstr(b):
    return head(2, len(b)) + b


def cmap(fields):
    return head(5, len(fields)) + b"".join(uint(k) + fields[k] for k in sorted(fields))


def envelope(typ, body):
    return cmap({1: uint(1), 2: uint(typ), 3: body})


def main():
    user_id = b"alice"
    blinded = seq(32, 0x01)
    sk_r = seq(32, 0xA0)  # the vault's HPKE private key
    sk_e = seq(32, 0xC0)  # the client's ephemeral key
    response_nonce = seq(32, 0x20)  # drawn by the vault for its reply
    handle = seq(16, 0x03)
    evaluated, server_public_key = seq(32, 0x40), seq(32, 0x60)
    record, wrapped, limit = seq(192, 0x80), seq(48, 0x10), 10
    # A receipt body is always 300 bytes (SPEC.md, "Receipts"); its content is the vault's.
    receipt_body, receipt_signature = b"a signed receipt's body".ljust(300, b"\x00"), seq(64, 0x30)

    pk_r = x25519_public(sk_r)
    enc, key, base_nonce, exporter_secret = hpke_setup_sender(sk_e, pk_r, b"coffer/v1 register")
    inner = cmap({1: bstr(user_id), 2: bstr(blinded)})
    sealed_start = ChaCha20Poly1305(key).encrypt(base_nonce, inner, b"")  # sequence 0, aad ""
    register_start = envelope(2, cmap({1: bstr(user_id), 2: bstr(enc), 3: bstr(sealed_start)}))

    # RFC 9458 section 4.4, with Coffer's labels.
    secret = labeled_expand(HPKE_SUITE, exporter_secret, b"sec", b"coffer/v1 register response", 32)
    prk = extract(enc + response_nonce, secret)
    keys = {}
    for name in ("start-reply", "finish", "finish-reply"):
        keys[name] = (
            expand(prk, b"coffer/v1 register " + name.encode() + b" key", 32),
            expand(prk, b"coffer/v1 register " + name.encode() + b" nonce", 12),
        )

    def seal(name, plaintext):
        k, n = keys[name]
        return ChaCha20Poly1305(k).encrypt(n, plaintext, handle)

    start_reply_inner = cmap({1: bstr(evaluated), 2: bstr(server_public_key)})
    sealed_reply = seal("start-reply", start_reply_inner)
    register_start_reply = envelope(2, cmap({1: bstr(handle), 2: bstr(sealed_reply), 3: bstr(response_nonce)}))
    finish_inner = cmap({1: bstr(record), 2: bstr(wrapped), 3: uint(limit)})
    sealed_finish = seal("finish", finish_inner)
    register_finish = envelope(3, cmap({1: bstr(handle), 2: bstr(sealed_finish)}))
    signed_receipt = cmap({1: bstr(receipt_body), 2: bstr(receipt_signature)})
    sealed_receipt = seal("finish-reply", signed_receipt)
    register_finish_reply = envelope(3, cmap({1: bstr(sealed_receipt)}))

    out = {
        "comment": "One Coffer v1 registration run (SPEC.md, Registration), generated by gen_vectors.py "
        "independently of the Go code. Hex throughout; text fields are UTF-8 before hex.",
        "inputs": {
            "vault_hpke_private_key": sk_r.hex(),
            "client_ephemeral_private_key": sk_e.hex(),
            "user_id": user_id.hex(),
            "blinded": blinded.hex(),
            "response_nonce": response_nonce.hex(),
            "handle": handle.hex(),
            "evaluated": evaluated.hex(),
            "server_public_key": server_public_key.hex(),
            "record": record.hex(),
            "wrapped": wrapped.hex(),
            "limit": limit,
            "receipt_body": receipt_body.hex(),
            "receipt_signature": receipt_signature.hex(),
        },
        "key_schedule": {
            "vault_hpke_public_key": pk_r.hex(),
            "enc": enc.hex(),
            "hpke_exporter_secret": exporter_secret.hex(),
            "secret": secret.hex(),
            "salt": (enc + response_nonce).hex(),
            "prk": prk.hex(),
            "start_reply_key": keys["start-reply"][0].hex(),
            "start_reply_nonce": keys["start-reply"][1].hex(),
            "finish_key": keys["finish"][0].hex(),
            "finish_nonce": keys["finish"][1].hex(),
            "finish_reply_key": keys["finish-reply"][0].hex(),
            "finish_reply_nonce": keys["finish-reply"][1].hex(),
        },
        "messages": {
            "register_start": register_start.hex(),
            "register_start_reply": register_start_reply.hex(),
            "register_finish": register_finish.hex(),
            "register_finish_reply": register_finish_reply.hex(),
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
