-- kiln registry schema, version 2: the secure-boot key hash written to each
-- device (SHA-256 of the firmware-signing public key burnt into OTP),
-- recorded by ks_reg_boot_key() on the session and on its device together
-- with a BOOT_KEY_WRITTEN audit event.
ALTER TABLE devices ADD COLUMN boot_key_hash BLOB
	CHECK (boot_key_hash IS NULL OR length(boot_key_hash) = 32);
ALTER TABLE sessions ADD COLUMN boot_key_hash BLOB
	CHECK (boot_key_hash IS NULL OR length(boot_key_hash) = 32);
