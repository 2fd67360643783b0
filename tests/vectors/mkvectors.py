#!/usr/bin/env python3
"""Independent reference encoder for the kiln wire protocol.

Writes tests/vectors/protocol-vectors.txt. It shares no code with
protocol/*.c: CRC-32C, COBS and TLV are re-implemented here from
docs/protocol.md, so the C codec (checked by test_vectors) and this script
agreeing is evidence that the spec is implementable as written.

Usage: python3 tests/vectors/mkvectors.py > tests/vectors/protocol-vectors.txt
"""
import hashlib
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def cobs(data):
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def frame(typ, seq, payload, flags=0, version=1, rsvd=0, length=None,
          crc_xor=0):
    if length is None:
        length = len(payload)
    raw = struct.pack("<BBBBHH", version, typ, flags, rsvd, seq, length)
    raw += payload
    raw += struct.pack("<I", crc32c(raw) ^ crc_xor)
    return b"\x00" + cobs(raw) + b"\x00"


WIDTH = {"U8": 1, "U16": 2, "U32": 4}


def tlv(fields):
    """fields: list of (tag, kind, value) in ascending tag order."""
    out = bytearray()
    for tag, kind, val in fields:
        if kind in WIDTH:
            v = val.to_bytes(WIDTH[kind], "little")
        elif kind == "STR":
            v = val.encode("ascii")
        else:
            v = bytes(val)
        out += struct.pack("<BH", tag, len(v)) + v
    return bytes(out)


def hexs(b, indent="\t", per=32):
    h = b.hex()
    if len(b) <= per:
        return " ".join(h[i:i + 2] for i in range(0, len(h), 2))
    lines = []
    for i in range(0, len(b), per):
        chunk = b[i:i + per].hex()
        lines.append(" ".join(chunk[j:j + 2] for j in range(0, len(chunk), 2)))
    return ("\n" + indent).join([""] + lines)


def kv(key, v):
    """'key: v', or 'key:' + continuation lines for long hex."""
    if v == "" or v.startswith("\n"):
        return key + ":" + v
    return key + ": " + v


def fval(kind, v):
    if kind in WIDTH:
        return "%d" % v if v < 10 else "0x%0*x" % (2 * WIDTH[kind], v)
    if kind == "STR":
        return '"%s"' % v
    return hexs(bytes(v))


out = []


def emit(name, note, kind=None, message=None, seq=None, flags=None,
         fields=(), payload=None, wire=None, expect=None, sha=None,
         encode=True):
    out.append("vector: " + name)
    out.append("note: " + note)
    out.append("kind: " + kind)
    if message:
        out.append("message: " + message)
    if seq is not None:
        out.append("seq: %d" % seq)
    for tag, fk, fname, v in fields:
        val = fval(fk, v)
        sep = "" if val.startswith("\n") else " "
        out.append("field: %s =%s%s" % (fname, sep, val))
    if not encode:
        out.append("encode: no")
    if payload is not None:
        out.append(kv("payload", hexs(payload)))
    if sha is not None:
        out.append(kv("sha256", hexs(sha)))
    if wire is not None:
        out.append(kv("wire", hexs(wire)))
    out.append("expect: " + (expect or "KP_OK"))
    out.append("")


def msg(name, note, typ, dirn, seq, fields, **kw):
    payload = tlv([(t, k, v) for t, k, _, v in fields])
    flags = 1 if dirn == "rsp" else 0
    emit(name, note, kind="frame", message="%s %s" % (typ[0], dirn), seq=seq,
         fields=fields, payload=payload,
         wire=frame(typ[1], seq, payload, flags=flags), **kw)
    return payload


HELLO, GENKEY, PUT_OBJECT, COMMIT = ("HELLO", 1), ("GENKEY", 2), \
    ("PUT_OBJECT", 3), ("COMMIT", 4)
STATUS, CHALLENGE, LOCK, ERROR = ("STATUS", 5), ("CHALLENGE", 7), \
    ("LOCK", 8), ("ERROR", 0x7F)

# P-256 generator point G = public key of the private scalar 1. Never a real
# key; it only makes the vector a valid uncompressed point.
PUB = bytes.fromhex(
    "04"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
UID = bytes.fromhex("0123456789abcdef00112233")
CERT = bytes([0x30, 0x3e]) + bytes(range(0x40, 0x40 + 62))  # opaque, 64 B
SERIAL = "KLN-000001"

out.append("""# kiln wire protocol test vectors (format 1)
#
# Produced by tests/vectors/mkvectors.py (an independent Python encoder) and
# checked byte for byte against the C codec by tests/vectors/test_vectors.c.
# docs/protocol.md shows the same blocks; a test keeps them identical.
#
# Blocks are separated by blank lines; '#' starts a comment line.
#   vector:  unique name
#   note:    what the vector shows
#   kind:    frame | blob | challenge
#   message: NAME req|rsp    the message the frame carries
#   seq:     sequence number in the frame header
#   field:   NAME = VALUE    integer (decimal or 0x hex), "text" (STR) or
#                            hex bytes (BYTES); absent optional fields are
#                            not listed
#   encode:  no              only decoding is checked (e.g. extra tags)
#   payload: hex             TLV payload / blob bytes / challenge message
#   sha256:  hex             SHA-256 of payload (blob: the identity digest)
#   wire:    hex             complete frame, both 0x00 delimiters included
#   expect:  KP_OK or the kp_err_t name a receiver must report
# Hex values are byte pairs separated by spaces; lines starting with a tab
# continue the previous value.
""")

msg("hello-request", "host opens a session and offers protocol 2",
    HELLO, "req", 1,
    [(0x01, "U8", "proto_max", 2), (0x02, "U32", "host_caps", 0)])
msg("hello-response", "a keyed, unlocked agent answers HELLO",
    HELLO, "rsp", 1,
    [(0x01, "U8", "proto", 2),
     (0x02, "STR", "agent_version", "kiln-agent 0.2.0"),
     (0x03, "U32", "caps", 0x0F),
     (0x04, "BYTES", "uid", UID),
     (0x05, "STR", "board", "posix-sim"),
     (0x06, "U16", "max_payload", 1024),
     (0x07, "U8", "state", 1), (0x08, "U8", "lock", 0),
     (0x09, "U8", "integrity", 0), (0x0A, "U8", "slots_free", 3),
     (0x0B, "BYTES", "pubkey", PUB)])
msg("status-request", "STATUS has an empty payload", STATUS, "req", 2, [])
msg("genkey-request", "re-provision with a station seed and a subject CN",
    GENKEY, "req", 3,
    [(0x01, "BYTES", "seed", bytes(range(16))), (0x02, "U8", "flags", 1),
     (0x03, "STR", "cn", SERIAL)])
blob_fields = [(0x01, "BYTES", "pubkey", PUB), (0x02, "STR", "serial", SERIAL),
               (0x03, "BYTES", "cert", CERT)]
blob = b"KLNB\x01" + tlv([(t, k, v) for t, k, _, v in blob_fields])
digest = hashlib.sha256(blob).digest()
# the IDENTITY object: the blob after magic, version and the pubkey TLV,
# which the agent writes itself (KP_BLOB_PREFIX_LEN = 73 bytes)
IDENT = blob[5 + 3 + 65:]
assert IDENT == tlv([(t, k, v) for t, k, _, v in blob_fields[1:]])
# secure-boot key hash: SHA-256 of the firmware-signing key's uncompressed
# point (here the generator G again, never a real key)
BOOTKEY = hashlib.sha256(PUB).digest()
# an ECDSA signature's DER shape (r = 0x11.., s = 0x22..; not a valid
# signature: the codec only sees bytes)
SIG = bytes([0x30, 0x44, 0x02, 0x20]) + bytes([0x11] * 32) + \
    bytes([0x02, 0x20]) + bytes([0x22] * 32)

msg("put-object-request", "the identity-blob vector's IDENTITY object "
    "(serial and cert TLVs) in a single chunk",
    PUT_OBJECT, "req", 4,
    [(0x01, "U8", "obj", 5), (0x02, "U32", "offset", 0),
     (0x03, "U32", "total", len(IDENT)),
     (0x04, "BYTES", "data", IDENT)])
msg("commit-request", "commit the identity-blob vector (digest = its "
    "sha256), with a challenge nonce and a secure-boot key hash",
    COMMIT, "req", 5,
    [(0x01, "BYTES", "digest", digest),
     (0x02, "BYTES", "nonce", bytes(range(0xA0, 0xB0))),
     (0x03, "BYTES", "boot_key_hash", BOOTKEY)])
msg("commit-response", "the digest the agent read back, COMMITTED, the "
    "nonce's signature (shape only) and what the secure-boot slot holds",
    COMMIT, "rsp", 5,
    [(0x01, "BYTES", "digest", digest), (0x02, "U8", "state", 2),
     (0x03, "BYTES", "sig", SIG), (0x04, "BYTES", "boot_key_hash", BOOTKEY)])
msg("challenge-request", "a 16-byte nonce", CHALLENGE, "req", 6,
    [(0x01, "BYTES", "nonce", bytes(range(0xA0, 0xB0)))])
msg("status-response", "a locked board: state, lock bits, key, identity "
    "digest, staged bytes and the secure-boot key hash (ignorable tag 0x80)",
    STATUS, "rsp", 2,
    [(0x01, "U8", "state", 3), (0x02, "U8", "lock", 7),
     (0x03, "U8", "integrity", 0), (0x04, "U8", "slots_free", 3),
     (0x05, "BYTES", "pubkey", PUB), (0x06, "BYTES", "id_digest", digest),
     (0x07, "U32", "staged", 0), (0x80, "BYTES", "boot_key_hash", BOOTKEY)])
msg("lock-response", "full lock, all three lock bits read back",
    LOCK, "rsp", 7, [(0x01, "U8", "lock", 7), (0x02, "U8", "state", 3)])
msg("error-response", "GENKEY refused on a locked device",
    ERROR, "rsp", 8,
    [(0x01, "U16", "status", 5), (0x02, "STR", "detail", "device is locked"),
     (0x03, "U8", "request_type", 2)])

pl = tlv([(0x01, "U8", 2)]) + bytes.fromhex("80 03 00 78 79 7a".replace(" ", ""))
emit("hello-request-ignorable-tag",
     "an unknown tag >= 0x80 is skipped by the decoder",
     kind="frame", message="HELLO req", seq=9,
     fields=[(0x01, "U8", "proto_max", 2)], payload=pl,
     wire=frame(1, 9, pl), encode=False)

emit("identity-blob", "magic KLNB, version 1, pubkey, serial, cert",
     kind="blob", fields=blob_fields, payload=blob, sha=digest)

nonce = bytes(range(0xA0, 0xB0))
chal = b"KILN-CHALLENGE-1" + bytes([len(UID)]) + UID + nonce
emit("challenge-message", "the bytes the agent hashes and signs for the "
     "challenge-request vector on the hello-response board",
     kind="challenge",
     fields=[(0, "BYTES", "uid", UID), (0, "BYTES", "nonce", nonce)],
     payload=chal, sha=hashlib.sha256(chal).digest())

# The sealed channel (docs/protocol.md section 12). Fixed ephemeral scalars
# (never real keys) so that every byte is reproducible; python3-cryptography
# does the elliptic-curve, HKDF and AES-GCM arithmetic.
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def p256(scalar):
    k = ec.derive_private_key(scalar, ec.SECP256R1())
    pub = k.public_key().public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint)
    return k, pub


SECURE_OPEN = ("SECURE_OPEN", 9)
H_PRIV = int("1111111111111111111111111111111111111111111111111111111111111111", 16)
A_PRIV = int("2222222222222222222222222222222222222222222222222222222222222222", 16)
hk, HPUB = p256(H_PRIV)
ak, APUB = p256(A_PRIV)
HNONCE = bytes(range(0x10, 0x30))
ANONCE = bytes(range(0x30, 0x50))
msg("secure-open-request", "host offers its ephemeral point (scalar 0x11..11) "
    "and nonce", SECURE_OPEN, "req", 10,
    [(0x01, "BYTES", "host_pub", HPUB), (0x02, "BYTES", "host_nonce", HNONCE)])
msg("secure-open-response", "agent's ephemeral point (scalar 0x22..22) and "
    "nonce; a blank board sends no id_sig", SECURE_OPEN, "rsp", 10,
    [(0x01, "BYTES", "agent_pub", APUB),
     (0x02, "BYTES", "agent_nonce", ANONCE)])
transcript = b"KILN-SECURE-1" + bytes([len(UID)]) + UID + HPUB + HNONCE + \
    APUB + ANONCE
th = hashlib.sha256(transcript).digest()
z = hk.exchange(ec.ECDH(), ak.public_key())
assert z == ak.exchange(ec.ECDH(), hk.public_key())
okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=th,
           info=b"KILN-SECURE-1 keys").derive(z)
K_H2A, K_A2H = okm[:32], okm[32:]
out.append("vector: secure-keys")
out.append("note: transcript, its hash th, ECDH secret z and the two keys of "
           "the secure-open vectors on the hello-response board")
out.append("kind: secure")
out.append(kv("host_priv", hexs(H_PRIV.to_bytes(32, "big"))))
out.append(kv("agent_priv", hexs(A_PRIV.to_bytes(32, "big"))))
out.append("field: uid = " + hexs(UID))
out.append(kv("payload", hexs(transcript)))
out.append(kv("sha256", hexs(th)))
out.append(kv("z", hexs(z)))
out.append(kv("k_h2a", hexs(K_H2A)))
out.append(kv("k_a2h", hexs(K_A2H)))
out.append("expect: KP_OK")
out.append("")


def sealed(name, note, typ, dirn, seq, ctr, fields):
    plain = tlv([(t, k, v) for t, k, _, v in fields])
    rsp = dirn == "rsp"
    flags = (1 if rsp else 0) | 2
    key = K_A2H if rsp else K_H2A
    length = 4 + len(plain) + 16
    hdr = struct.pack("<BBBBHH", 1, typ[1], flags, 0, seq, length)
    ctrb = struct.pack("<I", ctr)
    nonce = bytes([0x41 if rsp else 0x48, typ[1]]) + bytes(6) + ctrb
    ct = AESGCM(key).encrypt(nonce, plain, hdr + ctrb)
    payload = ctrb + ct
    out.append("vector: " + name)
    out.append("note: " + note)
    out.append("kind: sealed")
    out.append("message: %s %s" % (typ[0], dirn))
    out.append("seq: %d" % seq)
    out.append("ctr: %d" % ctr)
    for tag, fk, fname, v in fields:
        val = fval(fk, v)
        sep = "" if val.startswith("\n") else " "
        out.append("field: %s =%s%s" % (fname, sep, val))
    out.append(kv("key", hexs(key)))
    out.append(kv("nonce", hexs(nonce)))
    out.append(kv("plain", hexs(plain)))
    out.append(kv("payload", hexs(payload)))
    out.append(kv("wire", hexs(frame(typ[1], seq, payload, flags=flags))))
    out.append("expect: KP_OK")
    out.append("")


sealed("sealed-hostkey-request", "PUT_OBJECT HOSTKEY (the scalar 1, never a "
       "real key) as the first sealed request of the secure-keys channel",
       PUT_OBJECT, "req", 11, 0,
       [(0x01, "U8", "obj", 0x10), (0x02, "U32", "offset", 0),
        (0x03, "U32", "total", 32), (0x04, "BYTES", "data", bytes(31) + b"\x01")])
sealed("sealed-hostkey-response", "the agent's sealed answer to it: the "
       "public point of the scalar 1", PUT_OBJECT, "rsp", 11, 0,
       [(0x01, "U8", "obj", 0x10), (0x02, "U32", "received", 32),
        (0x03, "BYTES", "pubkey", PUB)])

# Negative vectors: a receiver must reject each with exactly this error.
hreq = tlv([(0x01, "U8", 1), (0x02, "U32", 0)])
emit("bad-crc", "hello-request with the CRC's lowest bit flipped",
     kind="frame", wire=frame(1, 1, hreq, crc_xor=1), expect="KP_ERR_CRC")
emit("truncated", "length field says 12, only 11 payload bytes follow",
     kind="frame", wire=frame(1, 1, hreq, length=12),
     expect="KP_ERR_TRUNCATED")
emit("truncated-header", "shorter than header and CRC",
     kind="frame", wire=b"\x00" + cobs(b"\x01\x01\x00\x00\x01\x00") + b"\x00",
     expect="KP_ERR_TRUNCATED")
emit("trailing", "length field says 4: 7 bytes trail the payload",
     kind="frame", wire=frame(1, 1, hreq, length=4), expect="KP_ERR_TRAILING")
emit("oversized-length", "length field 0x0401 exceeds the 1024-byte maximum",
     kind="frame", wire=frame(1, 1, hreq, length=0x401),
     expect="KP_ERR_TOO_LARGE")
emit("unknown-version", "framing version 2", kind="frame",
     wire=frame(1, 1, hreq, version=2), expect="KP_ERR_VERSION")
emit("reserved-flag", "flag 0x04 is not defined", kind="frame",
     wire=frame(1, 1, hreq, flags=4), expect="KP_ERR_FLAGS")
emit("reserved-byte", "header byte 3 must be zero", kind="frame",
     wire=frame(1, 1, hreq, rsvd=1), expect="KP_ERR_FLAGS")
emit("bad-cobs", "a COBS code that overruns the chunk", kind="frame",
     wire=bytes.fromhex("00 09 01 01 00".replace(" ", "")),
     expect="KP_ERR_COBS")
emit("unknown-type", "a valid frame of undefined type 0x42", kind="frame",
     wire=frame(0x42, 1, b""), expect="KP_ERR_TYPE")
emit("duplicate-tag", "HELLO request with proto_max twice", kind="frame",
     message="HELLO req",
     wire=frame(1, 1, tlv([(0x01, "U8", 1), (0x01, "U8", 1)])),
     expect="KP_ERR_TLV_DUP")
emit("unknown-critical-tag", "HELLO request with tag 0x7f", kind="frame",
     message="HELLO req",
     wire=frame(1, 1, tlv([(0x01, "U8", 1), (0x7F, "BYTES", b"")])),
     expect="KP_ERR_TLV_UNKNOWN")

sys.stdout.write("\n".join(out))
