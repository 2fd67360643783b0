/*
 * kiln agent: objects arriving in PUT_OBJECT.
 *
 * The IDENTITY object is not kept in RAM: the agent writes the blob
 * prefix (magic, version, its public key) and then every chunk straight
 * into the identity flash sector no valid commit of the current key
 * vouches for (ka_record_blob_begin/append/end), so nothing it holds is
 * at risk until COMMIT programs the OTP commit slot. The HOSTKEY scalar
 * has its own 32-byte buffer, wiped as soon as it has been used.
 */
#ifndef KILN_DEVICE_CORE_STAGE_H
#define KILN_DEVICE_CORE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/core/record.h"
#include "protocol/error.h"

#define KA_HOSTKEY_LEN 32u

typedef enum {
	KA_STAGE_ABSENT = 0,
	KA_STAGE_PARTIAL = 1,
	KA_STAGE_COMPLETE = 2,
} ka_stage_state_t;

typedef struct {
	uint8_t hostkey_received;
	uint8_t hostkey[KA_HOSTKEY_LEN];
	/* the identity object being written to flash */
	uint8_t id_state;      /* ka_stage_state_t */
	uint32_t id_total;     /* declared object size */
	uint32_t id_received;  /* object bytes written so far */
	ka_blob_writer_t id_w; /* prefix + object, in flash */
} ka_stage_t;

/** Discard every object (wipes the buffers; flash is left as it is). */
void ka_stage_reset(ka_stage_t *s);

/**
 * Stage one HOSTKEY chunk: total must be 32, offset 0 (restart) or the
 * bytes received so far, the chunk within total. *received = bytes held.
 * KP_ST_BAD_OBJECT on any violation (nothing changed).
 */
kp_status_t ka_stage_put_hostkey(ka_stage_t *s, uint32_t offset,
				 uint32_t total, const uint8_t *data,
				 size_t len, uint32_t *received)
	__attribute__((warn_unused_result));

/**
 * Write one IDENTITY chunk. offset 0 (re)starts the object: the target
 * sector is chosen and erased and the prefix (KP_BLOB_PREFIX_LEN bytes:
 * magic, version, pubkey TLV) written first; `max_blob` bounds prefix +
 * total. Otherwise offset must equal the bytes received and total must
 * not change. The last chunk flushes the padded tail. Errors:
 * KP_ST_BAD_OBJECT (order, size), KP_ST_BAD_STATE (no sector may be
 * written), KP_ST_STORAGE (the object is dropped).
 */
kp_status_t ka_stage_put_identity(ka_stage_t *s, const ka_store_t *st,
				  const uint8_t pubkey[65], size_t max_blob,
				  uint32_t offset, uint32_t total,
				  const uint8_t *data, size_t len,
				  uint32_t *received)
	__attribute__((warn_unused_result));

/** State of the HOSTKEY; when complete *p gives the scalar (borrowed). */
ka_stage_state_t ka_stage_hostkey(const ka_stage_t *s, const uint8_t **p);

/** State of the IDENTITY; when complete, its sector and the blob's
 * length (prefix included). */
ka_stage_state_t ka_stage_identity(const ka_stage_t *s, uint8_t *sector,
				   size_t *blob_len);

/** Forget one object (HOSTKEY: wiped; IDENTITY: flash left as it is). */
void ka_stage_drop(ka_stage_t *s, uint8_t obj);

/** Total object bytes received and held, all objects. */
uint32_t ka_stage_bytes(const ka_stage_t *s);

#endif
