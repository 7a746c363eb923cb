#!/usr/bin/python3
"""Writes the Coffer client test vectors: one file per case (README.md).

Written from ../../SPEC.md alone, independently of the Go code under test:
HKDF-SHA256 and X25519 from Python's `cryptography`, Bech32 (BIP 173) and
CRC-16/IBM-3740 written out below, the backup's tar archive from Python's
tarfile, and its encryption by the stock `age` command-line tool
(`age -r RECIPIENT`), to the recipient derived here.

age encryption is randomized, so the .age files next to this script are
made only when missing, or when asked with --new-age; otherwise the script
checks that `age -d` opens each with the identity derived here and gives
exactly the archive built here, and writes the cases from them. That keeps
`make vectors` deterministic. Run from anywhere, with the system Python:

    /usr/bin/python3 gen_vectors.py            # keep the .age files
    /usr/bin/python3 gen_vectors.py --new-age  # encrypt the archives again

It removes the case folders, writes every case again and writes SHA256SUMS,
which the Go tests check so that an edited file fails them.
"""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "internal", "vectorfile"))
import casefiles  # noqa: E402  the case-file writer the generators share
GROUPS = ["keys", "keytext", "backup", "padme"]


def seq(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


CASES = {}


def case(group, name, expect, data, comment, **headers):
    """Records one case: group/name, the expected outcome, the bytes under
    test, a comment, and named inputs or outputs (bytes as hex, str as is)."""
    assert group in GROUPS, group
    path = f"{group}/{name}"
    assert path not in CASES, path
    lines = [f"expect: {expect}"]
    for k, v in headers.items():
        k = k.replace("_", "-")
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).hex()
        assert "\n" not in str(v), (path, k)
        lines.append(f"{k}: {v}")
    for c in comment.strip().split("\n"):
        lines.append(f"comment: {c.strip()}")
    h = data.hex()
    body = "\n".join(h[i:i + 64] for i in range(0, len(h), 64))
    CASES[path] = "\n".join(lines) + "\n\n" + body + ("\n" if body else "")


# ---- Bech32, BIP 173 ---------------------------------------------------------

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_GEN = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]


def bech32_polymod(values):
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= BECH32_GEN[i]
    return chk


def bech32_hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def convertbits_8_to_5(data):
    acc, bits, out = 0, 0, []
    for b in data:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def bech32_encode(hrp, data):
    """BIP 173 Bech32 of data under hrp, lower case (no 90-character limit:
    age's keys are longer than BIP 173 allows, and age lifts it)."""
    hrp = hrp.lower()
    values = convertbits_8_to_5(data)
    polymod = bech32_polymod(bech32_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    s = hrp + "1" + "".join(BECH32_CHARSET[v] for v in values + checksum)
    assert bech32_polymod(bech32_hrp_expand(hrp) + [BECH32_CHARSET.index(c) for c in s[len(hrp) + 1:]]) == 1
    return s


# ---- K → age identity (SPEC.md, "K → age identity") -----------------------------


def age_keys(k):
    scalar = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"coffer/v1 age identity").derive(k)
    pub = X25519PrivateKey.from_private_bytes(scalar).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bech32_encode("AGE-SECRET-KEY-", scalar).upper(), bech32_encode("age", pub)


# ---- K → 64-digit key (SPEC.md, "64-digit key") -------------------------------


def crc16(data):
    """CRC-16/IBM-3740: polynomial 0x1021, init 0xFFFF, no reflection, no
    final XOR."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


assert crc16(b"123456789") == 0x29B1


def key_digits(k):
    return k.hex().upper() + f"{crc16(k):04X}"


def key_text(k):
    d = key_digits(k)
    return "-".join(d[i:i + 4] for i in range(0, 68, 4))


def matches(d):
    return crc16(bytes.fromhex(d[:64])) == int(d[64:], 16)


def suspect_groups(d):
    """The 1-based groups where one wrong digit or one swap of neighbours
    would explain a mismatch, when they are one or two; else none."""
    groups = set()
    for i in range(68):
        for x in "0123456789ABCDEF":
            if x != d[i] and matches(d[:i] + x + d[i + 1:]):
                groups.add(i // 4 + 1)
    for i in range(67):
        if d[i] != d[i + 1] and matches(d[:i] + d[i + 1] + d[i] + d[i + 2:]):
            groups.update({i // 4 + 1, (i + 1) // 4 + 1})
    return " ".join(str(g) for g in sorted(groups)) if 1 <= len(groups) <= 2 else "none"


# ---- keys/ -----------------------------------------------------------------

KEYS = {
    "zero": (bytes(32), "K = 32 zero bytes."),
    "ones": (b"\xff" * 32, "K = 32 bytes 0xFF."),
    "sequence": (seq(32, 0), "K = 00 01 .. 1F, SPEC.md's example."),
    "hash": (hashlib.sha256(b"coffer/v1 test vector").digest(), 'K = SHA-256("coffer/v1 test vector").'),
}


def keys():
    for name, (k, comment) in KEYS.items():
        identity, recipient = age_keys(k)
        case("keys", name, "success", k, comment + "\nThe bytes are K; the headers what SPEC.md derives from it.",
             age_identity=identity, age_recipient=recipient, key_text=key_text(k))


# ---- keytext/ ----------------------------------------------------------------


def keytext():
    k = seq(32, 0)
    d = key_digits(k)
    canon = key_text(k)
    groups = [d[i:i + 4] for i in range(0, 68, 4)]

    def ok(name, text, comment, key=k):
        case("keytext", name, "success", text.encode("utf-8"), comment + "\nThe bytes are the typed text (UTF-8).",
             backup_key=key)

    ok("canonical", canon, "The canonical text.")
    ok("canonical-zero", key_text(bytes(32)), "The canonical text of the zero key.", bytes(32))
    ok("canonical-ones", key_text(b"\xff" * 32), "The canonical text of the all-0xFF key.", b"\xff" * 32)
    ok("lower-case", canon.lower(), "All digits in lower case.")
    ok("mixed-case", "".join(c.lower() if i % 3 == 0 else c for i, c in enumerate(canon)), "Digits in mixed case.")
    ok("no-separators", d, "68 digits and nothing else.")
    ok("spaces", " ".join(groups), "Groups separated by spaces.")
    ok("as-shown", "\n".join(" ".join(groups[i:i + 4]) for i in range(0, 16, 4)) + "\n\n" + groups[16] + "\n",
       "As the CLI shows it: four groups a line, the check group apart.")
    ok("crlf-tabs", "\r\n".join("\t".join(groups[i:i + 4]) for i in range(0, 17, 4)),
       "Tabs between groups, CRLF line breaks.")
    ok("separators-around", "  --\t" + canon + "-\n \r\n", "Separators before the first and after the last digit.")
    ok("separators-anywhere", "-".join(d[i:i + 3] for i in range(0, 68, 3)) + " ",
       "Hyphens every three digits, not at group boundaries.")
    ok("doubled-separators", "--".join(groups[:8]) + " - " + " \t ".join(groups[8:]), "Runs of several separators.")

    def bad_check(name, digits, comment):
        assert len(digits) == 68 and not matches(digits), name
        text = "-".join(digits[i:i + 4] for i in range(0, 68, 4))
        case("keytext", name, "checksum", text.encode(), comment + "\nRefused before any decryption.",
             suspect_groups=suspect_groups(digits))

    def sub(s, i, c):
        return s[:i] + c + s[i + 1:]

    def swap(s, i):
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]

    bad_check("digit-in-group-1", sub(d, 1, "7"), "The second digit of group 1 mistyped: 7 for 0.")
    bad_check("digit-in-group-9", sub(d, 35, "B" if d[35] != "B" else "C"), "The last digit of group 9 mistyped.")
    bad_check("digit-in-check-group", sub(d, 66, "0" if d[66] != "0" else "1"), "A digit of the check group mistyped.")
    bad_check("swap-in-group-3", swap(d, 9), "Two neighbouring digits of group 3 swapped.")
    bad_check("swap-across-groups-4-5", swap(d, 15), "The last digit of group 4 swapped with the first of group 5.")
    bad_check("swap-into-check-group", swap(d, 63), "The last digit of K swapped with the first of the check group.")
    bad_check("two-digits", sub(sub(d, 4, "F"), 40, "F"), "Two digits mistyped in groups 2 and 11.")
    bad_check("check-group-zero", d[:64] + "0000", "The check group replaced by 0000.")
    bad_check("other-keys-check", d[:64] + key_digits(bytes(32))[64:], "K with the zero key's check group.")

    def bad(name, rule, text, comment):
        case("keytext", name, "malformed", text.encode("utf-8"), comment + "\nThe bytes are the typed text (UTF-8).",
             rule=rule)

    bad("missing-check-group", "missing-check-group", "-".join(groups[:16]),
        "The 64 digits of K without the check group: reported as a missing check group.")
    bad("missing-check-group-lower", "missing-check-group", " ".join(groups[:16]).lower(),
        "64 digits in lower case with spaces.")
    bad("empty", "length", "", "Nothing typed.")
    bad("separators-only", "length", " -\t\n", "Separators and no digit.")
    bad("67-digits", "length", canon[:-1], "The last digit missing.")
    bad("65-digits", "length", canon[:-3], "Only one digit of the check group.")
    bad("69-digits", "length", canon + "0", "One digit too many.")
    bad("two-keys", "length", canon + "\n" + key_text(bytes(32)), "Two keys pasted one after the other.")
    bad("letter-g", "character", sub(canon, 12, "G"), "A G in group 3.")
    bad("letter-o", "character", canon.replace("0", "O", 1), "The letter O for the digit 0.")
    bad("hex-prefix", "character", "0x" + d, "A 0x prefix.")
    bad("underscore", "character", "_".join(groups), "Groups separated by underscores.")
    bad("dots", "character", ".".join(groups), "Groups separated by dots.")
    bad("en-dash", "character", "\u2013".join(groups), "Groups separated by U+2013 EN DASH (non-ASCII).")
    bad("no-break-space", "character", "\u00a0".join(groups), "Groups separated by U+00A0 NO-BREAK SPACE.")
    bad("fullwidth-digit", "character", "\uff10" + canon[1:], "U+FF10 FULLWIDTH DIGIT ZERO for 0.")
    bad("form-feed", "character", "\f".join(groups), "Groups separated by form feeds (not a separator).")
    bad("nul", "character", canon + "\x00", "A NUL byte after the key.")
    bad("bad-character-after-68", "character", canon + "!", "A '!' after the 68 digits.")


# ---- backup/ -------------------------------------------------------------------

MTIME = 1700000000  # 2023-11-14T22:13:20Z
BACKUP_K = seq(32, 0)
OTHER_K = seq(32, 0x20)

# (type, name, mode, content or link target) in archive order: SPEC.md,
# "Entries a writer produces": a directory before its contents, lexical order.
ENTRIES = [
    ("dir", "coffer-vector/", 0o755, None),
    ("file", "coffer-vector/empty", 0o600, b""),
    ("file", "coffer-vector/hello.txt", 0o644, b"hello, coffer\n"),
    ("dir", "coffer-vector/sub/", 0o700, None),
    ("symlink", "coffer-vector/sub/link", 0o777, "../hello.txt"),
]
# The same tree but the link climbs above the restore folder: at depth 2 it
# may begin with at most two "..", this one has three (SPEC.md, rule 5).
ESCAPING = ENTRIES[:-1] + [("symlink", "coffer-vector/sub/link", 0o777, "../../../outside")]


def build_tar(entries, end_marker_only=False):
    """A POSIX ustar archive of entries as SPEC.md says a writer makes it:
    permission bits, whole-second mtimes, uid and gid 0, no owner names.
    tarfile pads the archive to its 10240-byte records; end_marker_only
    cuts it after the end-of-archive marker (two zero blocks), as Coffer's
    writer ends it before its own padding."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for typ, name, mode, content in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mode, MTIME, 0, 0, "", ""
            if typ == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif typ == "file":
                ti.type, ti.size = tarfile.REGTYPE, len(content)
                tf.addfile(ti, io.BytesIO(content))
            else:
                ti.type, ti.linkname = tarfile.SYMTYPE, content
                tf.addfile(ti)
        end = tf.offset + 2 * 512
    data = buf.getvalue()
    assert data[end - 1024:].count(0) == len(data) - end + 1024
    return data[:end] if end_marker_only else data


# ---- padding (SPEC.md, "Padding") -------------------------------------------------


def padme(length):
    """Padmé: E = floor(log2 L), S = floor(log2 E) + 1, lastBits = E - S,
    bitMask = 2^lastBits - 1, padded = (L + bitMask) & ~bitMask; L < 2 is
    not padded."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


PADME_LENGTHS = [0, 1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 100, 128, 129, 130, 143, 144, 145, 1000, 1023, 1024, 1025,
                 2048, 3072, 3073, 4096, 4097, 65535, 65536, 65537, 1000000, 2**31 - 1, 2**32 + 1, 10**12 + 7,
                 2**62 + 1]


def padme_cases():
    for n in PADME_LENGTHS:
        p = padme(n)
        assert p >= n and (n < 2 or (p - n) * 100 <= 12 * n), n
        case("padme", f"length-{n}", "success", b"",
             "A payload of `length` bytes is padded with zeros to `padded-length` (SPEC.md, \"Padding\").\n"
             "No bytes: the case is its two headers.", length=str(n), padded_length=str(p))


def entry_headers(entries):
    h = {"entries": str(len(entries))}
    for i, (typ, name, mode, content) in enumerate(entries, 1):
        v = f"{typ} {name} {mode:04o} {MTIME}"
        if typ == "file":
            v += " " + (content.hex() if content else "-")
        elif typ == "symlink":
            v += " " + content
        h[f"entry-{i}"] = v
    return h


def age_file(name, k, plain, new):
    """The age file name next to this script: plain encrypted with the stock
    age CLI to K's recipient. Made only if missing or new; an existing one
    must decrypt, with stock age and K's identity, to exactly plain."""
    path = os.path.join(HERE, name)
    identity, recipient = age_keys(k)
    if new or not os.path.exists(path):
        subprocess.run(["age", "-r", recipient, "-o", path], input=plain, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        idfile = os.path.join(tmp, "identity")
        with open(os.open(idfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(identity + "\n")
        run = subprocess.run(["age", "-d", "-i", idfile, path], capture_output=True)
    if run.returncode != 0 or run.stdout != plain:
        sys.exit(f"{name} does not decrypt to the archive built here ({run.stderr.decode().strip()}): "
                 "run with --new-age")
    with open(path, "rb") as f:
        return f.read()


def age_header_len(data):
    """The length of an age v1 header: up to and including the line that
    begins with '---' (its MAC line), before the payload nonce."""
    i = data.index(b"\n---")
    return data.index(b"\n", i + 1) + 1


def flip(b, i):
    b = bytearray(b)
    b[i] ^= 1
    return bytes(b)


def backup(new):
    plain = build_tar(ENTRIES)
    good = age_file("backup.age", BACKUP_K, plain, new)
    escaping = age_file("backup-escaping-link.age", BACKUP_K, build_tar(ESCAPING), new)
    # Padme pads a length of 2^14 or more to a multiple of 1024 or more,
    # so whole 512-byte blocks of padding need an archive that long: the
    # entries above and enough empty files (a chat's message files).
    n = 28
    while True:
        padded_entries = ENTRIES + [("dir", "coffer-vector/messages/", 0o700, None)] + [
            ("file", f"coffer-vector/messages/{i:03d}", 0o600, b"") for i in range(n)]
        archive = build_tar(padded_entries, end_marker_only=True)
        if padme(len(archive)) > len(archive):
            break
        n += 1
    padded_plain = archive + bytes(padme(len(archive)) - len(archive))
    stray = bytearray(padded_plain)
    stray[len(archive) + (len(padded_plain) - len(archive)) // 2] = 0x01
    padded = age_file("backup-padded.age", BACKUP_K, padded_plain, new)
    bad_padding = age_file("backup-padding-not-zero.age", BACKUP_K, bytes(stray), new)
    identity, recipient = age_keys(BACKUP_K)
    common = dict(backup_key=BACKUP_K, age_identity=identity, age_recipient=recipient)
    what = "The bytes are an age file (backup.age) of a tar archive of the entries listed."
    case("backup", "ok", "success", good,
         what + "\nRestores to exactly these entries: type, name, permission bits, mtime, content or target.\n"
         "The archive has tar's record padding (zero bytes) after its end marker.",
         file="backup.age", **common, **entry_headers(ENTRIES))
    case("backup", "other-key", "wrong-key", good, "backup.age opened with another K: no age identity matches.",
         backup_key=OTHER_K)
    hl = age_header_len(good)
    damage = {
        "header-mac-flipped": (flip(good, hl - 5), "A bit of the header's MAC flipped."),
        "payload-flipped": (flip(good, hl + 16 + 100), "A bit of the first (and last) payload chunk flipped."),
        "last-byte-flipped": (flip(good, len(good) - 1), "A bit of the last chunk's tag flipped."),
        "truncated-header": (good[:hl], "Cut after the header: no payload."),
        "truncated-payload": (good[:hl + 16 + 1000], "Cut inside the payload chunk."),
        "last-byte-missing": (good[:-1], "The last byte missing."),
        "trailing-byte": (good + b"x", "One byte after the end of the age file."),
    }
    for name, (data, comment) in damage.items():
        case("backup", name, "authentication", data, comment + "\nNothing is restored.", **common)
    case("backup", "escaping-link", "bad-archive", escaping,
         "An age file (backup-escaping-link.age), to K, whose archive has a link that climbs out of the\n"
         "restore folder (SPEC.md rule 5: at depth 2, at most two leading ..). Nothing is restored.",
         file="backup-escaping-link.age", **common, **entry_headers(ESCAPING))
    lengths = dict(archive_length=str(len(archive)), payload_length=str(len(padded_plain)))
    case("backup", "padded", "success", padded,
         "An age file (backup-padded.age) of the entries listed as Coffer writes them since padding:\n"
         "the archive, cut after its end marker (`archive-length` bytes), then zero bytes up to its Padme\n"
         "length (`payload-length`). Restores to exactly these entries; stock age opens it.",
         file="backup-padded.age", **common, **lengths, **entry_headers(padded_entries))
    case("backup", "padding-not-zero", "bad-archive", bad_padding,
         "backup-padded.age's payload with one byte of the padding set to 0x01: only zeros may follow\n"
         "the end marker (SPEC.md rule 7). Nothing is restored.",
         file="backup-padding-not-zero.age", **common, **lengths, **entry_headers(padded_entries))


def main():
    new = "--new-age" in sys.argv[1:]
    if any(a != "--new-age" for a in sys.argv[1:]):
        sys.exit("usage: gen_vectors.py [--new-age]")
    keys()
    keytext()
    backup(new)
    padme_cases()
    casefiles.write(HERE, GROUPS, CASES)


if __name__ == "__main__":
    main()
