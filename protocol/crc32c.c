#include "protocol/crc32c.h"

/* Nibble-wise table: 64 bytes of ROM, fast enough for a UART and small
 * enough for the smallest agent. */
static const uint32_t crc32c_nibble[16] = {
	0x00000000u, 0x105EC76Fu, 0x20BD8EDEu, 0x30E349B1u,
	0x417B1DBCu, 0x5125DAD3u, 0x61C69362u, 0x7198540Du,
	0x82F63B78u, 0x92A8FC17u, 0xA24BB5A6u, 0xB21572C9u,
	0xC38D26C4u, 0xD3D3E1ABu, 0xE330A81Au, 0xF36E6F75u,
};

uint32_t kp_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		crc = (crc >> 4) ^ crc32c_nibble[crc & 0x0Fu];
		crc = (crc >> 4) ^ crc32c_nibble[crc & 0x0Fu];
	}
	return ~crc;
}
