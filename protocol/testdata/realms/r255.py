"""ristretto255 and the RFC 9497 VOPRF (mode 0x01, ristretto255-SHA512),
written out in Python integers for gen_vectors.py.

Independent of the Go code under test and of any ristretto255 library: the
group follows RFC 9496 (sections 4.2-4.4, decode, encode, equality and the
one-way map of element derivation), hash-to-group uses RFC 9380's
expand_message_xmd with SHA-512 (5.3.1), and the VOPRF follows RFC 9497
(sections 2.2, 3.2, 3.3.2, 4.1). Nothing here is constant time; it makes
test vectors and never handles a real secret.
"""

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the group order, RFC 9496 4.1


def _inv(x):
    return pow(x, P - 2, P)


D = (-121665 * _inv(121666)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
assert SQRT_M1 * SQRT_M1 % P == P - 1


def _neg(x):
    return x % 2 == 1  # IS_NEGATIVE, RFC 9496 4.1: the low bit of the canonical value


def _abs(x):
    x %= P
    return (P - x) % P if _neg(x) else x


def sqrt_ratio_m1(u, v):
    """SQRT_RATIO_M1 of RFC 9496 4.2: (was_square, the nonnegative root of
    u/v or of SQRT_M1*u/v)."""
    u %= P
    v %= P
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    r = u * v3 % P * pow(u * v7 % P, (P - 5) // 8, P) % P
    check = v * r % P * r % P
    correct = check == u
    flipped = check == (-u) % P
    flipped_i = check == (-u * SQRT_M1) % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    return correct or flipped, _abs(r)


# Constants of RFC 9496 4.1, computed rather than copied, then checked
# against the values the RFC prints (its SQRT_AD_MINUS_ONE is the odd root).
SQRT_AD_MINUS_ONE = P - sqrt_ratio_m1((-D - 1) % P, 1)[1]
INVSQRT_A_MINUS_D = sqrt_ratio_m1(1, (-1 - D) % P)[1]
ONE_MINUS_D_SQ = (1 - D * D) % P
D_MINUS_ONE_SQ = (D - 1) * (D - 1) % P
assert SQRT_AD_MINUS_ONE == 25063068953384623474111414158702152701244531502492656460079210482610430750235
assert INVSQRT_A_MINUS_D == 54469307008909316920995813868745141605393597292927456921205312896311721017578

IDENTITY = (0, 1, 1, 0)  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z


def add(p1, p2):
    """Edwards addition on -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032 5.1.4)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D % P * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def neg(p):
    x, y, z, t = p
    return ((-x) % P, y, z, (-t) % P)


def mul(k, p):
    """k·p for a scalar k (reduced mod L first), double and add."""
    k %= L
    r = IDENTITY
    while k:
        if k & 1:
            r = add(r, p)
        p = add(p, p)
        k >>= 1
    return r


def equal(p1, p2):
    """Equality of ristretto255 elements, RFC 9496 4.5."""
    x1, y1, _, _ = p1
    x2, y2, _, _ = p2
    return (x1 * y2 - y1 * x2) % P == 0 or (y1 * y2 - x1 * x2) % P == 0


def is_identity(p):
    return equal(p, IDENTITY)


def decode(b):
    """RFC 9496 4.3.1: an element, or None for an invalid encoding."""
    if len(b) != 32:
        return None
    s = int.from_bytes(b, "little")
    if s >= P or _neg(s):
        return None
    ss = s * s % P
    u1 = (1 - ss) % P
    u2 = (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 % P * u1) - u2_sqr) % P
    was_square, invsqrt = sqrt_ratio_m1(1, v * u2_sqr)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x % P * v % P
    x = _abs(2 * s * den_x)
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or _neg(t) or y == 0:
        return None
    return (x, y, 1, t)


def encode(p):
    """RFC 9496 4.3.2."""
    x0, y0, z0, t0 = p
    u1 = (z0 + y0) * (z0 - y0) % P
    u2 = x0 * y0 % P
    _, invsqrt = sqrt_ratio_m1(1, u1 * u2 % P * u2)
    den1 = invsqrt * u1 % P
    den2 = invsqrt * u2 % P
    z_inv = den1 * den2 % P * t0 % P
    rotate = _neg(t0 * z_inv % P)
    if rotate:
        x, y = y0 * SQRT_M1 % P, x0 * SQRT_M1 % P
        den_inv = den1 * INVSQRT_A_MINUS_D % P
    else:
        x, y, den_inv = x0, y0, den2
    if _neg(x * z_inv % P):
        y = (-y) % P
    s = _abs(den_inv * (z0 - y))
    return s.to_bytes(32, "little")


def _map(t):
    """MAP of RFC 9496 4.3.4."""
    r = SQRT_M1 * t % P * t % P
    u = (r + 1) * ONE_MINUS_D_SQ % P
    v = (-1 - r * D) * (r + D) % P
    was_square, s = sqrt_ratio_m1(u, v)
    if not was_square:
        s = (-_abs(s * t)) % P
        c = r
    else:
        c = P - 1
    n = (c * (r - 1) % P * D_MINUS_ONE_SQ - v) % P
    w0 = 2 * s * v % P
    w1 = n * SQRT_AD_MINUS_ONE % P
    w2 = (1 - s * s) % P
    w3 = (1 + s * s) % P
    return (w0 * w3 % P, w2 * w1 % P, w1 * w3 % P, w0 * w2 % P)


def from_uniform_bytes(b):
    """Element derivation, RFC 9496 4.3.4: 64 bytes to an element."""
    assert len(b) == 64
    r0 = int.from_bytes(b[:32], "little") % 2**255 % P
    r1 = int.from_bytes(b[32:], "little") % 2**255 % P
    return add(_map(r0), _map(r1))


G = decode(bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"))
assert G is not None
# RFC 9496 A.1: the encoding of 2·B, and the group's order.
assert encode(add(G, G)).hex() == "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919"
assert is_identity(add(mul(L - 1, G), G)) and not is_identity(G)
assert encode(IDENTITY) == bytes(32)


def expand_message_xmd(msg, dst, n):
    """RFC 9380 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    assert len(dst) <= 255 and n <= 255 * 64
    ell = -(-n // 64)
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + n.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    out = b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    for i in range(2, ell + 1):
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b)) + bytes([i]) + dst_prime).digest()
        out += b
    return out[:n]


# RFC 9380 K.3, expand_message_xmd(SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256",
# msg "", len_in_bytes 0x20.
assert expand_message_xmd(b"", b"QUUX-V01-CS02-with-expander-SHA512-256", 32).hex() == \
    "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"


def scalar(b):
    """A canonical 32-byte little-endian scalar, or None."""
    v = int.from_bytes(b, "little")
    return v if len(b) == 32 and v < L else None


def sbytes(k):
    return (k % L).to_bytes(32, "little")


# ---- RFC 9497, mode 0x01 (VOPRF), ristretto255-SHA512 ----------------------

MODE_VOPRF = 0x01
CONTEXT = b"OPRFV1-" + bytes([MODE_VOPRF]) + b"-ristretto255-SHA512"


def hash_to_group(x):
    return from_uniform_bytes(expand_message_xmd(x, b"HashToGroup-" + CONTEXT, 64))


def hash_to_scalar(x, dst=None):
    dst = b"HashToScalar-" + CONTEXT if dst is None else dst
    return int.from_bytes(expand_message_xmd(x, dst, 64), "little") % L


def _lp2(b):
    return len(b).to_bytes(2, "big") + b


def derive_key_pair(seed, info):
    """RFC 9497 3.2.1."""
    derive_input = seed + _lp2(info)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + CONTEXT)
        if sk:
            return sk, mul(sk, G)
    raise ValueError("DeriveKeyPairError")


def blind(inp, r):
    """RFC 9497 3.3.1 Blind with a fixed blind r."""
    el = hash_to_group(inp)
    if is_identity(el):
        raise ValueError("InvalidInputError")
    return mul(r, el)


def _composites(b, cs, ds, k=None):
    """ComputeComposites (2.2.1), or ComputeCompositesFast when k is given."""
    bm = encode(b)
    seed_dst = b"Seed-" + CONTEXT
    seed = hashlib.sha512(_lp2(bm) + _lp2(seed_dst)).digest()
    m, z = IDENTITY, IDENTITY
    for i, (c, d) in enumerate(zip(cs, ds)):
        di = hash_to_scalar(_lp2(seed) + i.to_bytes(2, "big") + _lp2(encode(c)) + _lp2(encode(d)) + b"Composite")
        m = add(mul(di, c), m)
        if k is None:
            z = add(mul(di, d), z)
    if k is not None:
        z = mul(k, m)
    return m, z


def _challenge(b, m, z, t2, t3):
    return hash_to_scalar(b"".join(_lp2(encode(e)) for e in (b, m, z, t2, t3)) + b"Challenge")


def generate_proof(k, a, b, cs, ds, r):
    """GenerateProof (2.2.1) with a fixed proof randomness r: c ‖ s."""
    m, z = _composites(b, cs, ds, k)
    c = _challenge(b, m, z, mul(r, a), mul(r, m))
    return sbytes(c) + sbytes((r - c * k) % L)


def verify_proof(a, b, cs, ds, proof):
    """VerifyProof (2.2.2)."""
    c, s = scalar(proof[:32]), scalar(proof[32:])
    if len(proof) != 64 or c is None or s is None:
        return False
    m, z = _composites(b, cs, ds)
    t2 = add(mul(s, a), mul(c, b))
    t3 = add(mul(s, m), mul(c, z))
    return _challenge(b, m, z, t2, t3) == c


def blind_evaluate(k, blinded, r):
    """RFC 9497 3.3.2 BlindEvaluate (a batch): (evaluated elements, proof)."""
    evaluated = [mul(k, b) for b in blinded]
    return evaluated, generate_proof(k, G, mul(k, G), blinded, evaluated, r)


def finalize_unblinded(inp, n):
    """The hash of Finalize and Evaluate over the unblinded element N."""
    return hashlib.sha512(_lp2(inp) + _lp2(encode(n)) + b"Finalize").digest()


def finalize(inputs, blinds, evaluated, blinded, pk, proof):
    """RFC 9497 3.3.2 Finalize (a batch): the outputs, or VerifyError."""
    if not verify_proof(G, pk, blinded, evaluated, proof):
        raise ValueError("VerifyError")
    return [finalize_unblinded(x, mul(pow(r, -1, L), e)) for x, r, e in zip(inputs, blinds, evaluated)]


def evaluate(k, inp):
    """RFC 9497 3.3.2 Evaluate."""
    el = hash_to_group(inp)
    if is_identity(el):
        raise ValueError("InvalidInputError")
    return finalize_unblinded(inp, mul(k, el))
