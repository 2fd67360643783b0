-- kiln registry schema, version 3: a line of stations on one registry.
--
-- Per-station audit chains: every audit row belongs to the chain of the
-- station that wrote it (`chain`) at a per-station sequence (`chain_seq`),
-- hash-linked to that station's previous row; the global `seq` only orders
-- rows across stations. Rows written before this migration become the
-- chain of the station that wrote the first row, with chain_seq = seq (the
-- row hashes were computed over that number, so they stay valid).
-- `audit_heads` keeps each chain's head (it replaces meta's audit_head_seq
-- and audit_head_hash, taken over here) and where its last checkpoint is.
--
-- Leased serial blocks: a station takes blocks of device serial numbers
-- from serial_counters and records each lease in serial_blocks; serials it
-- never used stay a gap.
DROP TRIGGER audit_no_update;
ALTER TABLE audit ADD COLUMN chain TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN chain_seq INTEGER NOT NULL DEFAULT 0;
UPDATE audit SET chain = (SELECT a.station_id FROM audit a ORDER BY a.seq
	LIMIT 1), chain_seq = seq;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE UNIQUE INDEX audit_chain ON audit(chain, chain_seq);

CREATE TABLE audit_heads (
	chain          TEXT PRIMARY KEY NOT NULL,
	seq            INTEGER NOT NULL CHECK (seq >= 1),
	row_hash       BLOB NOT NULL CHECK (length(row_hash) = 32),
	checkpoint_seq INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_heads(chain, seq, row_hash, checkpoint_seq)
	SELECT (SELECT a.station_id FROM audit a ORDER BY a.seq LIMIT 1),
	       CAST(s.value AS INTEGER), h.value,
	       coalesce((SELECT max(a.seq) FROM audit a
	                 WHERE a.type = 'CHECKPOINT'), 0)
	FROM meta s, meta h
	WHERE s.key = 'audit_head_seq' AND h.key = 'audit_head_hash' AND
	      EXISTS (SELECT 1 FROM audit);
DELETE FROM meta WHERE key IN ('audit_head_seq', 'audit_head_hash');

CREATE TABLE serial_blocks (
	prefix     TEXT NOT NULL,
	station_id TEXT NOT NULL REFERENCES stations(id),
	first      INTEGER NOT NULL CHECK (first >= 1),
	last       INTEGER NOT NULL,
	leased_at  INTEGER NOT NULL,
	PRIMARY KEY (prefix, first),
	CHECK (last >= first)
);
CREATE INDEX serial_blocks_station ON serial_blocks(station_id, leased_at);
