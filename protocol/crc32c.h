/* CRC-32C (Castagnoli), as used by iSCSI/ext4: reflected polynomial
 * 0x82F63B78, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF.
 * kp_crc32c("123456789") == 0xE3069283. */
#ifndef KILN_PROTOCOL_CRC32C_H
#define KILN_PROTOCOL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/** Continue a CRC-32C: pass 0 as crc for a fresh computation. */
uint32_t kp_crc32c(uint32_t crc, const void *data, size_t len);

#endif
