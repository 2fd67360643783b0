#!/usr/bin/env python3
"""Bulk issuance the way a factory engineer writes it today.

Python `cryptography` for the keys and certificates, the `sqlite3` module
for the records: one durable transaction (WAL, synchronous=FULL) per
identity holding its certificate row and its audit row (hash-chained, so
the log is as tamper-evident as kiln's). No tricks, no handicaps: the CA
key is loaded once, statements are parameterised, the connection is kept.

  issue_peer.py host   -n N DIR   # key made here, certificate, record
  issue_peer.py device -n N DIR   # CSR (made before the clock) verified,
                                  # certificate, record

Prints "key value" lines: identities, wall_s, cpu_s, per_s.
"""
import argparse
import datetime
import hashlib
import os
import sqlite3
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Bench station CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript("""
        CREATE TABLE IF NOT EXISTS identities(
            id INTEGER PRIMARY KEY, serial TEXT UNIQUE NOT NULL,
            uid BLOB UNIQUE NOT NULL, cert_serial TEXT UNIQUE NOT NULL,
            pubkey_sha256 BLOB UNIQUE NOT NULL, cert_der BLOB NOT NULL,
            created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS audit(
            seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
            event TEXT NOT NULL, serial TEXT, prev BLOB, hash BLOB NOT NULL);
    """)
    return db


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["host", "device"])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("dir")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    ca_key, ca_cert = make_ca()
    ca_ski = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    db = open_db(os.path.join(a.dir, "peer.db"))
    row = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head = row[0] if row else b"\0" * 32

    csrs = []
    if a.mode == "device":  # what the boards would send: made before the clock
        for i in range(a.n):
            k = ec.generate_private_key(ec.SECP256R1())
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               "board-%06d" % i)]))
                   .sign(k, hashes.SHA256()))
            csrs.append(csr.public_bytes(serialization.Encoding.DER))

    t0, c0 = time.perf_counter(), time.process_time()
    base = os.urandom(8)
    for i in range(a.n):
        uid = base + i.to_bytes(8, "big")
        serial = "PY-%06d" % (i + 1)
        if a.mode == "host":
            key = ec.generate_private_key(ec.SECP256R1())
            pub = key.public_key()
        else:
            csr = x509.load_der_x509_csr(csrs[i])
            if not csr.is_signature_valid:
                raise SystemExit("CSR %d: bad signature" % i)
            pub = csr.public_key()
            if not isinstance(pub, ec.EllipticCurvePublicKey) or \
                    not isinstance(pub.curve, ec.SECP256R1):
                raise SystemExit("CSR %d: not P-256" % i)
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([
                    x509.NameAttribute(NameOID.COMMON_NAME, serial),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Widgets")]))
                .issuer_name(ca_cert.subject)
                .public_key(pub)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                               critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False,
                                             False, False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([
                    x509.UniformResourceIdentifier("urn:dev:uid:" + uid.hex())]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub),
                               critical=False)
                .add_extension(ca_ski, critical=False)
                .sign(ca_key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        spki = pub.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
        at = int(time.time() * 1000)
        h = hashlib.sha256(head + b"ISSUED" + serial.encode() + der).digest()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO identities(serial, uid, cert_serial, pubkey_sha256, "
                   "cert_der, created_ms) VALUES(?,?,?,?,?,?)",
                   (serial, uid, "%x" % cert.serial_number,
                    hashlib.sha256(spki).digest(), der, at))
        db.execute("INSERT INTO audit(at_ms, event, serial, prev, hash) "
                   "VALUES(?,?,?,?,?)", (at, "ISSUED", serial, head, h))
        db.execute("COMMIT")  # durable before the identity is reported
        head = h
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = db.execute("SELECT count(*) FROM identities").fetchone()[0]
    db.close()
    print("identities %d" % n)
    print("wall_s %.4f" % wall)
    print("cpu_s %.4f" % cpu)
    print("per_s %.1f" % (a.n / wall))
    import cryptography
    print("python_cryptography %s" % cryptography.__version__)
    return 0 if n == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
