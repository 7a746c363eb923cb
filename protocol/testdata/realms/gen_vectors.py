#!/usr/bin/python3
"""Writes the Coffer realm test vectors: one file per case (README.md).

This generator is the contract of ../../REALMS.md, section 16, and is
independent of the Go code under test: ristretto255, RFC 9380's
expand_message_xmd and the RFC 9497 VOPRF are written out in r255.py, in
Python integers; HKDF and HMAC come from hmac/hashlib. It first reproduces
RFC 9497's Appendix A VOPRF ristretto255-SHA512 vectors and aborts if it
cannot. Every scalar, blind and proof randomness is fixed here, as a 32-byte
little-endian value, so that the Go side (protocol/realmkey) reproduces each
case with DealFromCoefficients, DeterministicBlind and
EvaluateBlindedWithRandomness rather than through a random reader.

Nothing here imports or runs the Go code, and no Go test rewrites these
files: a change to a case is a change to the protocol. Run from this folder:

    /usr/bin/python3 gen_vectors.py

It removes the case folders, writes every case again and writes SHA256SUMS,
which the Go test checks so that an edited file fails it.
"""

import hashlib
import os
import sys
import unicodedata

sys.dont_write_bytecode = True  # no __pycache__ beside the vectors
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "internal", "vectorfile"))
import casefiles  # noqa: E402  the case-file writer the generators share
import r255  # noqa: E402  ristretto255 and the VOPRF, by hand
from r255 import G, L, add, decode, encode, mul, sbytes, scalar  # noqa: E402

GROUPS = ["voprf"]
CASES = {}


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


def case(group, name, expect, data, comment, **headers):
    """Records one case: group/name, the expected outcome, the bytes under
    test, a comment, and named inputs and outputs (bytes as hex, ints and
    str as is; a list of bytes as comma-separated hex)."""
    assert group in GROUPS, group
    path = f"{group}/{name}"
    assert path not in CASES, path
    lines = [f"expect: {expect}"]
    for k, v in headers.items():
        k = k.replace("_", "-")
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).hex()
        elif isinstance(v, list):
            v = ",".join(x.hex() if isinstance(x, bytes) else str(x) for x in v)
        lines.append(f"{k}: {v}")
    for c in comment.strip().split("\n"):
        lines.append(f"comment: {c.strip()}")
    h = data.hex()
    body = "\n".join(h[i:i + 64] for i in range(0, len(h), 64))
    CASES[path] = "\n".join(lines) + "\n\n" + body + ("\n" if body else "")


def x(h):
    return bytes.fromhex(h)


def lp(b):
    assert len(b) <= 255
    return bytes([len(b)]) + b


def coffer_input(set_id, pw):
    """REALMS.md 5.2: the OPRF input of a realm set's password."""
    return b"coffer/v1 realm" + b"\x00" + lp(set_id) + pw


# ---- 1. RFC 9497 Appendix A, VOPRF mode, ristretto255-SHA512 ----------------

# The values of RFC 9497, A.1.2 (the key pair, then the three test vectors).
RFC_SEED = x("a3" * 32)
RFC_KEY_INFO = x("74657374206b6579")
RFC_SK = x("e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909")
RFC_PK = x("c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e")
RFC_VECTORS = [
    dict(input=[x("00")],
         blind=[x("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")],
         blinded=[x("863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945")],
         evaluated=[x("aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e")],
         proof=x("ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd06"
                 "6d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d"),
         rho=x("222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e"),
         output=[x("b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7d"
                   "a4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c")]),
    dict(input=[x("5a" * 17)],
         blind=[x("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")],
         blinded=[x("cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c")],
         evaluated=[x("60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468")],
         proof=x("401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a"
                 "67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02"),
         rho=x("222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e"),
         output=[x("8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60"
                   "356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6")]),
    dict(input=[x("00"), x("5a" * 17)],
         blind=[x("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"),
                x("222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e")],
         blinded=[x("863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945"),
                  x("90a0145ea9da29254c3a56be4fe185465ebb3bf2a1801f7124bbbadac751e654")],
         evaluated=[x("aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e"),
                    x("cc5ac221950a49ceaa73c8db41b82c20372a4c8d63e5dded2db920b7eee36a2a")],
         proof=x("cc203910175d786927eeb44ea847328047892ddf8590e723c37205cb74600b0a"
                 "5ab5337c8eb4ceae0494c2cf89529dcf94572ed267473d567aeed6ab873dee08"),
         rho=x("419c4f4f5052c53c45f3da494d2b67b220d02118e0857cdbcf037f9ea84bbe0c"),
         output=[x("b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7d"
                   "a4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c"),
                 x("8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60"
                   "356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6")]),
]


def reproduce_rfc9497():
    """Recomputes every RFC 9497 value with r255.py; aborts on a mismatch,
    since no vector below would be worth anything then."""
    def need(what, got, want):
        if got != want:
            sys.exit(f"RFC 9497 A.1.2 not reproduced: {what}\n got  {got.hex()}\n want {want.hex()}")

    sk, pk = r255.derive_key_pair(RFC_SEED, RFC_KEY_INFO)
    need("skSm", sbytes(sk), RFC_SK)
    need("pkSm", encode(pk), RFC_PK)
    for n, v in enumerate(RFC_VECTORS, 1):
        blinds = [scalar(b) for b in v["blind"]]
        blinded = [r255.blind(i, r) for i, r in zip(v["input"], blinds)]
        for b, want in zip(blinded, v["blinded"]):
            need(f"vector {n} BlindedElement", encode(b), want)
        evaluated, proof = r255.blind_evaluate(sk, blinded, scalar(v["rho"]))
        for e, want in zip(evaluated, v["evaluated"]):
            need(f"vector {n} EvaluationElement", encode(e), want)
        need(f"vector {n} Proof", proof, v["proof"])
        outputs = r255.finalize(v["input"], blinds, evaluated, blinded, pk, proof)
        for i, (o, want) in enumerate(zip(outputs, v["output"])):
            need(f"vector {n} Output (Finalize)", o, want)
            need(f"vector {n} Output (Evaluate)", r255.evaluate(sk, v["input"][i]), want)
        bad = bytearray(proof)
        bad[40] ^= 1
        if r255.verify_proof(G, pk, blinded, evaluated, bytes(bad)):
            sys.exit(f"RFC 9497 vector {n}: a damaged proof verified")
    print("RFC 9497 A.1.2 (VOPRF, ristretto255-SHA512): key pair and vectors 1-3 reproduced", file=sys.stderr)
    return sk, pk


# One set_id and password per case: ASCII, and a password typed decomposed
# (NFD) whose NFC form is what the input carries (REALMS.md 5.2).
SET_ID_A = seq(16, 0xA0)
SET_ID_B = seq(16, 0xB0)
PW_ASCII = b"correct horse battery staple"
PW_TYPED = "Gru\u0308\u00dfe, Jo\u0301zef \u2764"  # ü and ó decomposed, as some keyboards give them
PW_NFC = unicodedata.normalize("NFC", PW_TYPED).encode()
assert PW_NFC != PW_TYPED.encode() and PW_NFC == "Grüße, Józef ❤".encode()
# The OPRF key of the input cases: a fixed scalar (32 bytes, little endian).
INPUT_KEY = scalar(seq(32, 0x11)[:31] + b"\x00")


def voprf():
    sk, pk = reproduce_rfc9497()
    for n, v in enumerate(RFC_VECTORS, 1):
        batch = len(v["input"])
        case("voprf", f"rfc9497-a12-vector-{n}", "success", b"".join(v["output"]),
             f"RFC 9497 A.1.2, VOPRF mode, ristretto255-SHA512, test vector {n} (batch size {batch}),\n"
             "reproduced by this generator. The bytes are the output(s), concatenated.",
             seed=RFC_SEED, key_info=RFC_KEY_INFO, private_key=sk.to_bytes(32, "little"), public_key=encode(pk),
             input=v["input"], blind=v["blind"], blinded=v["blinded"], evaluated=v["evaluated"],
             proof=v["proof"], proof_randomness=v["rho"])
    v = RFC_VECTORS[0]
    bad = bytearray(v["proof"])
    bad[40] ^= 1
    case("voprf", "rfc9497-a12-vector-1-damaged-proof", "authentication", bytes(bad),
         "RFC 9497 A.1.2 test vector 1 with one bit of the proof's s flipped: VerifyProof fails\n"
         "and Finalize returns no output. The bytes are the proof.",
         public_key=RFC_PK, blinded=v["blinded"][0], evaluated=v["evaluated"][0])
    for name, set_id, pw, what in (("input-ascii", SET_ID_A, PW_ASCII, "an ASCII password"),
                                   ("input-nfc", SET_ID_B, PW_NFC,
                                    "a non-ASCII password typed decomposed (NFD), carried as NFC UTF-8")):
        inp = coffer_input(set_id, pw)
        case("voprf", name, "success", inp,
             f"Coffer's OPRF input (REALMS.md 5.2) for {what}:\n"
             '"coffer/v1 realm" || 0x00 || u8(len(set_id)) || set_id || pw. input-element is\n'
             "HashToGroup(input), output RFC 9497 Evaluate(key, input).",
             set_id=set_id, password=pw, key=sbytes(INPUT_KEY),
             input_element=encode(r255.hash_to_group(inp)), output=r255.evaluate(INPUT_KEY, inp))


def main():
    if sys.argv[1:]:
        sys.exit("usage: gen_vectors.py")
    voprf()
    casefiles.write(HERE, GROUPS, CASES)


if __name__ == "__main__":
    main()
