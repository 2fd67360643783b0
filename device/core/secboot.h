/*
 * kiln agent and boot stage: the secure-boot root of trust in OTP.
 *
 * Two OTP areas (see device/core/record.h for the whole map):
 *
 *   words 80..88   key-hash slot: 8 words SHA-256 of the firmware-signing
 *                  public key (the 65-byte uncompressed P-256 point;
 *                  word i = LE32(hash[4i..4i+3])) + 1 check word
 *                  (CRC-32C ^ KA_REC_SECBOOT_MAGIC), programmed LAST.
 *   words 96..127  anti-rollback counter: its value is the number of
 *                  programmed (0) bits over the 32 words, 0..1024.
 *
 * Because an OTP word programs only once, the counter advances into
 * erased words only: each advance programs the words after the highest
 * non-erased one, whole words to 0 and the last one partially, in
 * ascending order. A word is never programmed twice, bits only ever go
 * from 1 to 0, so the value only grows and a power cut in the middle of
 * an advance leaves a value between the old and the new one. The area
 * holds up to 32 advances or a value of 1024, whichever comes first
 * (docs/secure-boot.md).
 *
 * Plain functions over the HAL (no agent state), shared by the agent
 * (device/core/agent.c) and the first-stage boot (device/boot/).
 */
#ifndef KILN_DEVICE_CORE_SECBOOT_H
#define KILN_DEVICE_CORE_SECBOOT_H

#include <stdbool.h>
#include <stdint.h>

#include "device/core/record.h"
#include "protocol/error.h"

#define KA_SB_HASH_LEN 32u
#define KA_SB_COUNTER_MAX (KA_REC_ROLLBACK_WORDS * 32u) /* 1024 */

/**
 * Read the key-hash slot. A free slot (every word erased) gives
 * *present = false and KP_ST_OK. A slot with a valid check word gives
 * the hash and *present = true. Anything else (written but no valid check
 * word: an interrupted write or a tampered slot) is KP_ST_INTEGRITY;
 * KP_ST_STORAGE if the HAL cannot read.
 */
kp_status_t ka_sb_keyhash_read(uint8_t hash[32], bool *present) KA_WUR;

/**
 * Program the key hash: the 8 data words, then the check word last, then
 * read back. The same hash already there is KP_ST_OK without a write; a
 * different valid hash is refused with KP_ST_BAD_STATE (the root of trust
 * is set once). A slot left incomplete by a power cut whose programmed
 * words all agree with hash is completed; one that disagrees is
 * KP_ST_INTEGRITY. KP_ST_BAD_OBJECT if the hash cannot be stored (its
 * check word would read erased, odds 2^-32); KP_ST_STORAGE if the HAL
 * refuses a write or the read-back differs.
 */
kp_status_t ka_sb_keyhash_write(const uint8_t hash[32]) KA_WUR;

/**
 * Read the anti-rollback counter: the number of programmed bits over the
 * counter area, 0..KA_SB_COUNTER_MAX. KP_ST_STORAGE if the HAL cannot
 * read.
 */
kp_status_t ka_sb_counter_read(uint32_t *value) KA_WUR;

/**
 * Advance the counter to at least `to` (see above). A counter already at
 * or past `to` is KP_ST_OK without a write: it never goes back.
 * KP_ST_BAD_OBJECT if `to` > KA_SB_COUNTER_MAX; KP_ST_EXHAUSTED if the
 * erased words left cannot hold the difference; KP_ST_STORAGE if a write
 * fails or the value read back is below `to`.
 */
kp_status_t ka_sb_counter_advance(uint32_t to) KA_WUR;

#endif
