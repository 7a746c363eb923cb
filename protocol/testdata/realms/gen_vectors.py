#!/usr/bin/python3
"""Writes the Coffer realm test vectors: one file per case (README.md).

This generator is the contract of ../../REALMS.md, section 16, and is
independent of the Go code under test: ristretto255, RFC 9380's
expand_message_xmd and the RFC 9497 VOPRF are written out in r255.py, in
Python integers; Argon2id in argon2id.py (the reference C library refuses
the empty salt); HKDF and HMAC come from hmac/hashlib, Ed25519 and
ChaCha20-Poly1305 from `cryptography`, CBOR from cbor2, the realm
transport's HPKE from ../registration/gen_vectors.py. It first reproduces
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

import base64
import hashlib
import hmac
import importlib.util
import os
import struct
import sys
import unicodedata

sys.dont_write_bytecode = True  # no __pycache__ beside the vectors
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "internal", "vectorfile"))
import argon2id  # noqa: E402  Argon2id by hand: libargon2 refuses the empty salt
import casefiles  # noqa: E402  the case-file writer the generators share
import cbor2  # noqa: E402
import r255  # noqa: E402  ristretto255 and the VOPRF, by hand
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from r255 import G, L, add, decode, encode, mul, sbytes, scalar  # noqa: E402

GROUPS = ["voprf", "sharing", "evaluate", "schedule", "messages", "bounds"]
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


# ---- 2. Sharing: Shamir over the scalars, Feldman commitments ---------------

CONFIGS = [(2, 3), (3, 5), (5, 8)]


def fixed_scalar(start):
    """A fixed nonzero scalar: 31 counting bytes from start and a zero top
    byte, so that it is canonical as it stands (32 bytes, little endian)."""
    return scalar(seq(31, start) + b"\x00")


def coefficients(t, n):
    """a_0 = k, a_1 .. a_{t-1} of the t-of-n cases, all nonzero."""
    return [fixed_scalar(0x10 * t + 0x40 * j + n) for j in range(t)]


def poly(coeffs, i):
    return sum(a * pow(i, j, L) for j, a in enumerate(coeffs)) % L


def commit(coeffs):
    return [mul(a, G) for a in coeffs]


def public_share(commitments, i):
    """Y_i = sum_j x_i^j C_j (REALMS.md 5.2)."""
    y = r255.IDENTITY
    for j, c in enumerate(commitments):
        y = add(y, mul(pow(i, j, L), c))
    return y


def enc_all(points):
    return b"".join(encode(p) for p in points)


def deal(t, n, coeffs=None):
    coeffs = coeffs or coefficients(t, n)
    shares = [poly(coeffs, i) for i in range(1, n + 1)]
    cs = commit(coeffs)
    for i, k in enumerate(shares, 1):  # Feldman: k_i G = Y_i, for every realm
        assert r255.equal(mul(k, G), public_share(cs, i))
    return coeffs, shares, cs


def sharing():
    for t, n in CONFIGS:
        coeffs, shares, cs = deal(t, n)
        case("sharing", f"{t}-of-{n}", "success", enc_all(cs),
             f"A {t}-of-{n} set: f(x) = a_0 + a_1 x + ... + a_{t - 1} x^{t - 1} with the fixed coefficients\n"
             "(a_0 = k, the root key; the top one nonzero), shares k_i = f(i) for i = 1..n, public shares\n"
             "Y_i = k_i G = sum_j i^j C_j. The bytes are the Feldman commitments C_0..C_{t-1}, a_j G,\n"
             "as manifest field 7 carries them. Every realm accepts its share (REALMS.md 7).",
             threshold=t, realms=n, coefficients=[sbytes(a) for a in coeffs],
             shares=[sbytes(k) for k in shares], public_shares=[encode(mul(k, G)) for k in shares],
             public_key=encode(cs[0]))

    def refused(name, rule, t, n, index, share, commitments, comment):
        case("sharing", name, "malformed", commitments, comment +
             "\nRealm `index` refuses its share with these commitments (REALMS.md 7, VersionMaterial).",
             rule=rule, threshold=t, realms=n, index=index, share=share)

    k = fixed_scalar(0x71)
    a1, a2 = fixed_scalar(0x72), fixed_scalar(0x73)
    # a_1 = 0: C_1 is the identity, and realm 2's share still lies on the commitments.
    coeffs, shares, cs = deal(3, 5, [k, 0, a2])
    refused("identity-commitment", "identity-commitment", 3, 5, 2, sbytes(shares[1]), enc_all(cs),
            "3 of 5 with a_1 = 0, so C_1 is the identity (all-zero encoding); the share is f(2),\n"
            "consistent with the commitments: only the identity check refuses it.")
    # f(2) = 0: a_1 = -k/2.
    coeffs, shares, cs = deal(2, 3, [k, (-k * pow(2, -1, L)) % L])
    assert shares[1] == 0
    refused("zero-share", "zero-share", 2, 3, 2, sbytes(0), enc_all(cs),
            "2 of 3 with a_1 = -k/2, so realm 2's share f(2) is zero and Y_2 the identity.")
    # a_2 = 0: the degree drops, and circl's CommitSecret would give only two commitments.
    coeffs, shares, cs = deal(3, 5, [k, a1, 0])
    refused("commitment-count-short", "commitment-count", 3, 5, 1, sbytes(shares[0]), enc_all(cs[:2]),
            "3 of 5 whose top coefficient is zero: two commitments for threshold 3 (what circl's\n"
            "CommitSecret returns, since it trims a zero top coefficient); the share lies on them, so\n"
            "t - 1 realms would hold k. Only len(commitments) = threshold refuses it.")
    coeffs, shares, cs = deal(3, 3, [k, a1, a2])
    refused("commitment-count-long", "commitment-count", 2, 3, 1, sbytes(shares[0]), enc_all(cs),
            "Threshold 2 with three commitments (a degree-2 polynomial); the share lies on them.")
    coeffs, shares, cs = deal(2, 3)
    refused("share-off-commitments", "share-off-commitments", 2, 3, 1, sbytes(shares[0] + 1), enc_all(cs),
            "The 2-of-3 set's commitments with realm 1's share plus one: k_1 G != Y_1.")
    refused("share-non-canonical", "share-encoding", 2, 3, 1, (shares[0] + L).to_bytes(32, "little"),
            enc_all(cs), "The 2-of-3 set with realm 1's share encoded as k_1 + l, not reduced.")
    bad = bytearray(enc_all(cs))
    bad[32:64] = (1).to_bytes(32, "little")  # s = 1 is negative (odd): RFC 9496 4.3.1 refuses it
    assert decode(bytes(bad[32:64])) is None
    refused("commitment-invalid", "commitment-encoding", 2, 3, 1, sbytes(shares[0]), bytes(bad),
            "The 2-of-3 set with C_1 replaced by 01 00 .. 00, s = 1, a negative field element: not a\n"
            "ristretto255 encoding (RFC 9496 4.3.1).")


# ---- 3. Evaluate: t of n realms, every t-subset, one output -----------------

EVAL_SET_ID = seq(16, 0xC0)
EVAL_PW = b"realm vector password"
EVAL_BLIND = fixed_scalar(0x5B)


def proof_randomness(t, n, i):
    return fixed_scalar(0x80 + 0x08 * t + i)


def lagrange(indices):
    """lambda_i at 0 for the distinct indices (REALMS.md 5.3)."""
    lam = []
    for i in indices:
        v = 1
        for j in indices:
            if j != i:
                v = v * j * pow(j - i, -1, L) % L
        lam.append(v)
    return lam


def subsets(n, t):
    if t == 0:
        yield []
        return
    for first in range(1, n + 1):
        for rest in subsets(n - first, t - 1):
            yield [first] + [first + r for r in rest]


def evaluation(share, bl, rho):
    """A realm's answer: E_i = k_i Bl and the proof for (G, Y_i, Bl, E_i)."""
    (e,), proof = r255.blind_evaluate(share, [bl], rho)
    return e, proof


def evaluate():
    inp = coffer_input(EVAL_SET_ID, EVAL_PW)
    bl = r255.blind(inp, EVAL_BLIND)
    common = dict(set_id=EVAL_SET_ID, password=EVAL_PW, input=inp, blind=sbytes(EVAL_BLIND), blinded=encode(bl))
    for t, n in CONFIGS:
        coeffs, shares, cs = deal(t, n)
        y = r255.evaluate(coeffs[0], inp)
        case("evaluate", f"{t}-of-{n}-root", "success", y,
             f"RFC 9497 Evaluate(k, input) under the root key of sharing/{t}-of-{n}: the output every\n"
             "t-subset of its realms gives (what VerifiableServer.FullEvaluate computes).",
             root_key=sbytes(coeffs[0]), public_key=encode(cs[0]), **common)
        answers = {}
        for i in range(1, n + 1):
            rho = proof_randomness(t, n, i)
            e, proof = evaluation(shares[i - 1], bl, rho)
            ys = mul(shares[i - 1], G)
            assert r255.verify_proof(G, ys, [bl], [e], proof)
            answers[i] = (e, proof)
            case("evaluate", f"{t}-of-{n}-realm-{i}", "success", encode(e) + proof,
                 f"Realm {i} of sharing/{t}-of-{n} evaluates the blinded input: E_i = k_i Bl and the\n"
                 "RFC 9497 proof (c || s) that log_G(Y_i) = log_Bl(E_i), made with proof-randomness.\n"
                 "The bytes are E_i || proof.",
                 index=i, share=sbytes(shares[i - 1]), public_share=encode(ys), blinded=encode(bl),
                 proof_randomness=sbytes(rho), evaluated=encode(e), proof=proof)
        for s in subsets(n, t):
            lam = lagrange(s)
            comb = r255.IDENTITY
            for li, i in zip(lam, s):
                comb = add(comb, mul(li, answers[i][0]))
            assert r255.equal(comb, mul(coeffs[0], bl))
            unbl = mul(pow(EVAL_BLIND, -1, L), comb)
            out = r255.finalize_unblinded(inp, unbl)
            assert out == y
            case("evaluate", f"{t}-of-{n}-subset-{'-'.join(map(str, s))}", "success",
                 b"".join(encode(answers[i][0]) + answers[i][1] for i in s),
                 f"The realms {', '.join(map(str, s))} of sharing/{t}-of-{n} answer; the client checks each\n"
                 "proof against Y_i from the commitments, combines E = sum lambda_i E_i (Lagrange at 0),\n"
                 "unblinds N = r^-1 E and finalizes (REALMS.md 5.3): output is the root case's.\n"
                 "The bytes are E_i || proof for each index, in order.",
                 threshold=t, realms=n, commitments=[encode(c) for c in cs], indices=s,
                 lagrange=[sbytes(v) for v in lam], combined=encode(comb), unblinded=encode(unbl),
                 output=y, **common)

    coeffs, shares, cs = deal(2, 3)
    y2 = mul(shares[1], G)
    e1, p1 = evaluation(shares[0], bl, proof_randomness(2, 3, 1))
    e2, p2 = evaluation(shares[1], bl, proof_randomness(2, 3, 2))
    lie, lie_proof = evaluation(shares[1] + 1, bl, proof_randomness(2, 3, 2))
    assert not r255.verify_proof(G, y2, [bl], [lie], lie_proof)
    assert not r255.verify_proof(G, y2, [bl], [e2], p1)

    def refused(name, expect, rule, data, comment, **h):
        case("evaluate", name, expect, data, comment, rule=rule, threshold=2, realms=3,
             commitments=[encode(c) for c in cs], **h, **common)

    refused("lying-realm", "authentication", "proof", encode(lie) + lie_proof,
            "Realm 2 of sharing/2-of-3 answers with (k_2 + 1) Bl and a proof made with k_2 + 1, which\n"
            "is valid for (k_2 + 1) G but not for Y_2: the client refuses it and names realm 2.",
            index=2, public_share=encode(y2), evaluated=encode(lie), proof=lie_proof)
    refused("swapped-proof", "authentication", "proof", encode(e2) + p1,
            "Realm 2's honest E_2 with realm 1's proof: it does not verify against Y_2.",
            index=2, public_share=encode(y2), evaluated=encode(e2), proof=p1)
    refused("identity-evaluated", "malformed", "identity-evaluated", bytes(32) + p2,
            "Realm 2 answers the identity as E_2 (with its honest proof): refused on decoding,\n"
            "before any proof check or inversion.",
            index=2, public_share=encode(y2), evaluated=bytes(32), proof=p2)
    refused("duplicate-index", "malformed", "duplicate-index", (encode(e1) + p1) * 2,
            "Realm 1's valid answer counted twice as a 2-subset: refused before any Lagrange\n"
            "coefficient is computed (x_j - x_i would be zero).", indices=[1, 1])
    refused("index-range", "malformed", "index-range", encode(e1) + p1 + encode(e2) + p2,
            "Valid answers of realms 1 and 2 claimed as indices 0 and 2: index 0 is outside 1..n.",
            indices=[0, 2])
    refused("too-few", "malformed", "count", encode(e1) + p1,
            "One answer for threshold 2: fewer than t evaluations are never combined.", indices=[1])


# ---- 4. Key schedule: stretch, prk, check, export, unlock keys, tag, session, anchor

def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha512).digest()  # an empty salt is HashLen zeros (RFC 5869 2.2)


def hkdf_expand(prk, info, n, h=hashlib.sha512):
    out, t = b"", b""
    for i in range(1, -(-n // h().digest_size) + 1):
        t = hmac.new(prk, t + info + bytes([i]), h).digest()
        out += t
    return out[:n]


def hkdf(ikm, salt, info, n):
    return hkdf_expand(hkdf_extract(salt, ikm), info, n)


def pub(sk):
    return sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


STRETCH = dict(t=3, m=65536, p=4, n=32)  # SPEC.md "OPAQUE": Argon2id, empty salt


def check_argon2():
    """Checks argon2id.py against the reference C library for salts it
    accepts (it refuses the empty one), through Debian's python3-argon2 if
    importable, else ctypes on libargon2.so.1; says which, or that neither
    is there (RFC 9106's own vector, checked on import, then stands alone)."""
    cases = [(b"password" * 8, b"12345678", 2, 256, 2), (seq(64, 0x33), b"0123456789abcdef", 3, 512, 4)]
    try:
        from argon2.low_level import Type, hash_secret_raw

        def ref(pw, salt, t, m, p):
            return hash_secret_raw(pw, salt, t, m, p, 32, Type.ID)
        how = "python3-argon2 (argon2.low_level.hash_secret_raw)"
    except ImportError:
        import ctypes
        try:
            lib = ctypes.CDLL("libargon2.so.1")
        except OSError:
            print("Argon2id: argon2id.py (RFC 9106 5.3 checked); no reference library to compare", file=sys.stderr)
            return

        def ref(pw, salt, t, m, p):
            out = ctypes.create_string_buffer(32)
            if lib.argon2id_hash_raw(t, m, p, pw, len(pw), salt, len(salt), out, 32) != 0:
                sys.exit("libargon2 failed")
            return out.raw
        how = "ctypes on libargon2.so.1 (argon2id_hash_raw)"
    for pw, salt, t, m, p in cases:
        if argon2id.argon2id(pw, salt, t, m, p, 32) != ref(pw, salt, t, m, p):
            sys.exit(f"argon2id.py differs from {how} at t={t} m={m} p={p}")
    print(f"Argon2id: argon2id.py (RFC 9106 5.3 checked), agrees with {how} on salted inputs;\n"
          "  the empty salt is computed by argon2id.py alone (the C library refuses it)", file=sys.stderr)


def xchacha_seal(key, n24, plain, aad):
    return ChaCha20Poly1305(casefiles.hchacha20(key, n24[:16])).encrypt(bytes(4) + n24[16:], plain, aad)


def wrap_key(export, set_id, k, n24):
    """SPEC.md "Key wrapping" with aad = set_id (REALMS.md 5.2)."""
    return n24 + xchacha_seal(hkdf(export, b"", b"coffer/v1 wrap", 32), n24, k, set_id)


VERSION_ID = seq(16, 0xD0)
BACKUP_KEY = seq(32, 0x4B)
BACKUP_KEY_ROTATED = seq(32, 0x6B)
REALM_SIGNING = [Ed25519PrivateKey.from_private_bytes(seq(32, 0x30 + 0x10 * i)) for i in range(1, 9)]


def anchor_of(k, set_id):
    """REALMS.md 5.6: (anchor seed, anchor key, set code)."""
    seed = hkdf(k, b"", b"coffer/v1 realm anchor" + set_id, 32)
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    a = pub(sk)
    code = base64.b32encode(hashlib.sha256(b"coffer/v1 realm set code" + b"\x00" + set_id + a).digest()[:10]).decode()
    assert len(code) == 16 and "=" not in code
    return seed, sk, a, code


def schedule():
    check_argon2()
    coeffs, _, _ = deal(2, 3)
    inp = coffer_input(EVAL_SET_ID, EVAL_PW)
    y = r255.evaluate(coeffs[0], inp)  # the output of evaluate/2-of-3-*
    stretched = argon2id.argon2id(y, b"", STRETCH["t"], STRETCH["m"], STRETCH["p"], STRETCH["n"])
    case("schedule", "stretch", "success", y,
         "Argon2id (RFC 9106, version 0x13) of the OPRF output of evaluate/2-of-3-*, as RFC 9807's\n"
         "Stretch with SPEC.md's parameters: empty salt, t = 3, m = 65536 KiB, p = 4, 32 bytes.\n"
         "The bytes are y.", stretched=stretched)
    set_id = EVAL_SET_ID
    realms = [pub(k) for k in REALM_SIGNING[:3]]
    prk = hkdf_extract(b"", y + stretched)
    ctx = VERSION_ID + lp(set_id)
    check = hkdf_expand(prk, b"coffer/v1 realm check" + ctx, 32)
    export = hkdf_expand(prk, b"coffer/v1 realm export" + ctx, 64)
    unlock = [hkdf_expand(prk, b"coffer/v1 realm unlock" + ctx + bytes([i]) + realms[i - 1], 32) for i in (1, 2, 3)]
    case("schedule", "keys", "success", y,
         "REALMS.md 5.2 from the OPRF output y (the bytes) and its stretch s: prk =\n"
         'HKDF-Extract-SHA512("", y || s); ctx = version_id || u8(16) || set_id; check, export and\n'
         "unlock_i = HKDF-Expand-SHA512(prk, label || ctx [|| u8(i) || R_i]) for realms 1..3 with\n"
         "signing keys realm-keys.",
         stretched=stretched, version_id=VERSION_ID, set_id=set_id, realm_keys=realms, prk=prk,
         check=check, export=export, unlock_keys=unlock)
    n24 = seq(24, 0x90)
    wrapped = wrap_key(export, set_id, BACKUP_KEY, n24)
    assert len(wrapped) == 72
    case("schedule", "wrapped", "success", wrapped,
         'K wrapped under the export key as SPEC.md "Key wrapping", with aad = set_id (72 bytes).',
         export=export, set_id=set_id, backup_key=BACKUP_KEY, nonce=n24)
    bad = bytearray(wrapped)
    bad[40] ^= 1
    case("schedule", "wrapped-damaged", "authentication", bytes(bad),
         "The wrapped key with one ciphertext bit flipped: it does not open (a corrupt manifest,\n"
         "reported as such after a matching check, REALMS.md 5.3).", export=export, set_id=set_id)
    case("schedule", "wrapped-other-set", "authentication", wrapped,
         "The wrapped key opened with another set_id as aad: it does not open.",
         export=export, set_id=SET_ID_A)

    handle, ticket_nonce, exporter = seq(16, 0xE0), seq(32, 0xF0), seq(32, 0x58)
    tag = hmac.new(unlock[0], b"coffer/v1 realm tag" + b"\x00" + handle + ticket_nonce, hashlib.sha256).digest()
    case("schedule", "tag", "success", tag,
         'Realm 1\'s unlock tag (REALMS.md 5.4): HMAC-SHA256(unlock_1, "coffer/v1 realm tag" || 0x00 ||\n'
         "handle || ticket_nonce).", unlock_key=unlock[0], handle=handle, ticket_nonce=ticket_nonce)
    secret = hkdf(unlock[0] + exporter, ticket_nonce, b"coffer/v1 realm session", 64)
    case("schedule", "session", "success", secret,
         "Realm 1's session secret (REALMS.md 5.4): HKDF-SHA512(ikm = unlock_1 || X, salt =\n"
         'ticket_nonce, info "coffer/v1 realm session", 64), X the HPKE exporter value; and the\n'
         "session keys DeriveSessionKeys(secret, handle) (protocol/channel.go).",
         unlock_key=unlock[0], exporter=exporter, ticket_nonce=ticket_nonce, handle=handle,
         to_vault=hkdf(secret, handle, b"coffer/v1 session to-vault", 32),
         to_client=hkdf(secret, handle, b"coffer/v1 session to-client", 32))

    old = anchor_of(BACKUP_KEY, set_id)
    new = anchor_of(BACKUP_KEY_ROTATED, set_id)
    for name, k, (seed, _, a, code) in (("anchor", BACKUP_KEY, old), ("anchor-rotated", BACKUP_KEY_ROTATED, new)):
        case("schedule", name, "success", a,
             'The set\'s anchor (REALMS.md 5.6): seed = HKDF-SHA512(K, "", "coffer/v1 realm anchor" ||\n'
             'set_id, 32), the bytes its Ed25519 public key; set code = base32 (RFC 4648, upper case)\n'
             'of SHA-256("coffer/v1 realm set code" || 0x00 || set_id || anchor)[0..10].',
             backup_key=k, set_id=set_id, anchor_seed=seed, set_code=code)
    handover = old[1].sign(b"coffer/v1 realm handover" + b"\x00" + set_id + new[2])
    case("schedule", "handover", "success", handover,
         "K rotation (REALMS.md 5.6): the old anchor's Ed25519 signature over\n"
         '"coffer/v1 realm handover" || 0x00 || set_id || new anchor.',
         anchor=old[2], new_anchor=new[2], set_id=set_id)

    manifest_hash = hashlib.sha256(b"a stand-in for a manifest hash").digest()
    resume_key = hkdf(BACKUP_KEY, b"", b"coffer/v1 realm resume" + VERSION_ID, 32)
    _, shares, _ = deal(2, 3)
    body = cbor2.dumps({1: manifest_hash, 2: [{1: i, 2: sbytes(shares[i - 1]), 3: unlock[i - 1]} for i in (1, 2, 3)]},
                       canonical=True)
    n24 = seq(24, 0xA8)
    blob = n24 + xchacha_seal(resume_key, n24, body, b"coffer/v1 realm resume" + manifest_hash)
    case("schedule", "resume", "success", blob,
         "A resume blob (REALMS.md 5.7): nonce || XChaCha20-Poly1305(resume_key, nonce, ResumeBody,\n"
         'aad = "coffer/v1 realm resume" || manifest_hash), resume_key = HKDF-SHA512(K, "",\n'
         '"coffer/v1 realm resume" || version_id, 32); the body holds the shares of\n'
         "sharing/2-of-3 and the unlock keys of schedule/keys.",
         backup_key=BACKUP_KEY, version_id=VERSION_ID, manifest_hash=manifest_hash, resume_key=resume_key,
         resume_body=body)
    return dict(y=y, check=check, wrapped=wrapped, unlock=unlock, realms=realms, anchor=old,
                handle=handle, ticket_nonce=ticket_nonce, secret=secret,
                to_vault=hkdf(secret, handle, b"coffer/v1 session to-vault", 32))


# ---- 5. Messages: manifest, version material, receipts, sealed request and reply

# The registration channel's RFC 9180 / RFC 9458 code (written out by hand,
# independent of the Go code), which the realm transport reuses (REALMS.md 6.4).
_spec = importlib.util.spec_from_file_location("regvec", os.path.join(HERE, "..", "registration", "gen_vectors.py"))
regvec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regvec)


def enc(v):
    return cbor2.dumps(v, canonical=True)


ACCOUNTS = [seq(16, 0x0A + 0x10 * i) for i in range(3)]
ACCOUNTS_OTHER = [seq(16, 0x4A + 0x10 * i) for i in range(3)]
LIMIT = 10
MAX_LIMIT = 100


def manifest(sched, cs, accounts, realms=None, threshold=2, commitments=None, resign=True, sig_flip=False):
    """REALMS.md 5.2: (encoded Manifest, manifest_hash)."""
    body = enc({1: 1, 2: VERSION_ID, 3: 1, 4: EVAL_SET_ID, 5: threshold,
                6: realms or sched["realms"], 7: commitments or [encode(c) for c in cs], 8: LIMIT,
                9: sched["check"], 10: sched["wrapped"], 11: accounts, 12: bytes(16), 13: sched["anchor"][2]})
    sig = sched["anchor"][1].sign(b"coffer/v1 realm manifest" + b"\x00" + body)
    if sig_flip:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    m = enc({1: body, 2: sig})
    return m, hashlib.sha256(b"coffer/v1 realm manifest" + b"\x00" + m).digest()


def zero_version():
    return {1: bytes(16), 2: 0, 3: 0, 4: bytes(32), 5: 0}


def receipt_body(fields, pad_byte=0, size=512):
    """A RealmReceipt padded (field 16, zeros) to exactly size bytes:
    (body, length before padding)."""
    pre = len(enc(fields))
    # Field 16 adds its key (1 byte) and a bstr head of 2 bytes (24..255 bytes), and
    # one more map entry, which does not change the map head below 24 entries.
    pad = size - pre - 3
    assert 24 <= pad <= 255, pad
    body = enc({**fields, 16: bytes([pad_byte]) * pad})
    assert len(body) == size
    return body, pre


def total(n):
    return struct.pack(">Q", n)


def messages(sched):
    _, shares, cs = deal(2, 3)
    m, mh = manifest(sched, cs, ACCOUNTS)
    m2, mh2 = manifest(sched, cs, ACCOUNTS_OTHER)
    assert mh != mh2
    case("messages", "manifest", "success", m,
         "The 2-of-3 set's manifest (REALMS.md 5.2): ManifestBody with commitments of sharing/2-of-3,\n"
         "check and wrapped of schedule/, realm keys R_1..R_3, accounts, parent zero, and the anchor\n"
         'of schedule/anchor, which signs "coffer/v1 realm manifest" || 0x00 || body. The bytes are\n'
         'the encoded Manifest; manifest-hash = SHA-256("coffer/v1 realm manifest" || 0x00 || them).',
         manifest_hash=mh, anchor=sched["anchor"][2], accounts=ACCOUNTS)
    case("messages", "manifest-other-accounts", "success", m2,
         "The same set (same set_id, so the same OPRF input and output) at operators that drew other\n"
         "account ids: another manifest and another manifest-hash (REALMS.md 16, item 4).",
         manifest_hash=mh2, anchor=sched["anchor"][2], accounts=ACCOUNTS_OTHER)

    def material(name, expect, rule, man, index, share, user_id, realm_key, comment):
        vm = enc({1: man, 2: index, 3: sbytes(share), 4: sched["unlock"][index - 1]})
        h = dict(rule=rule) if rule else {}
        case("messages", name, expect, vm, comment +
             "\nThe bytes are a VersionMaterial (REALMS.md 7), as realm-register or put-version carry it,\n"
             "checked by the realm with signing key realm-key for the request's user-id.",
             **h, user_id=user_id, realm_key=realm_key, max_limit=MAX_LIMIT)

    material("version-material", "success", None, m, 1, shares[0], ACCOUNTS[0], sched["realms"][0],
             "Realm 1's material for the manifest of messages/manifest: every check passes.")
    material("version-material-wrong-account", "malformed", "accounts", m, 2, shares[1], ACCOUNTS[0],
             sched["realms"][1],
             "Realm 2's material sent under account_1: accounts[index - 1] is not the request's user-id.")
    material("version-material-wrong-realm", "malformed", "realms", m, 2, shares[1], ACCOUNTS[1],
             sched["realms"][0],
             "Realm 2's material delivered to realm 1: realms[index - 1] is not the realm's own key.")
    bad_sig, _ = manifest(sched, cs, ACCOUNTS, sig_flip=True)
    material("version-material-anchor-signature", "malformed", "anchor-signature", bad_sig, 1, shares[0],
             ACCOUNTS[0], sched["realms"][0], "The manifest's anchor_sig with one bit flipped.")
    dup, _ = manifest(sched, cs, ACCOUNTS, realms=[sched["realms"][0]] * 2 + [sched["realms"][2]])
    material("version-material-duplicate-realm", "malformed", "realms-duplicate", dup, 1, shares[0],
             ACCOUNTS[0], sched["realms"][0], "A manifest (anchor-signed) naming realm 1 twice.")
    low, _ = manifest(sched, cs, ACCOUNTS, threshold=1, commitments=[encode(cs[0])])
    material("version-material-threshold", "malformed", "threshold", low, 1, shares[0], ACCOUNTS[0],
             sched["realms"][0], "Threshold 1 of 3 (one commitment): n/2 < threshold fails.")
    material("version-material-share", "malformed", "share-off-commitments", m, 1, shares[0] + 1, ACCOUNTS[0],
             sched["realms"][0], "Realm 1's share plus one: share G != Y_1.")

    # Receipts, signed by realm 1 (REALMS.md 6.3).
    realm_key = REALM_SIGNING[0]
    inp = coffer_input(EVAL_SET_ID, EVAL_PW)
    bl = r255.blind(inp, EVAL_BLIND)
    e1, p1 = evaluation(shares[0], bl, proof_randomness(2, 3, 1))
    handle, ticket_nonce = sched["handle"], sched["ticket_nonce"]
    evaluation_hash = hashlib.sha256(b"coffer/v1 realm evaluation" + b"\x00" + mh + bytes([1]) + encode(bl) +
                                     encode(e1) + p1 + handle).digest()
    case("messages", "evaluation-hash", "success", evaluation_hash,
         'evaluation_hash (REALMS.md 6.3): SHA-256("coffer/v1 realm evaluation" || 0x00 ||\n'
         "manifest_hash || u8(index) || Bl || E_i || proof || handle), for realm 1's answer of\n"
         "evaluate/2-of-3-realm-1 to the manifest of messages/manifest.",
         manifest_hash=mh, index=1, blinded=encode(bl), evaluated=encode(e1), proof=p1, handle=handle)

    pending = {1: VERSION_ID, 2: 1, 3: 1, 4: mh, 5: 2}
    committed = {**pending, 2: 2}
    client_nonce, request_hash = seq(32, 0x21), seq(32, 0x61)

    def fields(kind, state=1, version=VERSION_ID, limit=LIMIT, tries=LIMIT, failed=0, attempts=0, successes=0,
               revivable=0, versions=None, ev=bytes(32), user_id=ACCOUNTS[0], seq_=7):
        return {1: kind, 2: user_id, 3: state, 4: version, 5: limit, 6: tries, 7: failed, 8: total(seq_),
                9: request_hash, 10: client_nonce, 11: total(attempts), 12: total(successes),
                13: total(revivable), 14: versions or [committed, zero_version()], 15: ev}

    kinds = [
        ("registered", fields(1, versions=[pending, zero_version()]), "a version registered, pending, origin 2"),
        ("attempt", fields(2, tries=LIMIT - 1, attempts=1, ev=evaluation_hash),
         "an evaluation counted, with its evaluation_hash (messages/evaluation-hash)"),
        ("locked", fields(3, state=2, tries=0, failed=LIMIT, attempts=LIMIT, revivable=86400000),
         "a tombstone: no tries left, revivable_ms set"),
        ("unlocked", fields(4, attempts=1, successes=1), "a confirmed unlock"),
        ("committed", fields(5), "the version committed"),
        ("deleted", fields(6, state=0, version=VERSION_ID, limit=0, tries=0, versions=[zero_version()] * 2),
         "the record deleted: no record, empty slots"),
        ("probe", fields(7, version=bytes(16)), "a probe: no version named"),
        ("challenge", fields(8), "a challenge ticket's receipt"),
        ("status", fields(9), "a session's status"),
        ("largest", fields(2, user_id=seq(64, 0x80), limit=MAX_LIMIT, tries=50, failed=49, attempts=2**40,
                           successes=2**33, seq_=2**60, ev=evaluation_hash,
                           versions=[{**committed, 3: 8}, {**pending, 1: seq(16, 0x77), 3: 8, 5: 3}]),
         "the longest fields: a 64-byte user id, limit 100, two-byte counts"),
        ("smallest", fields(7, state=0, user_id=b"\x01", version=bytes(16), limit=0, tries=0,
                            versions=[zero_version()] * 2),
         "the shortest fields: a 1-byte user id, no record"),
    ]
    pub_key = pub(realm_key)
    for name, f, what in kinds:
        body, pre = receipt_body(f)
        sig = realm_key.sign(b"coffer/v1 realm receipt" + b"\x00" + body)
        case("messages", f"receipt-{name}", "success", enc({1: body, 2: sig}),
             f"A SignedRealmReceipt of kind {f[1]} ({what}), signed by realm 1 over\n"
             '"coffer/v1 realm receipt" || 0x00 || body; the body is 512 bytes, pre-padding-length\n'
             "of them before field 16 (padding, zeros) is added. receipt-hash names it in a\n"
             'confirmation: SHA-256("coffer/v1 realm confirm" || 0x00 || body).',
             public_key=pub_key, kind=f[1], pre_padding_length=pre, padding_length=512 - pre - 3,
             receipt_hash=hashlib.sha256(b"coffer/v1 realm confirm" + b"\x00" + body).digest())
    body, _ = receipt_body(kinds[1][1])
    sig = REALM_SIGNING[1].sign(b"coffer/v1 realm receipt" + b"\x00" + body)
    case("messages", "receipt-other-signer", "authentication", enc({1: body, 2: sig}),
         "receipt-attempt's body signed by realm 2's key: it does not verify under realm 1's.",
         public_key=pub_key)
    body, _ = receipt_body(kinds[1][1], pad_byte=1)
    sig = realm_key.sign(b"coffer/v1 realm receipt" + b"\x00" + body)
    case("messages", "receipt-padding", "malformed", enc({1: body, 2: sig}),
         "receipt-attempt with padding bytes of 0x01 (validly signed): padding must be zeros.",
         rule="padding", public_key=pub_key)
    f = kinds[1][1]
    body = enc({**f, 16: bytes(512 - len(enc(f)) - 3 - 1)})
    assert len(body) == 511
    sig = realm_key.sign(b"coffer/v1 realm receipt" + b"\x00" + body)
    case("messages", "receipt-short", "malformed", enc({1: body, 2: sig}),
         "receipt-attempt with one padding byte less (511 bytes, validly signed): a body is 512.",
         rule="size", public_key=pub_key)

    # The evidence of a lying realm (REALMS.md 11.4): checkable offline by anyone.
    y2 = mul(shares[1], G)
    lie, lie_proof = evaluation(shares[1] + 1, bl, proof_randomness(2, 3, 2))
    assert not r255.verify_proof(G, y2, [bl], [lie], lie_proof)

    def signed_attempt(realm, index, evaluated, proof):
        ev = hashlib.sha256(b"coffer/v1 realm evaluation" + b"\x00" + mh + bytes([index]) + encode(bl) +
                            encode(evaluated) + proof + handle).digest()
        body, _ = receipt_body(fields(2, tries=LIMIT - 1, attempts=1, ev=ev, user_id=ACCOUNTS[index - 1]))
        return enc({1: body, 2: REALM_SIGNING[realm - 1].sign(b"coffer/v1 realm receipt" + b"\x00" + body)})

    def evidence(name, expect, rule, receipt, index, blinded, evaluated, proof, comment):
        h = dict(rule=rule) if rule else {}
        case("messages", f"evidence-{name}", expect, receipt, comment +
             "\nThe bytes are the realm's SignedRealmReceipt; the manifest is messages/manifest. Evidence\n"
             "holds (expect lying) when the receipt verifies under realms[index - 1], its\n"
             "evaluation_hash is recomputed from manifest-hash, index, blinded, evaluated, proof and\n"
             "handle, and the proof fails for (G, Y_index, blinded, evaluated).",
             **h, manifest_hash=mh, index=index, realm_key=sched["realms"][index - 1], blinded=blinded,
             evaluated=evaluated, proof=proof, handle=handle)

    evidence("lying", "lying", None, signed_attempt(2, 2, lie, lie_proof), 2, encode(bl), encode(lie), lie_proof,
             "Realm 2 signed an attempt receipt for the answer of evaluate/lying-realm: it lied, provably.")
    other_bl = r255.blind(inp, fixed_scalar(0x5C))
    evidence("other-blinded", "not-evidence", "evaluation-hash", signed_attempt(1, 1, e1, p1), 1,
             encode(other_bl), encode(e1), p1,
             "Realm 1's honest receipt, claimed for another blinded element (against which its answer\n"
             "would fail the proof): the evaluation_hash does not match, so it is no evidence.")
    evidence("honest", "not-evidence", "proof-verifies", signed_attempt(1, 1, e1, p1), 1, encode(bl), encode(e1),
             p1, "Realm 1's honest receipt and answer: the proof verifies, nothing to show.")
    evidence("other-signer", "not-evidence", "signature", signed_attempt(3, 2, lie, lie_proof), 2, encode(bl),
             encode(lie), lie_proof,
             "The lie of evidence-lying, but the receipt signed by realm 3's key, not realm 2's.")

    # One sealed realm-evaluate request and its reply (REALMS.md 6.1, 6.2).
    sk_r, sk_e, response_nonce = seq(32, 0xA0), seq(32, 0xC0), seq(32, 0x20)
    typ = 18
    pk_r = regvec.x25519_public(sk_r)
    enc_key, key, base_nonce, exporter_secret = regvec.hpke_setup_sender(sk_e, pk_r, b"coffer/v1 realm request")
    inner = enc({1: ACCOUNTS[0], 2: client_nonce, 3: {1: VERSION_ID, 2: encode(bl)}})
    sealed = ChaCha20Poly1305(key).encrypt(base_nonce, inner, bytes([typ]) + ACCOUNTS[0])
    request = enc({1: ACCOUNTS[0], 2: enc_key, 3: sealed})
    req_hash = hashlib.sha256(b"coffer/v1 realm request" + b"\x00" + bytes([typ]) + request).digest()
    case("messages", "request-evaluate", "success", regvec.envelope(typ, request),
         "A realm-evaluate (type 18) envelope whose body is a RealmRequest: HPKE base mode\n"
         '(SPEC.md suite) to realm-hpke-private-key\'s public key, info "coffer/v1 realm request",\n'
         "aad u8(type) || user_id, the client's ephemeral key fixed; the inner is a RealmInner with\n"
         "the blinded element of evaluate/. request-hash is over the encoded RealmRequest.",
         realm_hpke_private_key=sk_r, ephemeral_private_key=sk_e, user_id=ACCOUNTS[0], inner=inner,
         request_hash=req_hash)
    secret = regvec.labeled_expand(regvec.HPKE_SUITE, exporter_secret, b"sec", b"coffer/v1 realm response", 32)
    prk = regvec.extract(enc_key + response_nonce, secret)
    rkey = regvec.expand(prk, b"coffer/v1 realm reply key", 32)
    rnonce = regvec.expand(prk, b"coffer/v1 realm reply nonce", 12)
    attempt = dict(fields(2, tries=LIMIT - 1, attempts=1, ev=evaluation_hash))
    attempt[9], attempt[10] = req_hash, client_nonce
    body, _ = receipt_body(attempt)
    signed = {1: body, 2: realm_key.sign(b"coffer/v1 realm receipt" + b"\x00" + body)}
    reply_inner = enc({1: signed, 2: handle, 3: ticket_nonce, 4: encode(e1), 5: p1})
    reply = enc({1: ChaCha20Poly1305(rkey).encrypt(rnonce, reply_inner, bytes([typ]) + req_hash),
                 2: response_nonce})
    case("messages", "reply-evaluate", "success", regvec.envelope(typ, reply),
         "Realm 1's reply to messages/request-evaluate: a RealmReply sealed as RFC 9458 4.4 with\n"
         'HPKE.Export("coffer/v1 realm response", 32), Extract(enc || response_nonce), the reply\n'
         'key and nonce labels, aad u8(type) || request_hash; the inner carries the attempt receipt\n'
         "(bound to this request), the ticket and realm 1's answer of evaluate/2-of-3-realm-1.",
         response_nonce=response_nonce, request_hash=req_hash, reply_key=rkey, reply_nonce=rnonce,
         inner=reply_inner)

    # One session command and its request_hash (REALMS.md 6.3, 7).
    cmd = enc({1: 2, 2: client_nonce})
    seq_no = 1
    sealed_cmd = ChaCha20Poly1305(sched["to_vault"]).encrypt(bytes(4) + struct.pack(">Q", seq_no), cmd, handle)
    session = enc({1: handle, 2: seq_no, 3: sealed_cmd})
    case("messages", "session-command", "success", regvec.envelope(21, session),
         "A realm-session (type 21) status command, sealed under schedule/session's to-vault key with\n"
         "sequence 1 and the handle as aad (SPEC.md Session); request-hash = SHA-256(\n"
         '"coffer/v1 realm command" || 0x00 || handle || u64(seq) || sealed).',
         to_vault=sched["to_vault"], handle=handle, command=cmd,
         request_hash=hashlib.sha256(b"coffer/v1 realm command" + b"\x00" + handle + struct.pack(">Q", seq_no) +
                                     sealed_cmd).digest())


# Guess bounds (REALMS.md 12 and 10), integer arithmetic only. The ceiling
# on L is the realms' max_limit, 100 (SPEC.md's limit ceiling).
BOUNDS_MAX_LIMIT = 100


def per_realm(n, t, limit):
    """12.3: L = floor(limit / (n - t + 1)), None (refused) if L = 0 or L >
    the realms' max_limit."""
    per = limit // (n - t + 1)
    return None if per == 0 or per > BOUNDS_MAX_LIMIT else per


def bound(n, t, c, per):
    """12.2 Theorem 2 with nothing shown: floor((n - c) L / (t - c)), c < t;
    c = 0 is Theorem 1's floor(n L / t)."""
    assert 0 <= c < t
    return (n - c) * per // (t - c)


def tries_left(t, tries):
    """12.5: the largest k with sum_i min(r_i, k) >= t k (k = 0 always
    holds; the sum minus t k is concave in k, so the ks that hold are
    0..k*). Searched over every k up to sum r_i, and checked against the
    largest-first selection 12.5 says achieves it: each try takes one from
    each of the t realms with the most tries left."""
    best = max(k for k in range(sum(tries) + 1) if sum(min(r, k) for r in tries) >= t * k)
    left, played = sorted(tries, reverse=True), 0
    while len(left) >= t and left[t - 1] > 0:
        left = sorted([r - 1 for r in left[:t]] + left[t:], reverse=True)
        played += 1
    assert played == best, (t, tries, played, best)
    return best


# 12.3's table (limit 10): t/n -> L, host-only bound, bound against c = t - 1.
assert [(per_realm(n, t, 10), bound(n, t, 0, per_realm(n, t, 10)), bound(n, t, t - 1, per_realm(n, t, 10)))
        for t, n in [(2, 3), (3, 5), (2, 2), (5, 8)]] == [(5, 7, 10), (3, 5, 9), (10, 10, 10), (2, 3, 8)]
# 12.2: the bound is largest at c = t - 1, where it is (n - t + 1) L, at most the limit.
assert all(bound(n, t, t - 1, per) == (n - t + 1) * per <= limit and
           all(bound(n, t, c, per) <= bound(n, t, c + 1, per) for c in range(t - 1))
           for n in range(2, 9) for t in range(n // 2 + 1, n + 1) for limit in range(1, 101)
           for per in [per_realm(n, t, limit)] if per)
# 12.5: with every realm at L the user has floor(n L / t) tries, as many as the host-only adversary.
assert all(tries_left(t, [per] * n) == bound(n, t, 0, per)
           for n in range(2, 9) for t in range(n // 2 + 1, n + 1) for per in range(1, 11))

# Twenty tries-left cases: n, t and the tries left r_i at the reachable realms
# holding the version (fewer than n when some do not answer).
TRIES_LEFT = [
    (3, 2, [5, 5, 5], "every realm at L = 5: floor(n L / t)"),
    (3, 2, [5, 5, 0], "one realm used up: the other two pair off"),
    (3, 2, [5, 0, 0], "one realm with tries: nothing, t = 2 are needed"),
    (3, 2, [5, 5], "a realm unreachable: the two others"),
    (3, 2, [5], "one reachable realm of three: no try"),
    (3, 2, [9, 1, 1], "the capped realm: min(r_i, k) limits the large one"),
    (3, 2, [4, 3, 2], "uneven: largest-first pairs 4 with 3, then with 2"),
    (2, 2, [10, 7], "2 of 2: the smaller count"),
    (3, 3, [3, 8, 5], "3 of 3: the smallest count"),
    (5, 3, [3, 3, 3, 3, 3], "3 of 5 at L = 3: floor(15 / 3)"),
    (5, 3, [3, 3, 3, 0, 0], "3 of 5, two realms used up: exactly t left"),
    (5, 3, [3, 3, 2, 2, 0], "3 of 5, uneven"),
    (5, 3, [10, 1, 1, 1, 1], "3 of 5, one large realm cannot make up for the others"),
    (5, 4, [2, 2, 2, 2, 2], "4 of 5 at L = 2: floor(10 / 4)"),
    (8, 5, [2] * 8, "5 of 8 at L = 2: floor(16 / 5)"),
    (8, 5, [2, 2, 2, 2, 1, 1, 1, 0], "5 of 8, worn down unevenly"),
    (8, 5, [100, 100, 100, 100, 1, 0, 0, 0], "5 of 8: four large realms need a fifth each try"),
    (7, 4, [6, 5, 4, 3, 2, 1, 0], "4 of 7, a staircase"),
    (6, 6, [4, 4, 4, 4, 4, 3], "6 of 6: the smallest"),
    (4, 3, [0, 0, 0, 0], "every realm used up: no try"),
]
assert len(TRIES_LEFT) == 20


def bounds():
    """bounds/: per (t, n), one case whose headers list, for limit = 1..100,
    L (12.3), the bounds against c = 0..t-1 compromised realms (12.2), the
    host-only figure with c_ins insecure realms for c_ins = 0..n (12.4), and
    C2's tolerance for every count of holders (10); then the twenty
    tries-left cases (12.5). The bytes are empty: every figure is a header."""
    limits = list(range(1, 101))
    for n in range(2, 9):
        for t in range(n // 2 + 1, n + 1):
            pers = [per_realm(n, t, limit) for limit in limits]
            h = {"threshold": t, "realms": n, "smallest_limit": n - t + 1, "limits": limits,
                 "per_realm": ["refused" if p is None else p for p in pers]}
            assert pers.index(next(p for p in pers if p)) + 1 == n - t + 1
            for c in range(t):
                h[f"bound_c{c}"] = ["refused" if p is None else bound(n, t, c, p) for p in pers]
            for ci in range(n + 1):
                h[f"insecure_{ci}"] = ["refused" if p is None else "no-bound" if ci >= t else bound(n, t, ci, p)
                                       for p in pers]
            h["holders"] = list(range(n + 1))
            h["tolerance"] = [k - t if k >= t else "none" for k in range(n + 1)]
            h["commit"] = ["yes" if k == n else "force" if k >= t else "no" for k in range(n + 1)]
            case("bounds", f"{t}-of-{n}", "success", b"",
                 f"Guess bounds of a {t}-of-{n} set (REALMS.md 12), for every limit in limits:\n"
                 "per-realm L = floor(limit / (n - t + 1)) (12.3), refused if L = 0 or L > 100 (the realms'\n"
                 "max_limit); bound-cC = floor((n - C) L / (t - C)), the passwords an adversary holding the\n"
                 "hosts and C realms tests with nothing shown (12.2; bound-c0 is the host-only figure,\n"
                 f"bound-c{t - 1} the one the limit bounds); insecure-C = the host-only figure with C insecure\n"
                 "realms, floor((n - C) L / (t - C)), or no-bound when C >= t (12.4). For every count of\n"
                 "holders |H| (this run's receipts of the new version, 10 C2): tolerance = |H| - t realms the\n"
                 "key survives losing, none below t; commit yes (|H| = n), force (t <= |H| < n, --force) or no.\n"
                 "The bytes are empty: every figure is a header.", **h)
    for i, (n, t, tries, what) in enumerate(TRIES_LEFT, 1):
        assert len(tries) <= n and n // 2 < t <= n
        case("bounds", f"tries-left-{i:02d}", "success", b"",
             f"Tries the user has left (REALMS.md 12.5): {what}.\n"
             "tries are r_i at the reachable realms holding the version; tries-left is the largest k\n"
             "with sum_i min(r_i, k) >= t k, which largest-first selection achieves. The bytes are empty.",
             threshold=t, realms=n, tries=tries, tries_left=tries_left(t, tries))


def main():
    if sys.argv[1:]:
        sys.exit("usage: gen_vectors.py")
    voprf()
    sharing()
    evaluate()
    messages(schedule())
    bounds()
    casefiles.write(HERE, GROUPS, CASES)


if __name__ == "__main__":
    main()
