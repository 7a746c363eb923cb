"""Helpers the independent vector generators share (see vectorfile.go).

The generators are independent of the Go code under test, not of each
other: this is the writer of the case-file format that vectorfile.go
reads, and HChaCha20 written out from its draft, which more than one
on-disk format needs. A generator imports it with

    sys.path.insert(0, os.path.join(HERE, <path to repo>, "internal", "vectorfile"))
    import casefiles
"""

import hashlib
import os
import shutil
import struct
import sys


def write(here, groups, cases):
    """Remove the case folders under here, write every case of cases (path
    -> text, whose first line is `expect: OUTCOME`) and SHA256SUMS, and
    print the count per outcome on stderr."""
    for g in groups:
        shutil.rmtree(os.path.join(here, g), ignore_errors=True)
        os.makedirs(os.path.join(here, g))
    sums = []
    counts = {}
    for path in sorted(cases):
        data = cases[path].encode()
        with open(os.path.join(here, path), "wb") as f:
            f.write(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {path}\n")
        e = cases[path].split("\n", 1)[0].split(": ", 1)[1]
        counts[e] = counts.get(e, 0) + 1
    with open(os.path.join(here, "SHA256SUMS"), "w") as f:
        f.writelines(sums)
    print(f"{len(cases)} cases: " + ", ".join(f"{n} {e}" for e, n in sorted(counts.items())), file=sys.stderr)


def _rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key, n16):
    """HChaCha20 (draft-irtf-cfrg-xchacha, 2.2), written out: the subkey
    step of XChaCha20-Poly1305, which the `cryptography` package lacks."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574] + list(struct.unpack("<8I", key)) + \
        list(struct.unpack("<4I", n16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


# The test vector of draft-irtf-cfrg-xchacha-03, 2.2.1.
assert hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex() == \
    "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
