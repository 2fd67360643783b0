/*
 * kiln agent: the staging area for identity objects (PUT_OBJECT).
 *
 * Objects arrive in chunks and are kept in RAM until COMMIT. CERT, CHAIN,
 * SERIAL and META share one buffer of KA_STAGE_CAP bytes (an object's
 * declared total is reserved at its first chunk); the HOSTKEY scalar has
 * its own 32-byte buffer, wiped as soon as it has been used.
 */
#ifndef KILN_DEVICE_CORE_STAGE_H
#define KILN_DEVICE_CORE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"

/** Room for CERT + CHAIN + SERIAL + META together. */
#define KA_STAGE_CAP 3072u
#define KA_STAGE_OBJS 4u
#define KA_HOSTKEY_LEN 32u

/* Per-object size limits (the blob format's, capped by KA_STAGE_CAP). */
#define KA_OBJ_CERT_MAX 2048u
#define KA_OBJ_CHAIN_MAX 4096u
#define KA_OBJ_SERIAL_MAX 64u
#define KA_OBJ_META_MAX 512u

typedef struct {
	uint8_t obj;       /* kp_obj_t, 0 = unused entry */
	uint16_t off;      /* start in buf */
	uint16_t total;    /* declared size */
	uint16_t received; /* bytes received so far */
} ka_stage_ent_t;

typedef struct {
	ka_stage_ent_t ent[KA_STAGE_OBJS];
	uint16_t used; /* bytes of buf reserved */
	uint8_t hostkey_received;
	uint8_t hostkey[KA_HOSTKEY_LEN];
	uint8_t buf[KA_STAGE_CAP];
} ka_stage_t;

typedef enum {
	KA_STAGE_ABSENT = 0,
	KA_STAGE_PARTIAL = 1,
	KA_STAGE_COMPLETE = 2,
} ka_stage_state_t;

/** Discard every staged object (wipes the buffers). */
void ka_stage_reset(ka_stage_t *s);

/**
 * Stage one chunk. offset must equal the bytes received so far for obj,
 * or be 0 (restart the object); total must not change between chunks and
 * must fit the object's limit and the free room; the chunk must not run
 * past total; SERIAL must be printable. Any violation: KP_ST_BAD_OBJECT
 * and the staged data is unchanged. *received = bytes staged for obj.
 */
kp_status_t ka_stage_put(ka_stage_t *s, uint8_t obj, uint32_t offset,
			 uint32_t total, const uint8_t *data, size_t len,
			 uint32_t *received) __attribute__((warn_unused_result));

/**
 * State of an object; when complete, *p and *len (if not NULL) give its
 * bytes (borrowed from s). For KP_OBJ_HOSTKEY, the staged scalar.
 */
ka_stage_state_t ka_stage_get(const ka_stage_t *s, uint8_t obj,
			      const uint8_t **p, uint16_t *len);

/** Forget one object (wiping its bytes). */
void ka_stage_drop(ka_stage_t *s, uint8_t obj);

/** True if some staged object is incomplete. */
bool ka_stage_any_partial(const ka_stage_t *s);

/** Total bytes received and held, all objects. */
uint32_t ka_stage_bytes(const ka_stage_t *s);

#endif
