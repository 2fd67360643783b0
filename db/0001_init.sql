-- kiln registry schema, version 1.
-- Applied in one transaction by host/lib/registry.c; PRAGMA user_version is
-- set to the file's number after it succeeds. Never edit a released
-- migration: add a new numbered file instead.

-- Key/value facts about this database (audit head, creation time...).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY NOT NULL,
	value BLOB
);

CREATE TABLE stations (
	id         TEXT PRIMARY KEY NOT NULL,
	created_ms INTEGER NOT NULL
);

CREATE TABLE lots (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	profile       TEXT NOT NULL,
	serial_prefix TEXT NOT NULL,
	quota         INTEGER CHECK (quota IS NULL OR quota >= 0),
	station_id    TEXT NOT NULL REFERENCES stations(id),
	created_ms    INTEGER NOT NULL,
	closed_ms     INTEGER
);

-- One counter per serial prefix: device serials are "<prefix>-<counter>".
-- The counter only grows, so a serial is never handed out twice, even when
-- the session that took it fails.
CREATE TABLE serial_counters (
	prefix TEXT PRIMARY KEY NOT NULL,
	next   INTEGER NOT NULL CHECK (next >= 1)
);

CREATE TABLE devices (
	id              INTEGER PRIMARY KEY,
	uid             BLOB NOT NULL UNIQUE,
	serial          TEXT NOT NULL UNIQUE,   -- serial of the latest session
	state           TEXT NOT NULL CHECK (state IN ('RESERVED', 'KEYED',
	                  'ISSUED', 'WRITTEN', 'VERIFIED', 'LOCKED', 'ACTIVE',
	                  'FAILED', 'VOID', 'SCRAPPED')),
	key_origin      TEXT NOT NULL CHECK (key_origin IN ('device', 'host')),
	lot_id          INTEGER NOT NULL REFERENCES lots(id),
	station_id      TEXT NOT NULL REFERENCES stations(id),
	slot            INTEGER NOT NULL,
	lock_bits       INTEGER,                -- as read back from the device
	identity_digest BLOB CHECK (identity_digest IS NULL OR length(identity_digest) = 32),
	pubkey_sha256   BLOB CHECK (pubkey_sha256 IS NULL OR length(pubkey_sha256) = 32),
	cert_id         INTEGER REFERENCES certificates(id), -- current ACTIVE certificate
	created_ms      INTEGER NOT NULL,
	updated_ms      INTEGER NOT NULL
);
CREATE INDEX devices_lot ON devices(lot_id, state);

CREATE TABLE sessions (
	id              INTEGER PRIMARY KEY,
	uid             BLOB NOT NULL,
	device_id       INTEGER NOT NULL REFERENCES devices(id),
	device_serial   TEXT NOT NULL UNIQUE,
	lot_id          INTEGER NOT NULL REFERENCES lots(id),
	profile         TEXT NOT NULL,
	station_id      TEXT NOT NULL REFERENCES stations(id),
	slot            INTEGER NOT NULL,
	key_origin      TEXT NOT NULL CHECK (key_origin IN ('device', 'host')),
	state           TEXT NOT NULL CHECK (state IN ('RESERVED', 'KEYED',
	                  'ISSUED', 'WRITTEN', 'VERIFIED', 'LOCKED', 'ACTIVE',
	                  'FAILED', 'VOID', 'SCRAPPED')),
	reprovision     INTEGER NOT NULL DEFAULT 0 CHECK (reprovision IN (0, 1)),
	failure_reason  TEXT,
	pubkey_sha256   BLOB CHECK (pubkey_sha256 IS NULL OR length(pubkey_sha256) = 32),
	identity_digest BLOB CHECK (identity_digest IS NULL OR length(identity_digest) = 32),
	lock_bits       INTEGER,
	started_ms      INTEGER NOT NULL,
	updated_ms      INTEGER NOT NULL,
	ended_ms        INTEGER
);
-- At most one unfinished session per UID, enforced by the database.
CREATE UNIQUE INDEX sessions_pending_uid ON sessions(uid)
	WHERE state NOT IN ('ACTIVE', 'FAILED', 'VOID', 'SCRAPPED');
CREATE INDEX sessions_lot ON sessions(lot_id, state);
CREATE INDEX sessions_station ON sessions(station_id, state);

-- When each step of a session was recorded and how long it took (ms since
-- the previous step).
CREATE TABLE session_steps (
	session_id  INTEGER NOT NULL REFERENCES sessions(id),
	step        TEXT NOT NULL,
	at_ms       INTEGER NOT NULL,
	duration_ms INTEGER NOT NULL,
	PRIMARY KEY (session_id, step)
);

CREATE TABLE certificates (
	id            INTEGER PRIMARY KEY,
	der           BLOB NOT NULL,
	serial_hex    TEXT NOT NULL UNIQUE,
	pubkey_sha256 BLOB NOT NULL CHECK (length(pubkey_sha256) = 32),
	subject       TEXT NOT NULL,
	not_before    INTEGER NOT NULL,
	not_after     INTEGER NOT NULL,
	status        TEXT NOT NULL CHECK (status IN ('ISSUED', 'ACTIVE', 'VOID',
	                'SUPERSEDED')),
	device_id     INTEGER NOT NULL REFERENCES devices(id),
	session_id    INTEGER NOT NULL UNIQUE REFERENCES sessions(id),
	created_ms    INTEGER NOT NULL
);
-- A public key is certified once; a VOID certificate (never delivered) does
-- not block re-certifying the same device-held key.
CREATE UNIQUE INDEX certificates_pubkey ON certificates(pubkey_sha256)
	WHERE status <> 'VOID';
-- A device has at most one ACTIVE certificate.
CREATE UNIQUE INDEX certificates_active_device ON certificates(device_id)
	WHERE status = 'ACTIVE';

-- Append-only, hash-chained audit log (see docs/registry.md).
CREATE TABLE audit (
	seq           INTEGER PRIMARY KEY,
	time_ms       INTEGER NOT NULL,
	station_id    TEXT NOT NULL,
	actor         TEXT NOT NULL,
	type          TEXT NOT NULL,
	uid           BLOB,
	device_serial TEXT,
	cert_serial   TEXT,
	session_id    INTEGER,
	details       TEXT,
	prev_hash     BLOB NOT NULL CHECK (length(prev_hash) = 32),
	row_hash      BLOB NOT NULL CHECK (length(row_hash) = 32)
);
CREATE INDEX audit_type ON audit(type, seq);
CREATE INDEX audit_session ON audit(session_id);
CREATE INDEX audit_cert ON audit(cert_serial);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit log is append-only');
END;
