/*
 * kiln agent: the identity records in OTP and protected flash.
 *
 * OTP layout (32-bit words; blocks of 8 words; see docs/porting.md):
 *
 *   word  0        header (KA_REC_HEADER_V1), programmed before the first
 *                  key slot
 *   words 1..36    4 key slots:    8 words private scalar (big-endian
 *                  bytes, word i = LE32(d[4i..4i+3])) + 1 check word
 *   words 37..76   4 commit slots: 8 words SHA-256 of the identity blob +
 *                  1 info word {key slot:8 | flash sector:8 | length:16}
 *                  + 1 check word
 *   words 77..78   reserved
 *   word  79       lock word: KA_REC_LOCK_MAGIC, programmed when LOCK
 *                  begins; from then on the identity is final
 *   (blocks 0..9 = words 0..79 are the identity blocks LOCK level 1 locks)
 *   words 80..88   secure-boot key-hash slot: 8 words + check
 *                  (device/core/secboot.h)
 *   words 89..95   reserved
 *   words 96..127  anti-rollback counter (device/core/secboot.h)
 *
 * Check word = CRC-32C over the slot's other words (as LE bytes) XOR a
 * per-record-type constant; it is programmed LAST. A slot whose words are
 * all 0xFFFFFFFF is free; a slot with any word programmed but no valid
 * check word is burnt (skipped, never reused); a slot with a valid check
 * word is in use. Slots are allocated in ascending order: the newest valid
 * slot is the highest-numbered valid one, and only slots above the
 * highest non-free slot are free for use.
 *
 * Flash: the identity blob lives in sector 0 or 1 of the identity region,
 * alternately, so a new commit never overwrites the blob the newest valid
 * commit slot vouches for (a port with one sector uses sector 0 only, and
 * refuses to write a new blob while the current key's commit uses it).
 * A blob is written as it arrives (ka_record_blob_begin/append/end, from
 * PUT_OBJECT IDENTITY) into the sector no valid commit of the current key
 * vouches for; only the commit slot programmed afterwards makes it count.
 *
 * These are plain functions over the HAL (no agent state), so the unit
 * tests drive them directly on the POSIX emulation.
 */
#ifndef KILN_DEVICE_CORE_RECORD_H
#define KILN_DEVICE_CORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"

#define KA_WUR __attribute__((warn_unused_result))

#define KA_REC_OTP_WORDS 128u
#define KA_REC_BLOCK_WORDS 8u

#define KA_REC_HEADER_WORD 0u
#define KA_REC_HEADER_V1 0x4B4C4E01u /* "KLN", layout version 1 */

#define KA_REC_KEY_SLOTS 4u
#define KA_REC_KEY_BASE 1u
#define KA_REC_KEY_WORDS 9u /* 8 data + check */

#define KA_REC_COMMIT_SLOTS 4u
#define KA_REC_COMMIT_BASE 37u
#define KA_REC_COMMIT_WORDS 10u /* 8 digest + info + check */

#define KA_REC_LOCK_WORD 79u
#define KA_REC_LOCK_MAGIC 0x4C4F434Bu /* "LOCK" */
#define KA_REC_ID_BLOCKS 10u          /* blocks 0..9: identity records */

#define KA_REC_SECBOOT_BASE 80u
#define KA_REC_SECBOOT_WORDS 9u
/* OTP blocks holding the secure-boot slot (words 80..95), locked by LOCK */
#define KA_REC_SECBOOT_BLOCK0 10u
#define KA_REC_SECBOOT_BLOCKS 2u
#define KA_REC_ROLLBACK_BASE 96u
#define KA_REC_ROLLBACK_WORDS 32u

/* Per-record-type constants XORed into the check word. */
#define KA_REC_KEY_MAGIC 0x4B455931u     /* "KEY1" */
#define KA_REC_COMMIT_MAGIC 0x434D5431u  /* "CMT1" */
#define KA_REC_SECBOOT_MAGIC 0x53424B31u /* "SBK1" */

/* Identity flash: sectors used for the blob (A/B). */
#define KA_REC_ID_SECTORS 2u

typedef enum {
	KA_SLOT_FREE = 0,  /* every word erased */
	KA_SLOT_USED = 1,  /* valid check word */
	KA_SLOT_BURNT = 2, /* written, but no valid check word */
} ka_slot_state_t;

/* What the OTP and flash say, as scanned. */
typedef struct {
	bool header_ok;     /* header erased or KA_REC_HEADER_V1 */
	bool lock_begun;    /* lock word programmed */
	uint8_t key_state[KA_REC_KEY_SLOTS];       /* ka_slot_state_t */
	uint8_t commit_state[KA_REC_COMMIT_SLOTS]; /* ka_slot_state_t */
	int8_t key_slot;    /* newest valid key slot, -1 if none */
	int8_t key_next;    /* next key slot to use, -1 if none left */
	uint8_t key_free;   /* key slots still usable */
	int8_t commit_slot; /* newest valid commit slot, -1 if none */
	int8_t commit_next; /* next commit slot to use, -1 if none left */
	/* the newest valid commit slot's contents */
	uint8_t commit_key;    /* key slot it is bound to */
	uint8_t commit_sector; /* flash sector holding the blob */
	uint16_t blob_len;
	uint8_t digest[32];
	bool committed;    /* newest valid commit is bound to key_slot */
	uint8_t integrity; /* KP_ST_OK, or KP_ST_INTEGRITY if the committed
			      blob does not hash to digest (or the header is
			      foreign) */
	uint8_t lock;      /* KP_LOCK_* bits read back from the hardware */
} ka_store_t;

/** Check word of a record: CRC-32C over words[0..n) as LE bytes ^ magic. */
uint32_t ka_record_check(uint32_t magic, const uint32_t *words, size_t n);

/**
 * Classify a slot of n words whose last word is the check word:
 * free (all erased), used (valid check) or burnt.
 */
ka_slot_state_t ka_record_classify(uint32_t magic, const uint32_t *words,
				   size_t n);

/**
 * Scan OTP, lock bits and (if committed) the flash blob into *st.
 * Returns KP_ST_OK or KP_ST_STORAGE if the HAL failed to read; an
 * integrity failure is reported in st->integrity, not as an error.
 */
kp_status_t ka_record_scan(ka_store_t *st) KA_WUR;

/** True if the scalar d can be stored (its check word is not erased). */
bool ka_record_key_storable(const uint8_t d[32]);

/**
 * Program d into the next free key slot: header word first if erased,
 * then the data words, the check word last; read back; rescan *st.
 * Returns KP_ST_OK (slot in *slot), KP_ST_EXHAUSTED, KP_ST_STORAGE
 * (HAL refused or read-back differs: the slot is burnt) or
 * KP_ST_BAD_OBJECT (d not storable).
 */
kp_status_t ka_record_key_store(ka_store_t *st, const uint8_t d[32],
				uint8_t *slot) KA_WUR;

/**
 * Load the private scalar of a valid key slot into d (the caller wipes
 * it). KP_ST_NO_KEY if the slot is not in use.
 */
kp_status_t ka_record_key_load(const ka_store_t *st, uint8_t slot,
			       uint8_t d[32]) KA_WUR;

/**
 * Write a blob to a flash sector: erase, program (padded with 0xFF to the
 * program granularity; buf[len..cap) is used as padding room), read back
 * and compare. KP_ST_STORAGE on any failure.
 */
kp_status_t ka_record_blob_write(uint8_t sector, uint8_t *buf, size_t len,
				 size_t cap) KA_WUR;

/** Largest program granularity the writer supports (bytes). */
#define KA_REC_ALIGN_MAX 64u

/* A blob being written to flash piece by piece. */
typedef struct {
	uint32_t len;       /* bytes appended so far */
	uint32_t cap;       /* most bytes the sector takes */
	uint16_t align;     /* program granularity */
	uint8_t sector;     /* flash sector being written */
	uint8_t tail_len;   /* bytes held until a full program unit */
	uint8_t tail[KA_REC_ALIGN_MAX];
} ka_blob_writer_t;

/**
 * Start writing a new blob: pick the sector (the one the newest commit
 * slot does not use) and erase it. KP_ST_BAD_STATE when the port has a
 * single sector and the current key's identity lives in it;
 * KP_ST_STORAGE on a HAL failure.
 */
kp_status_t ka_record_blob_begin(const ka_store_t *st, ka_blob_writer_t *w)
	KA_WUR;

/**
 * Append n bytes: whole program units are programmed, the rest is held
 * in w->tail. KP_ST_BAD_OBJECT if the blob would outgrow the sector or
 * 65535 bytes; KP_ST_STORAGE on a HAL failure.
 */
kp_status_t ka_record_blob_append(ka_blob_writer_t *w, const uint8_t *p,
				  size_t n) KA_WUR;

/** Program the held tail, padded with 0xFF to the program granularity. */
kp_status_t ka_record_blob_end(ka_blob_writer_t *w) KA_WUR;

/** Read n bytes at off of a flash sector of the identity region. */
kp_status_t ka_record_sector_read(uint8_t sector, uint32_t off, uint8_t *out,
				  size_t n) KA_WUR;

/** SHA-256 of the first len bytes of an identity flash sector, as read
 * back from the flash. */
kp_status_t ka_record_sector_digest(uint8_t sector, size_t len,
				    uint8_t out[32]) KA_WUR;

/**
 * Program the next commit slot for a blob already written (and checked)
 * in `sector`: digest, {key slot, sector, len}, check word last; rescan
 * *st. Returns KP_ST_OK, KP_ST_NO_KEY, KP_ST_EXHAUSTED, KP_ST_BAD_OBJECT
 * or KP_ST_STORAGE (also when the rescan does not show the new commit
 * intact).
 */
kp_status_t ka_record_commit_sector(ka_store_t *st, uint8_t sector,
				    size_t len, const uint8_t digest[32])
	KA_WUR;

/** Read n bytes at off of the committed blob (bounds checked). */
kp_status_t ka_record_blob_read(const ka_store_t *st, uint32_t off,
				uint8_t *out, size_t n) KA_WUR;

/**
 * Commit a blob: write it to the sector the newest commit does not use,
 * then program the next commit slot (digest, {key_slot, sector, len}),
 * check word last; rescan *st. buf[len..cap) is padding room. Returns
 * KP_ST_OK, KP_ST_NO_KEY, KP_ST_EXHAUSTED, KP_ST_BAD_OBJECT (too large
 * for a sector) or KP_ST_STORAGE.
 */
kp_status_t ka_record_commit(ka_store_t *st, uint8_t *buf, size_t len,
			     size_t cap, const uint8_t digest[32]) KA_WUR;

/**
 * Lock the identity: program the lock word (once), lock the identity OTP
 * blocks and the secure-boot key-hash blocks, write-protect the identity
 * sectors, and for level 2 lock debug.
 * Steps already done are skipped (no write). Rescans *st.
 */
kp_status_t ka_record_lock(ka_store_t *st, uint8_t level) KA_WUR;

#endif
