-- kiln registry schema, version 3, PostgreSQL twin of
-- db/0003_station_chains.sql: per-station audit chains (chain, chain_seq,
-- audit_heads) and leased serial blocks (serial_blocks). The head sequence
-- was kept in meta as text bytes (a BYTEA column): it is read back as a
-- number here.
ALTER TABLE audit DISABLE TRIGGER audit_no_update;
ALTER TABLE audit ADD COLUMN chain TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN chain_seq BIGINT NOT NULL DEFAULT 0;
UPDATE audit SET chain = (SELECT a.station_id FROM audit a ORDER BY a.seq
	LIMIT 1), chain_seq = seq;
ALTER TABLE audit ENABLE TRIGGER audit_no_update;
CREATE UNIQUE INDEX audit_chain ON audit(chain, chain_seq);

CREATE TABLE audit_heads (
	chain          TEXT PRIMARY KEY NOT NULL,
	seq            BIGINT NOT NULL CHECK (seq >= 1),
	row_hash       BYTEA NOT NULL CHECK (length(row_hash) = 32),
	checkpoint_seq BIGINT NOT NULL DEFAULT 0
);
INSERT INTO audit_heads(chain, seq, row_hash, checkpoint_seq)
	SELECT (SELECT a.station_id FROM audit a ORDER BY a.seq LIMIT 1),
	       CAST(convert_from(s.value, 'UTF8') AS BIGINT), h.value,
	       coalesce((SELECT max(a.seq) FROM audit a
	                 WHERE a.type = 'CHECKPOINT'), 0)
	FROM meta s, meta h
	WHERE s.key = 'audit_head_seq' AND h.key = 'audit_head_hash' AND
	      EXISTS (SELECT 1 FROM audit);
DELETE FROM meta WHERE key IN ('audit_head_seq', 'audit_head_hash');

CREATE TABLE serial_blocks (
	prefix     TEXT NOT NULL,
	station_id TEXT NOT NULL REFERENCES stations(id),
	first      BIGINT NOT NULL CHECK (first >= 1),
	last       BIGINT NOT NULL,
	leased_at  BIGINT NOT NULL,
	PRIMARY KEY (prefix, first),
	CHECK (last >= first)
);
CREATE INDEX serial_blocks_station ON serial_blocks(station_id, leased_at);
