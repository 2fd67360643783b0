-- kiln registry schema, version 2, PostgreSQL twin of db/0002_boot_key.sql:
-- the secure-boot key hash written to each device.
ALTER TABLE devices ADD COLUMN boot_key_hash BYTEA
	CHECK (boot_key_hash IS NULL OR length(boot_key_hash) = 32);
ALTER TABLE sessions ADD COLUMN boot_key_hash BYTEA
	CHECK (boot_key_hash IS NULL OR length(boot_key_hash) = 32);
