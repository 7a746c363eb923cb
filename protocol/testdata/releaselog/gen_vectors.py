#!/usr/bin/python3
"""Writes the Coffer release-log test vectors: one file per case (README.md).

This generator is independent of the Go code under test
(protocol/releaselog): it writes the formats from their specifications, not
from the Go code, and nothing here imports or runs Go.

- Entries: canonical CBOR (RFC 8949 4.2.1, cbor2 canonical=True) of the
  Entry, Release, Revocation and SignedIdentity maps of RELEASES.md and
  SPEC.md (the identity bundle's layout is the one of ../vectors).
- Merkle trees: RFC 6962 2.1 written out below (leaf hash SHA-256(0x00 ||
  data), node hash SHA-256(0x01 || left || right), split at the largest power
  of two below n) and inclusion proofs (RFC 6962 2.1.1, checked with RFC 9162
  2.1.3.2's algorithm). It aborts unless it reproduces the RFC 6962 test tree
  of certificate-transparency (roots of sizes 0..8 and two audit paths).
- Checkpoints: C2SP tlog-checkpoint (origin, size, base64 root) as a C2SP
  signed-note: key ID = SHA-256(name || 0x0A || type || public key)[:4], a
  signature line "— name base64(key ID || signature)"; the release key signs
  as type 0x01 (Ed25519 over the note text), witnesses as type 0x04 (C2SP
  tlog-cosignature, cosignature/v1: Ed25519 over "cosignature/v1\\ntime T\\n"
  and the note text, the signature being T as 8 big-endian bytes || the
  Ed25519 signature). Verifier keys are "name+hex(key ID)+base64(type ||
  public key)".

Every key comes from a fixed seed and every cosignature from a fixed time,
and Ed25519 is deterministic: running it again writes the same files. Run
from this folder:

    /usr/bin/python3 gen_vectors.py

It removes the case folders, writes every case again and writes SHA256SUMS,
which the Go test (protocol/releaselog/vectors_test.go) checks so that an
edited file fails it.
"""

import base64
import hashlib
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the vectors
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "internal", "vectorfile"))
import casefiles  # noqa: E402  the case-file writer the generators share
import cbor2  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

GROUPS = ["entry", "checkpoint", "proof", "view", "policy"]
CASES = {}


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


def enc(v):
    return cbor2.dumps(v, canonical=True)


def sha256(b):
    return hashlib.sha256(b).digest()


def b64(b):
    return base64.b64encode(b).decode()


def case(group, name, expect, data, comment, **headers):
    """Records one case: group/name, the expected outcome, the bytes under
    test, a comment, and named inputs and outputs (bytes as hex, ints and
    str as is; a list as comma-separated values)."""
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
        assert "\n" not in str(v), k
        lines.append(f"{k}: {v}")
    for c in comment.strip().split("\n"):
        lines.append(f"comment: {c.strip()}")
    h = bytes(data).hex()
    body = "\n".join(h[i:i + 64] for i in range(0, len(h), 64))
    CASES[path] = "\n".join(lines) + "\n\n" + body + ("\n" if body else "")


# ---- RFC 6962 Merkle tree ----------------------------------------------------

def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split(n):
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Tree:
    """An RFC 6962 tree over leaf data, with its subtree hashes memoized."""

    def __init__(self, leaves):
        self.leaves = list(leaves)
        self.hashes = [leaf_hash(d) for d in self.leaves]
        self.memo = {}

    def mth(self, lo, hi):
        """MTH(D[lo:hi]), RFC 6962 2.1."""
        if (lo, hi) not in self.memo:
            n = hi - lo
            if n == 0:
                h = sha256(b"")
            elif n == 1:
                h = self.hashes[lo]
            else:
                k = split(n)
                h = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
            self.memo[(lo, hi)] = h
        return self.memo[(lo, hi)]

    def root(self, size):
        return self.mth(0, size)

    def path(self, m, size, lo=0):
        """PATH(m, D[lo:lo+size]), RFC 6962 2.1.1: the audit path of leaf
        lo+m, from the leaf up."""
        if size <= 1:
            return []
        k = split(size)
        if m < k:
            return self.path(m, k, lo) + [self.mth(lo + k, lo + size)]
        return self.path(m - k, size - k, lo + k) + [self.mth(lo, lo + k)]


def verify_inclusion(index, size, lhash, path, root):
    """RFC 9162 2.1.3.2, written out: an independent check of our own paths."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, lhash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check_rfc6962():
    """The certificate-transparency test tree (merkle_tree_test.cc), as
    transparency-dev/merkle's testonly constants also hold it."""
    ct = Tree(bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"])
    roots = ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
             "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
             "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
             "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
             "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
             "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
             "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
    for n, r in enumerate(roots):
        assert ct.root(n).hex() == r, f"RFC 6962 root of {n} leaves"
    p08 = ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
    assert [h.hex() for h in ct.path(0, 8)] == p08, "RFC 6962 audit path of leaf 0 of 8"
    assert ct.path(0, 1) == []
    for n in range(1, 9):
        for m in range(n):
            assert verify_inclusion(m, n, ct.hashes[m], ct.path(m, n), ct.root(n))
            assert not verify_inclusion(m, n, ct.hashes[(m + 1) % 8], ct.path(m, n), ct.root(n))
            assert not verify_inclusion(m + 1, n, ct.hashes[m], ct.path(m, n), ct.root(n))


check_rfc6962()


# ---- Signed notes, checkpoints and cosignatures --------------------------------

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04


def pub(k):
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Key:
    """A note key: a name, an Ed25519 key from a fixed seed, and the
    signature type it signs as."""

    def __init__(self, name, seed, alg):
        self.name, self.sk, self.alg = name, Ed25519PrivateKey.from_private_bytes(seed), alg

    def key_id(self):
        return sha256(self.name.encode() + b"\n" + bytes([self.alg]) + pub(self.sk))[:4]

    def vkey(self):
        return f"{self.name}+{self.key_id().hex()}+{b64(bytes([self.alg]) + pub(self.sk))}"

    def sign(self, text, t=None):
        """The signature line this key puts under the note text."""
        if self.alg == ALG_ED25519:
            sig = self.sk.sign(text)
        else:
            sig = struct.pack(">Q", t) + self.sk.sign(f"cosignature/v1\ntime {t}\n".encode() + text)
        return line(self.name, self.key_id(), sig)

    def as_alg(self, alg):
        """The same name and key material, signing as another type."""
        k = object.__new__(Key)
        k.name, k.sk, k.alg = self.name, self.sk, alg
        return k


def line(name, key_id, sig):
    return f"\u2014 {name} {b64(key_id + sig)}\n".encode()


def checkpoint_text(origin, size, root):
    return f"{origin}\n{size}\n{b64(root)}\n".encode()


def note(text, *sig_lines):
    return text + b"\n" + b"".join(sig_lines)


ORIGIN = "log.coffer.example/releases"
LOG = Key(ORIGIN, seq(32, 0x60), ALG_ED25519)
OTHER_LOG = Key(ORIGIN, seq(32, 0x68), ALG_ED25519)  # another release key, same name
W = [Key(f"witness{i + 1}.example/w", seq(32, 0x70 + 8 * i), ALG_COSIGNATURE_V1) for i in range(3)]
OUTSIDE = Key("witness4.example/w", seq(32, 0x88), ALG_COSIGNATURE_V1)  # not in the policy
T0 = 1767225600  # 2026-01-01T00:00:00Z: cosignatures are dated T0 + a few seconds (the freshness cases: around NOW)


def policy_text(origin=ORIGIN, log_key=None, witnesses=None, quorum=2, max_age=None):
    """The policy's text form, in the order a verifier prints it back; the
    max-age line (a string such as "168h") only when given."""
    log_key = log_key or LOG.vkey()
    witnesses = [w.vkey() for w in W] if witnesses is None else witnesses
    s = f"origin {origin}\nlog {log_key}\n"
    s += "".join(f"witness {w}\n" for w in witnesses)
    s += f"quorum {quorum}\n"
    if max_age is not None:
        s += f"max-age {max_age}\n"
    return s.encode()


POLICY = policy_text()

# The spec's own example key ID layout, checked on a key we know: the vkey
# names the key ID that SHA-256 of its name, newline, type and key gives.
assert LOG.vkey().split("+")[1] == sha256(ORIGIN.encode() + b"\n\x01" + pub(LOG.sk))[:4].hex()
assert W[0].key_id() != W[0].as_alg(ALG_ED25519).key_id()


def witnessed(text, witnesses=(0, 1), t=T0):
    """The note of text signed by the release key and cosigned by the
    witnesses given by index, at times t, t+1, ..."""
    return note(text, LOG.sign(text), *(W[i].sign(text, t + j) for j, i in enumerate(witnesses)))


# ---- Entries -------------------------------------------------------------------

KIND_RELEASE, KIND_IDENTITY, KIND_REVOCATION = 1, 2, 3
BOARDS = ["usbarmory", "qemu", "software"]


def release_map(version, board="usbarmory", name=None, boot=True):
    m = {1: version, 2: name if name is not None else f"v0.{version}.0",
         3: hashlib.sha1(b"commit %d" % version).hexdigest(), 4: "tamago-go1.26.0", 5: board,
         6: sha256(b"coffer os elf %d %s" % (version, board.encode())),
         7: sha256(b"coffer applet elf %d" % version)}
    if boot and board == "usbarmory":
        m[8] = sha256(b"coffer bootloader imx %d" % version)
    return m


def entry(kind, part_key, part):
    return {1: kind, part_key: part}


def release_entry(m):
    return entry(KIND_RELEASE, 2, m)


def revocation_entry(target, h, reason):
    return entry(KIND_REVOCATION, 4, {1: target, 2: h, 3: reason})


# The identity bundle of ../vectors (SPEC.md, "Identity"): the same fixed
# vault and provisioning keys, its firmware hash a logged release's.
SIGNING = Ed25519PrivateKey.from_private_bytes(seq(32, 0x10))
PROVISIONING = Ed25519PrivateKey.from_private_bytes(seq(32, 0x20))
RELEASE_1 = release_map(1)
IDENTITY_MAP = {1: 1, 2: pub(SIGNING), 3: seq(32, 0x30), 4: seq(32, 0x40), 5: RELEASE_1[6], 6: 10, 7: False,
                8: "example"}


def signed_identity(body):
    return {1: body, 2: PROVISIONING.sign(b"coffer/v1 identity\x00" + body)}


IDENTITY_BODY = enc(IDENTITY_MAP)
SIGNED_IDENTITY = signed_identity(IDENTITY_BODY)
BUNDLE_HASH = sha256(IDENTITY_BODY)


def identity_entry(si):
    return entry(KIND_IDENTITY, 3, si)


def entry_cases():
    def valid(name, e, comment):
        data = enc(e)
        part = {2: "release", 3: "identity", 4: "revocation"}[[k for k in e if k != 1][0]]
        case("entry", name, "valid", data, comment, kind=part, leaf_hash=leaf_hash(data),
             **({"bundle-hash": sha256(e[3][1])} if part == "identity" else {}))

    valid("release-usbarmory", release_entry(RELEASE_1), "A usbarmory release with its bootloader image hash.")
    valid("release-qemu", release_entry(release_map(2, "qemu")), "A qemu release: no boot image (key 8 absent).")
    valid("release-software", release_entry(release_map(3, "software")), "A software vault release.")
    valid("release-version-max", release_entry(release_map(2**64 - 1)), "Version 2^64-1, the largest.")
    valid("release-texts-128", release_entry({**release_map(4), 2: "é" * 64, 3: "c" * 128, 4: "t" * 128}),
          "Name, commit and toolchain of exactly 128 bytes each (the name in two-byte UTF-8).")
    valid("identity", identity_entry(SIGNED_IDENTITY),
          "A vault identity bundle (../vectors' layout) signed by the provisioning key; bundle-hash is SHA-256 of its body.")
    valid("revocation-release", revocation_entry(KIND_RELEASE, RELEASE_1[6], "CVE-2026-0001"),
          "Revokes release 1 by its firmware hash.")
    valid("revocation-identity", revocation_entry(KIND_IDENTITY, BUNDLE_HASH, "device lost"),
          "Revokes the identity bundle by its bundle hash.")
    valid("revocation-empty-reason", revocation_entry(KIND_RELEASE, RELEASE_1[6], ""),
          "A revocation with an empty reason (the key is still present).")

    def bad(name, data, comment):
        case("entry", name, "malformed", data, comment)

    r = RELEASE_1
    rev = {1: KIND_RELEASE, 2: r[6], 3: "x"}
    bad("kind-release-holding-identity", enc({1: KIND_RELEASE, 3: SIGNED_IDENTITY}), "Kind 1 (release) holding an identity.")
    bad("kind-identity-holding-release", enc({1: KIND_IDENTITY, 2: r}), "Kind 2 (identity) holding a release.")
    bad("kind-4", enc({1: 4, 2: r}), "An unknown kind 4.")
    bad("two-parts", enc({1: KIND_RELEASE, 2: r, 4: rev}), "A release entry that also holds a revocation.")
    bad("no-part", enc({1: KIND_RELEASE}), "A kind and no part.")
    bad("release-version-0", enc(release_entry({**r, 1: 0})), "Release version 0 (versions start at 1).")
    bad("release-board-unknown", enc(release_entry({**r, 5: "raspberrypi"})), "A board that is not usbarmory, qemu or software.")
    bad("release-board-case", enc(release_entry({**r, 5: "USBarmory"})), "A board name in another case.")
    bad("release-firmware-31", enc(release_entry({**r, 6: r[6][:31]})), "A 31-byte firmware hash.")
    bad("release-applet-33", enc(release_entry({**r, 7: r[7] + b"\x00"})), "A 33-byte applet hash.")
    bad("release-boot-image-16", enc(release_entry({**r, 8: r[8][:16]})), "A 16-byte boot image hash.")
    bad("release-boot-image-empty", enc(release_entry({**r, 8: b""})),
        "A boot image hash present but empty: an empty one is encoded by leaving key 8 out, so this is a second encoding.")
    bad("release-name-129", enc(release_entry({**r, 2: "n" * 129})), "A 129-byte name (at most 128).")
    bad("release-missing-applet", enc(release_entry({k: v for k, v in r.items() if k != 7})), "A release without its applet hash.")
    bad("release-unknown-field", enc(release_entry({**r, 9: 1})), "A release with an unknown key 9.")
    bad("entry-unknown-field", enc({1: KIND_RELEASE, 2: r, 5: 0}), "An entry with an unknown key 5.")
    bad("revocation-hash-31", enc(revocation_entry(KIND_RELEASE, r[6][:31], "x")), "A 31-byte revoked hash.")
    bad("revocation-of-revocation", enc(revocation_entry(KIND_REVOCATION, r[6], "x")), "A revocation of a revocation (target 3).")
    bad("revocation-reason-257", enc(revocation_entry(KIND_RELEASE, r[6], "r" * 257)), "A 257-byte reason (at most 256).")
    bad("identity-body-513", enc(identity_entry(signed_identity(IDENTITY_BODY + bytes(513 - len(IDENTITY_BODY))))),
        "An identity bundle whose body is 513 bytes (at most 512).")
    bad("identity-body-not-identity", enc(identity_entry(signed_identity(enc({1: 1, 2: "not an identity"})))),
        "A signed bundle whose body is not an Identity.")
    bad("identity-signature-63", enc(identity_entry({1: IDENTITY_BODY, 2: SIGNED_IDENTITY[2][:63]})),
        "An identity bundle with a 63-byte signature.")
    bad("oversized", enc(revocation_entry(KIND_RELEASE, r[6], "r" * 2100)), "An entry of more than 2048 bytes.")

    # Non-canonical encodings of the valid release-usbarmory entry: one entry
    # has one encoding, so one leaf hash.
    good = enc(release_entry(r))
    assert good[:3] == bytes([0xA2, 0x01, 0x01]) and good[3] == 0x02, good[:4].hex()
    inner = good[4:]
    bad("noncanonical-key-order", bytes([0xA2, 0x02]) + inner + bytes([0x01, 0x01]),
        "The entry's keys in the order 2, 1.")
    bad("noncanonical-wide-integer", bytes([0xA2, 0x01, 0x18, 0x01, 0x02]) + inner,
        "Kind 1 encoded in two bytes (18 01).")
    bad("noncanonical-indefinite-map", bytes([0xBF, 0x01, 0x01, 0x02]) + inner + b"\xff",
        "The entry map in indefinite length (bf ... ff).")
    fw = r[6]
    i = good.index(bytes([0x58, 0x20]) + fw)
    bad("noncanonical-indefinite-bytes", good[:i] + bytes([0x5F, 0x50]) + fw[:16] + bytes([0x50]) + fw[16:] + b"\xff" +
        good[i + 34:], "The firmware hash as an indefinite-length byte string of two chunks.")
    bad("noncanonical-wide-length", good[:i] + bytes([0x59, 0x00, 0x20]) + good[i + 2:],
        "The firmware hash's length in two bytes (59 0020).")
    bad("duplicate-key", bytes([0xA3, 0x01, 0x01, 0x02]) + inner + bytes([0x01, 0x01]), "Key 1 twice.")
    bad("trailing-byte", good + b"\x00", "A valid entry followed by one more byte.")
    bad("tagged", bytes([0xD8, 0x18, 0x58, len(good)]) + good, "A valid entry wrapped in tag 24.")
    bad("empty", b"", "No bytes.")


# ---- The log -------------------------------------------------------------------

def log_entries(n):
    """The example log: releases, with an identity at index 5 and
    revocations at 6 and 150."""
    out = []
    for i in range(n):
        if i == 5:
            out.append(enc(identity_entry(SIGNED_IDENTITY)))
        elif i == 6:
            out.append(enc(revocation_entry(KIND_IDENTITY, BUNDLE_HASH, "device lost")))
        elif i == 150:
            out.append(enc(revocation_entry(KIND_RELEASE, RELEASE_1[6], "CVE-2026-0001")))
        else:
            out.append(enc(release_entry(release_map(i + 1, BOARDS[i % 3]))))
    return out


LOG_TREE = Tree(log_entries(300))
SIZES = [1, 2, 3, 7, 8, 300]


def log_checkpoint(size, tree=LOG_TREE, witnesses=(0, 1)):
    return witnessed(checkpoint_text(ORIGIN, size, tree.root(size)), witnesses, T0 + size)


def checkpoint_cases():
    text = checkpoint_text(ORIGIN, 7, LOG_TREE.root(7))
    root = LOG_TREE.root(7)
    w1, w2, w3 = (w.name for w in W)
    ls = LOG.sign(text)
    c = [W[i].sign(text, T0 + i) for i in range(3)]

    def ok(name, raw, names, times, comment, size=7, rt=root):
        case("checkpoint", name, "valid", raw, comment, policy=POLICY, size=size, root=rt, witnessed=",".join(names),
             cosigned=times)

    ok("log-and-2-witnesses", note(text, ls, c[0], c[1]), [w1, w2], [T0, T0 + 1],
       "Signed by the release key, cosigned by witnesses 1 and 2 (quorum 2).")
    ok("log-and-3-witnesses", note(text, ls, c[0], c[1], c[2]), [w1, w2, w3], [T0, T0 + 1, T0 + 2], "Cosigned by all three witnesses.")
    ok("witnesses-first", note(text, c[2], c[0], ls), [w3, w1], [T0 + 2, T0],
       "The cosignatures before the log's signature: signature lines are in no set order.")
    ok("outside-witness-ignored", note(text, ls, c[0], OUTSIDE.sign(text, T0 + 9), c[2]), [w1, w3], [T0, T0 + 2],
       "Witnesses 1 and 3 and a witness outside the policy, whose cosignature is ignored (signed-note: unknown keys are ignored).")
    ok("other-release-key-ignored", note(text, ls, OTHER_LOG.sign(text), c[0], c[1]), [w1, w2], [T0, T0 + 1],
       "Also signed by another key of the same name as the release key: another key ID, so an unknown key, ignored.")
    ext = text + b"extension line\n"
    ok("extension-line", note(ext, LOG.sign(ext), W[0].sign(ext, T0), W[1].sign(ext, T0 + 1)), [w1, w2], [T0, T0 + 1],
       "A checkpoint with one extension line (tlog-checkpoint allows them; both kinds of signature cover it).")
    empty = checkpoint_text(ORIGIN, 0, sha256(b""))
    ok("empty-tree", witnessed(empty), [w1, w2], [T0, T0 + 1], "The empty tree: size 0 and the root SHA-256 of nothing.", 0, sha256(b""))

    def refused(name, expect, raw, comment, policy=POLICY):
        case("checkpoint", name, expect, raw, comment, policy=policy)

    refused("log-and-1-witness", "not-witnessed", note(text, ls, c[0]), "One cosignature of the two the policy requires.")
    refused("log-only", "not-witnessed", note(text, ls), "Signed by the release key alone.")
    refused("duplicate-cosignature-line", "not-witnessed", note(text, ls, c[0], c[0]),
            "Witness 1's line twice. A note signer is its (name, key ID): the same key twice is one witness,\n"
            "so this is 1 of 2 and not witnessed (x/mod/sumdb/note drops a repeated signer's line and\n"
            "releaselog counts distinct (name, key ID) pairs); it is not a bad note, as both lines verify.")
    refused("same-witness-two-times", "not-witnessed", note(text, ls, c[0], W[0].sign(text, T0 + 60)),
            "Witness 1 cosigned twice, at two times: two valid signatures by one key are one witness.")
    refused("outside-witness-counted", "not-witnessed", note(text, ls, c[0], OUTSIDE.sign(text, T0 + 9)),
            "Witness 1 and a witness outside the policy: only witness 1 counts.")
    refused("witness-as-plain-ed25519", "not-witnessed", note(text, ls, c[0], W[1].as_alg(ALG_ED25519).sign(text)),
            "Witness 2's key signing as a plain Ed25519 note key (type 0x01), not cosignature/v1 (0x04):\n"
            "another key ID, so an unknown key, and only witness 1 counts.")
    refused("other-release-key", "bad-checkpoint", note(text, OTHER_LOG.sign(text), c[0], c[1]),
            "Signed by another key named after the origin (not the pinned release key), cosigned by witnesses 1 and 2.")
    other = checkpoint_text("log.other.example/releases", 7, root)
    refused("other-origin", "bad-checkpoint", note(other, LOG.sign(other), W[0].sign(other, T0), W[1].sign(other, T0 + 1)),
            "A checkpoint of another origin, signed by the pinned release key and cosigned by witnesses 1 and 2.")
    renamed = Key("log.other.example/releases", seq(32, 0x60), ALG_ED25519)
    refused("release-key-under-other-name", "bad-checkpoint", note(other, renamed.sign(other), W[0].sign(other, T0), W[1].sign(other, T0 + 1)),
            "The release key's key material under another origin's name: another key ID, so no signature of the pinned key.")
    refused("no-log-signature", "bad-checkpoint", note(text, c[0], c[1], c[2]), "Cosigned by all three witnesses, not signed by the release key.")
    bad_log = bytearray(ls)
    bad_log[-5] ^= 0x01  # a base64 character of the signature, not of the key ID
    refused("log-signature-damaged", "bad-checkpoint", note(text, bytes(bad_log), c[0], c[1]),
            "The release key's signature with one bit changed.")
    other_root = checkpoint_text(ORIGIN, 7, LOG_TREE.root(8))
    refused("witness-signed-other-checkpoint", "bad-checkpoint", note(text, ls, c[0], W[1].sign(other_root, T0 + 1)),
            "Witness 2's line is its cosignature of another checkpoint: a known key whose signature fails;\n"
            "signed-note says a client SHOULD then reject the whole note, and releaselog does.")
    t_sig = W[1].sign(text, T0 + 1)
    raw = base64.b64decode(t_sig.split(b" ")[-1])
    forged_time = raw[:4] + struct.pack(">Q", T0 + 2) + raw[12:]
    refused("cosignature-time-changed", "bad-checkpoint", note(text, ls, c[0], line(W[1].name, W[1].key_id(), forged_time[4:])),
            "Witness 2's cosignature with its timestamp changed after signing: the signed message holds the time line.")
    refused("size-leading-zero", "bad-checkpoint", witnessed(text.replace(b"\n7\n", b"\n007\n")),
            "The size line 007: tlog-checkpoint's size has no leading zeroes, so this is not a checkpoint (even signed).")
    root_line = b64(root).encode()
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(root_line[-2])  # its two low bits are padding, zero in the canonical form
    assert last & 3 == 0
    noncanon = root_line[:-2] + bytes([alphabet[last | 1]]) + b"="
    assert base64.b64decode(noncanon) == root and noncanon != root_line
    refused("root-noncanonical-base64", "bad-checkpoint", witnessed(text.replace(root_line, noncanon)),
            "The root in base64 with non-zero padding bits: another text for the same root, not the checkpoint's.")
    refused("root-31-bytes", "bad-checkpoint", witnessed(checkpoint_text(ORIGIN, 7, root[:31])), "A 31-byte root hash.")
    refused("no-blank-line", "bad-checkpoint", text + ls + c[0] + c[1], "No blank line between the text and its signatures.")

    def bad_policy(name, policy, comment):
        case("checkpoint", name, "bad-policy", note(text, ls, c[0], c[1]), comment, policy=policy)

    bad_policy("policy-quorum-0", policy_text(quorum=0), "A policy with quorum 0: every checkpoint would need no witness.")
    bad_policy("policy-quorum-4-of-3", policy_text(quorum=4), "A quorum larger than the witnesses.")
    bad_policy("policy-witness-twice", policy_text(witnesses=[W[0].vkey(), W[0].vkey(), W[1].vkey()]), "Witness 1 listed twice.")
    bad_policy("policy-log-key-other-name", policy_text(log_key=Key("other.example/log", seq(32, 0x60), ALG_ED25519).vkey()),
               "A release key whose name is not the origin.")


# ---- Freshness (max-age) -------------------------------------------------------

NOW = T0 + 30 * 86400  # the verifier's clock in the freshness cases: 2026-01-31T00:00:00Z
MAX_AGE = 168 * 3600   # the policy's "max-age 168h"
SKEW = 3600            # a cosignature dated more than this after the clock does not count


def freshness_cases():
    """Checkpoints verified with a clock (the case's now) under a policy
    with max-age 168h and quorum 2: fresh when at least 2 distinct policy
    witnesses cosigned within 168h before now, a cosignature dated more
    than an hour after now not counting."""
    text = checkpoint_text(ORIGIN, 7, LOG_TREE.root(7))
    root = LOG_TREE.root(7)
    ls = LOG.sign(text)
    policy = policy_text(max_age="168h")

    def fresh(name, expect, cosigs, comment, pol=policy):
        """cosigs: (witness index, time) in signature order."""
        raw = note(text, ls, *(W[i].sign(text, t) for i, t in cosigs))
        headers = {"now": NOW}
        if expect == "valid":
            seen, names, times = set(), [], []
            for i, t in cosigs:
                if i not in seen:
                    seen.add(i)
                    names.append(W[i].name)
                    times.append(t)
            headers.update(size=7, root=root, witnessed=",".join(names), cosigned=times)
        case("checkpoint", name, expect, raw, comment, policy=pol, **headers)

    fresh("fresh-recent", "valid", [(0, NOW - 3600), (1, NOW - 60)], "Witnesses 1 and 2 cosigned an hour and a minute before now.")
    fresh("fresh-at-max-age", "valid", [(0, NOW - MAX_AGE), (1, NOW - MAX_AGE)],
          "Both cosignatures exactly 168h before now: at most max-age old is fresh.")
    fresh("stale-one-second-over", "stale", [(0, NOW - MAX_AGE - 1), (1, NOW - MAX_AGE)],
          "Witness 1 cosigned 168h and one second before now: only one of the two required is within max-age.")
    fresh("stale-both-old", "stale", [(0, NOW - 8 * 86400), (1, NOW - 9 * 86400), (2, NOW - 10 * 86400)],
          "All three witnesses cosigned 8 to 10 days before now: a validly witnessed checkpoint, but old\n"
          "(a host that keeps serving it could hide what the log added since).")
    fresh("stale-one-fresh-quorum-2", "stale", [(0, NOW), (1, NOW - 30 * 86400)],
          "Witness 1 cosigned now, witness 2 thirty days ago: one fresh cosignature of the two the quorum needs.")
    fresh("stale-future-dated", "stale", [(0, NOW), (1, NOW + SKEW + 1)],
          "Witness 2's cosignature is dated an hour and a second after now: it does not count, leaving one.")
    fresh("fresh-future-within-skew", "valid", [(0, NOW), (1, NOW + SKEW)],
          "Witness 2's cosignature is dated exactly an hour after now: within the allowed skew, it counts.")
    fresh("fresh-third-witness", "valid", [(0, NOW - 20 * 86400), (1, NOW - 86400), (2, NOW - 120)],
          "Witness 1 is old, witnesses 2 and 3 fresh: any 2 of the policy's witnesses will do.")
    fresh("stale-same-witness-twice", "stale", [(0, NOW - 60), (0, NOW - 30), (1, NOW - 20 * 86400)],
          "Witness 1 cosigned twice (both recent), witness 2 long ago: one witness is one witness, one fresh of two.")
    fresh("no-max-age-old", "valid", [(0, NOW - 300 * 86400), (1, NOW - 300 * 86400)],
          "A policy without max-age: cosignatures 300 days old, and the time is not checked.", pol=POLICY)


def policy_cases():
    """The policy's text form, max-age line included: a valid one must give
    max-age-seconds (0: none) and print back as canonical."""
    def valid(name, text, max_age_s, canonical, comment):
        case("policy", name, "valid", text, comment, max_age_seconds=max_age_s, canonical=canonical)

    valid("no-max-age", POLICY, 0, POLICY, "The example policy: no max-age line, no bound on a checkpoint's age.")
    valid("max-age-168h", policy_text(max_age="168h"), MAX_AGE, policy_text(max_age="168h"), "max-age 168h: a week.")
    valid("max-age-90m", policy_text(max_age="90m"), 5400, policy_text(max_age="90m"), "90 minutes: not whole hours, printed in minutes.")
    valid("max-age-3600s", policy_text(max_age="3600s"), 3600, policy_text(max_age="1h"),
          "3600s reads as an hour and prints as 1h (the largest unit that divides it).")
    valid("max-age-120m", policy_text(max_age="120m"), 7200, policy_text(max_age="2h"), "120m prints as 2h.")
    valid("max-age-min", policy_text(max_age="60s"), 60, policy_text(max_age="1m"), "The smallest max-age, a minute.")
    valid("max-age-max", policy_text(max_age="8760h"), 8760 * 3600, policy_text(max_age="8760h"), "The largest max-age, 365 days.")
    first = b"# pinned\nmax-age 24h\n" + POLICY
    valid("max-age-first", first, 86400, policy_text(max_age="24h"),
          "A comment and the max-age line before the others: lines are in any order; printed last.")
    for name, value, why in [
        ("zero", "0h", "zero"), ("59s", "59s", "under a minute"), ("8761h", "8761h", "over 365 days"),
        ("525601m", "525601m", "over 365 days, in minutes"), ("leading-zero", "07h", "a leading zero"),
        ("fraction", "1.5h", "a fraction"), ("two-units", "1h30m", "two units"), ("days", "7d", "a unit that is not s, m or h"),
        ("upper-case", "5H", "an upper-case unit"), ("plus", "+5h", "a sign"), ("minus", "-5h", "a negative"),
        ("no-number", "h", "no number"), ("no-unit", "168", "no unit"), ("empty", "", "no value"),
        ("space-inside", "5 h", "a space between number and unit"), ("huge", "99999999999h", "eleven digits"),
    ]:
        case("policy", f"max-age-{name}", "bad-policy", POLICY + f"max-age {value}\n".encode(), f"max-age {value!r}: {why}.")
    case("policy", "max-age-twice", "bad-policy", POLICY + b"max-age 168h\nmax-age 168h\n", "Two max-age lines.")


# ---- Proof bundles ---------------------------------------------------------------

def proof_bundle(cp, index, data, path):
    return enc({1: cp, 2: index, 3: data, 4: path})


def proof_cases():
    t = LOG_TREE
    for size in SIZES:
        cp = log_checkpoint(size)
        for i in sorted({0, size // 2, size - 1} | ({1, 5, 6, 150, 255, 256} if size == 300 else set())):
            if i >= size:
                continue
            path = t.path(i, size)
            assert verify_inclusion(i, size, t.hashes[i], path, t.root(size))
            case("proof", f"size-{size}-index-{i}", "included", proof_bundle(cp, i, t.leaves[i], path),
                 f"Entry {i} of a log of {size}, with its inclusion proof of {len(path)} hashes.",
                 policy=POLICY, index=i, size=size, leaf_hash=t.hashes[i], root=t.root(size))

    def broken(name, size, index, data, path, comment, expect="not-included", cp=None):
        if expect == "not-included":
            assert not verify_inclusion(index, size, leaf_hash(data), path, t.root(size))
        case("proof", name, expect, proof_bundle(cp or log_checkpoint(size), index, data, path), comment, policy=POLICY)

    for size, i in [(7, 3), (300, 150)]:
        p = t.path(i, size)
        broken(f"size-{size}-wrong-index", size, i + 1, t.leaves[i], p, f"Entry {i}'s proof, claimed at index {i + 1}.")
        broken(f"size-{size}-other-entry", size, i, t.leaves[i + 1], p, f"Entry {i + 1} with entry {i}'s index and proof.")
        broken(f"size-{size}-short-path", size, i, t.leaves[i], p[:-1], "The proof without its last hash.")
        broken(f"size-{size}-long-path", size, i, t.leaves[i], p + [t.root(size)], "The proof with the root appended.")
        broken(f"size-{size}-path-reversed", size, i, t.leaves[i], p[::-1], "The proof's hashes in reverse order.")
        flipped = [p[0][:31] + bytes([p[0][31] ^ 1])] + p[1:]
        broken(f"size-{size}-path-bit", size, i, t.leaves[i], flipped, "One bit changed in the proof's first hash.")
        broken(f"size-{size}-index-is-size", size, size, t.leaves[size - 1], t.path(size - 1, size),
               f"Index {size}, one beyond the last entry, with the last entry and its proof.")
    broken("size-7-index-2^63", 7, 2**63, t.leaves[3], t.path(3, 7), "Index 2^63.")
    broken("size-1-long-path", 1, 0, t.leaves[0], [sha256(b"")],
           "The one entry of a tree of 1 with a proof of one hash (it needs none).")
    broken("size-8-checkpoint-of-7", 7, 3, t.leaves[3], t.path(3, 8), "Entry 3's proof in the tree of 8, against the checkpoint of 7.")

    p = t.path(3, 7)
    broken("checkpoint-not-witnessed", 7, 3, t.leaves[3], p, "A valid proof to a checkpoint only witness 1 cosigned.",
           "not-witnessed", log_checkpoint(7, witnesses=(0,)))
    text = checkpoint_text(ORIGIN, 7, t.root(7))
    broken("checkpoint-other-release-key", 7, 3, t.leaves[3], p, "A valid proof to a checkpoint signed by another release key.",
           "bad-checkpoint", note(text, OTHER_LOG.sign(text), W[0].sign(text, T0), W[1].sign(text, T0 + 1)))

    # A log that holds a malformed entry (a log that breaks the rules): the
    # proof is sound, the entry is still refused.
    bad_leaf = enc(release_entry({**RELEASE_1, 1: 0}))
    bt = Tree([t.leaves[0], bad_leaf])
    case("proof", "included-malformed-entry", "malformed",
         proof_bundle(witnessed(checkpoint_text(ORIGIN, 2, bt.root(2))), 1, bad_leaf, bt.path(1, 2)),
         "A sound proof of a malformed entry (a release of version 0) in a log that accepted it: the entry is refused.",
         policy=POLICY)
    cp = log_checkpoint(7)
    good = proof_bundle(cp, 3, t.leaves[3], p)
    assert good[:2] == bytes([0xA4, 0x01])
    case("proof", "bundle-unknown-field", "malformed", bytes([0xA5]) + good[1:] + bytes([0x05, 0x00]),
         "A valid proof bundle with an unknown key 5.", policy=POLICY)
    i = good.index(bytes([0x02, 0x03, 0x03]))
    case("proof", "bundle-wide-index", "malformed", good[:i] + bytes([0x02, 0x18, 0x03]) + good[i + 2:],
         "A valid proof bundle with index 3 in two bytes (18 03).", policy=POLICY)
    case("proof", "bundle-path-not-array", "malformed",
         enc({1: cp, 2: 3, 3: t.leaves[3], 4: b"".join(p)}), "The inclusion proof as one byte string.", policy=POLICY)


# ---- Views -------------------------------------------------------------------------

def view_cases():
    t = LOG_TREE
    fork6 = Tree(t.leaves[:6] + [enc(release_entry(release_map(1000)))])  # differs at index 6
    fork4 = Tree(t.leaves[:4] + [enc(release_entry(release_map(1001)))] + t.leaves[5:8])  # differs at index 4

    def step(tree, a, b, entries=None, cp=None):
        return [cp or log_checkpoint(b, tree), tree.leaves[a:b] if entries is None else entries]

    def seqcase(name, expect, steps, final, comment):
        size, tree = final
        case("view", name, expect, enc(steps), comment, policy=POLICY, steps=len(steps), final_size=size,
             final_root=tree.root(size) if size else b"")

    seqcase("grow-1-3-7-8-300", "consistent",
            [step(t, 0, 1), step(t, 1, 3), step(t, 3, 7), step(t, 7, 8), step(t, 8, 300)], (300, t),
            "From empty to 1, 3, 7, 8 and 300 entries, each step with the entries it adds.")
    seqcase("grow-0-300", "consistent", [step(t, 0, 300)], (300, t), "From empty to 300 entries at once.")
    seqcase("same-checkpoint-twice", "consistent", [step(t, 0, 7), step(t, 7, 7)], (7, t),
            "A tree of 7, then the same checkpoint again with no entries.")
    seqcase("same-size-other-cosigners", "consistent", [step(t, 0, 7), step(t, 7, 7, cp=log_checkpoint(7, witnesses=(1, 2)))],
            (7, t), "A tree of 7, then the same tree cosigned by witnesses 2 and 3.")
    empty_cp = witnessed(checkpoint_text(ORIGIN, 0, sha256(b"")))
    seqcase("empty-tree", "consistent", [[empty_cp, []]], (0, t), "The empty tree: size 0, root SHA-256 of nothing.")
    seqcase("empty-tree-then-3", "consistent", [[empty_cp, []], step(t, 0, 3)], (3, t), "The empty tree, then 3 entries.")
    seqcase("empty-tree-other-root", "inconsistent", [[witnessed(checkpoint_text(ORIGIN, 0, sha256(b"x"))), []]], (0, t),
            "A checkpoint of size 0 whose root is not the empty tree's.")
    seqcase("fork-same-size", "inconsistent", [step(t, 0, 7), step(fork6, 7, 7)], (7, t),
            "A tree of 7, then another tree of 7 (entry 6 differs): two roots for one size.")
    seqcase("fork-then-grow", "inconsistent", [step(t, 0, 7), step(fork4, 7, 8)], (7, t),
            "A tree of 7, then a tree of 8 whose entry 4 differs, with its entry 7: not an extension of the first.")
    seqcase("fork-from-view-size", "inconsistent", [step(t, 0, 3), step(fork4, 3, 7, t.leaves[3:7])], (3, t),
            "A tree of 3, then the fork's checkpoint of 7 with the genuine entries 3..6: they do not hash to its root.")
    seqcase("wrong-entries", "inconsistent",
            [step(t, 0, 3), step(t, 3, 7, t.leaves[3:5] + [fork6.leaves[6]] + t.leaves[6:7])], (3, t),
            "A tree of 3, then the genuine checkpoint of 7 with entry 5 replaced.")
    seqcase("entries-reordered", "inconsistent", [step(t, 0, 3), step(t, 3, 7, [t.leaves[4], t.leaves[3]] + t.leaves[5:7])],
            (3, t), "A tree of 3, then the checkpoint of 7 with entries 3 and 4 swapped.")
    seqcase("shrink", "inconsistent", [step(t, 0, 7), [log_checkpoint(3), []]], (7, t),
            "A tree of 7, then the genuine checkpoint of 3: a view never goes back.")
    seqcase("shrink-to-empty", "inconsistent", [step(t, 0, 3), [empty_cp, []]], (3, t),
            "A tree of 3, then the empty tree.")


entry_cases()
checkpoint_cases()
freshness_cases()
policy_cases()
proof_cases()
view_cases()
casefiles.write(HERE, GROUPS, CASES)
