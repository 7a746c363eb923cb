"""Argon2id (RFC 9106, version 0x13) in pure Python, for gen_vectors.py.

Why by hand: Coffer stretches with an EMPTY salt (SPEC.md, "OPAQUE";
REALMS.md 5.1), as Go's argon2.IDKey allows, but the reference C library
(libargon2, which Debian's python3-argon2 wraps) refuses any salt shorter
than 8 bytes (ARGON2_SALT_TOO_SHORT), whatever the caller. This module is
checked against RFC 9106's Argon2id test vector (5.3) and, where the C
library is present, against it for salts it accepts; then it runs with the
empty salt. It is slow (minutes for 64 MiB and 3 passes) and not constant
time; it makes test vectors only.
"""

import hashlib
import struct

M64 = (1 << 64) - 1
VERSION = 0x13
ARGON2ID = 2


def _h(n, data):
    return hashlib.blake2b(data, digest_size=n).digest()


def h_prime(n, x):
    """H' of RFC 9106 3.3: the variable-length hash."""
    x = struct.pack("<I", n) + x
    if n <= 64:
        return _h(n, x)
    r = -(-n // 32) - 2
    v = _h(64, x)
    out = v[:32]
    for _ in range(r - 1):
        v = _h(64, v)
        out += v[:32]
    return out + _h(n - 32 * r, v)


def _p(v, i0, i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15):
    """The permutation P of RFC 9106 3.6 over the 16 words v[i0..i15]."""
    for a, b, c, d in ((i0, i4, i8, i12), (i1, i5, i9, i13), (i2, i6, i10, i14), (i3, i7, i11, i15),
                       (i0, i5, i10, i15), (i1, i6, i11, i12), (i2, i7, i8, i13), (i3, i4, i9, i14)):
        va, vb, vc, vd = v[a], v[b], v[c], v[d]
        va = (va + vb + 2 * (va & 0xFFFFFFFF) * (vb & 0xFFFFFFFF)) & M64
        vd ^= va
        vd = (vd >> 32) | ((vd << 32) & M64)
        vc = (vc + vd + 2 * (vc & 0xFFFFFFFF) * (vd & 0xFFFFFFFF)) & M64
        vb ^= vc
        vb = (vb >> 24) | ((vb << 40) & M64)
        va = (va + vb + 2 * (va & 0xFFFFFFFF) * (vb & 0xFFFFFFFF)) & M64
        vd ^= va
        vd = (vd >> 16) | ((vd << 48) & M64)
        vc = (vc + vd + 2 * (vc & 0xFFFFFFFF) * (vd & 0xFFFFFFFF)) & M64
        vb ^= vc
        vb = (vb >> 63) | ((vb << 1) & M64)
        v[a], v[b], v[c], v[d] = va, vb, vc, vd


_ROWS = [tuple(range(16 * i, 16 * i + 16)) for i in range(8)]
_COLS = [tuple(w for r in range(8) for w in (16 * r + 2 * j, 16 * r + 2 * j + 1)) for j in range(8)]


def compress(x, y):
    """G of RFC 9106 3.5 on two blocks of 128 64-bit words."""
    r = [a ^ b for a, b in zip(x, y)]
    q = r[:]
    for idx in _ROWS:
        _p(q, *idx)
    for idx in _COLS:
        _p(q, *idx)
    return [a ^ b for a, b in zip(q, r)]


def _words(b):
    return list(struct.unpack("<128Q", b))


def _bytes(w):
    return struct.pack("<128Q", *w)


ZERO = [0] * 128


def argon2id(password, salt, t, m, p, n, secret=b"", ad=b""):
    """Argon2id(password, salt) with t passes, m KiB, p lanes, n output bytes."""
    h0 = _h(64, struct.pack("<6I", p, n, m, t, VERSION, ARGON2ID) +
            struct.pack("<I", len(password)) + password + struct.pack("<I", len(salt)) + salt +
            struct.pack("<I", len(secret)) + secret + struct.pack("<I", len(ad)) + ad)
    m2 = 4 * p * (m // (4 * p))
    q = m2 // p
    seg = q // 4
    mem = [[None] * q for _ in range(p)]
    for lane in range(p):
        for j in (0, 1):
            mem[lane][j] = _words(h_prime(1024, h0 + struct.pack("<II", j, lane)))
    for pas in range(t):
        for sl in range(4):
            independent = pas == 0 and sl < 2
            for lane in range(p):
                addresses, counter = None, 0
                start = 2 if pas == 0 and sl == 0 else 0
                for idx in range(start, seg):
                    j = sl * seg + idx
                    prev = mem[lane][j - 1 if j else q - 1]
                    if independent:
                        if addresses is None or idx % 128 == 0:
                            counter += 1
                            z = [pas, lane, sl, m2, t, ARGON2ID, counter] + [0] * 121
                            addresses = compress(ZERO, compress(ZERO, z))
                        rnd = addresses[idx % 128]
                    else:
                        rnd = prev[0]
                    j1, j2 = rnd & 0xFFFFFFFF, rnd >> 32
                    ref_lane = lane if pas == 0 and sl == 0 else j2 % p
                    same = ref_lane == lane
                    # The reference area (RFC 9106 3.4.1.2): finished blocks not yet overwritten,
                    # without the previous block; other lanes only offer finished segments.
                    if pas == 0:
                        size = sl * seg + idx - 1 if same else sl * seg - (1 if idx == 0 else 0)
                        first = 0
                    else:
                        size = q - seg + idx - 1 if same else q - seg - (1 if idx == 0 else 0)
                        first = 0 if sl == 3 else (sl + 1) * seg
                    xx = (j1 * j1) >> 32
                    rel = size - 1 - ((size * xx) >> 32)
                    ref = mem[ref_lane][(first + rel) % q]
                    new = compress(prev, ref)
                    if pas > 0:
                        new = [a ^ b for a, b in zip(new, mem[lane][j])]
                    mem[lane][j] = new
    c = mem[0][q - 1]
    for lane in range(1, p):
        c = [a ^ b for a, b in zip(c, mem[lane][q - 1])]
    return h_prime(n, _bytes(c))


# RFC 9106 5.3, the Argon2id test vector.
assert argon2id(b"\x01" * 32, b"\x02" * 16, 3, 32, 4, 32, b"\x03" * 8, b"\x04" * 12).hex() == \
    "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
