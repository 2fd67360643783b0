#!/usr/bin/env bash
# Bulk issuance the way a factory engineer scripts it with stock tools:
# openssl ecparam/req/x509 per identity, and the sqlite3 CLI recording the
# certificate and a hash-chained audit row in one durable transaction
# (WAL, synchronous=FULL) per identity.
#
#   issue_peer.sh host   N DIR   # key + CSR + certificate per identity
#   issue_peer.sh device N DIR   # CSRs made before the clock; verify + sign
#
# Prints "key value" lines: identities, wall_s, cpu_s, per_s.
set -euo pipefail
mode=$1 n=$2 dir=$3
mkdir -p "$dir"
cd "$dir"

# the CA (P-256), once
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/O=Bench/CN=Bench station CA" \
	-days 7300 -sha256 -out ca.pem \
	-addext "basicConstraints=critical,CA:true,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
cat >ext.cnf <<'CNF'
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::SAN
CNF
sqlite3 peer.db >/dev/null <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS identities(id INTEGER PRIMARY KEY,
	serial TEXT UNIQUE NOT NULL, uid TEXT UNIQUE NOT NULL,
	cert_serial TEXT UNIQUE NOT NULL, cert_der BLOB NOT NULL,
	created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY,
	at_ms INTEGER NOT NULL, event TEXT NOT NULL, serial TEXT,
	prev TEXT, hash TEXT NOT NULL);
SQL

if [ "$mode" = device ]; then
	# what the boards would send, made before the clock starts
	for ((i = 1; i <= n; i++)); do
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-nodes -keyout /dev/null -subj "/CN=board-$i" \
			-out "csr-$i.pem" 2>/dev/null
	done
fi

head=0000000000000000000000000000000000000000000000000000000000000000
base=$(openssl rand -hex 8)
t0=$(date +%s.%N)
for ((i = 1; i <= n; i++)); do
	serial=$(printf 'SH-%06d' "$i")
	uid=$base$(printf '%016x' "$i")
	if [ "$mode" = host ]; then
		openssl ecparam -name prime256v1 -genkey -noout -out dev.key
		openssl req -new -key dev.key -subj "/CN=$serial/O=Bench/OU=Widgets" \
			-out dev.csr
		csr=dev.csr
	else
		csr=csr-$i.pem
		openssl req -in "$csr" -verify -noout 2>/dev/null
	fi
	certser=$(openssl rand -hex 16)
	SAN="URI:urn:dev:uid:$uid" openssl x509 -req -in "$csr" -CA ca.pem \
		-CAkey ca.key -set_serial "0x$certser" -days 3650 -sha256 \
		-subj "/CN=$serial/O=Bench/OU=Widgets" \
		-extfile ext.cnf -outform DER -out dev.der 2>/dev/null
	hex=$(od -An -v -tx1 dev.der | tr -d ' \n')
	h=$(printf '%s%s%s' "$head" "$serial" "$hex" | sha256sum | cut -c1-64)
	sqlite3 peer.db <<SQL
PRAGMA synchronous=FULL;
BEGIN IMMEDIATE;
INSERT INTO identities(serial, uid, cert_serial, cert_der, created_ms)
	VALUES('$serial', '$uid', '$certser', X'$hex', $(date +%s%3N));
INSERT INTO audit(at_ms, event, serial, prev, hash)
	VALUES($(date +%s%3N), 'ISSUED', '$serial', '$head', '$h');
COMMIT;
SQL
	head=$h
done
t1=$(date +%s.%N)
rm -f dev.key
got=$(sqlite3 peer.db 'SELECT count(*) FROM identities')
# CPU of this shell and all its children (user + sys)
times >times.txt # not in $(...): a subshell has its own (zero) times
cpu=$(awk 'function s(t){split(t,a,"m"); sub("s","",a[2]); return a[1]*60+a[2]}
	{u+=s($1); y+=s($2)} END {printf "%.4f", u+y}' times.txt)
awk -v n="$got" -v a="$t0" -v b="$t1" -v c="$cpu" 'BEGIN {
	printf "identities %d\nwall_s %.4f\ncpu_s %.4f\nper_s %.1f\n", n, b-a, c, n/(b-a) }'
[ "$got" = "$n" ]
