#include "tests/boot/qimage_hal.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/store.h"

static kq_store_t store;
static uint8_t *map;

int kt_qimage_create(const char *path, const uint8_t *uid, size_t uid_len)
{
	uint8_t *img = calloc(1, KQ_STORE_SIZE);
	int fd = -1, r = -1;

	if (img == NULL || kq_store_format(img, uid, uid_len) != KA_HAL_OK)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, img, KQ_STORE_SIZE) != (ssize_t)KQ_STORE_SIZE ||
	    ftruncate(fd, KT_QIMAGE_SIZE) != 0 || fsync(fd) != 0) {
		perror(path);
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(img);
	return r;
}

int kt_qimage_open(const char *path)
{
	int fd = open(path, O_RDWR);

	if (fd < 0) {
		perror(path);
		return -1;
	}
	map = mmap(NULL, KQ_STORE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		map = NULL;
		perror("mmap");
		return -1;
	}
	if (kq_store_attach(&store, map, NULL) != KA_HAL_OK) {
		fprintf(stderr, "%s: not a kiln board image\n", path);
		kt_qimage_close();
		return -1;
	}
	return 0;
}

void kt_qimage_close(void)
{
	if (map != NULL) {
		(void)msync(map, KQ_STORE_SIZE, MS_SYNC);
		munmap(map, KQ_STORE_SIZE);
	}
	map = NULL;
	memset(&store, 0, sizeof(store));
}

ka_hal_status_t ka_hal_otp_geometry(ka_hal_otp_geom_t *g)
{
	g->words = KA_SIM_OTP_WORDS;
	g->words_per_block = KA_SIM_OTP_BLOCK_WORDS;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_read(uint32_t word, uint32_t *out, size_t n)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_otp_read(&store, word, out, n);
}

ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_otp_program(&store, word, value);
}

ka_hal_status_t ka_hal_otp_lock_block(uint32_t block)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_otp_lock_block(&store, block);
}

ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_otp_block_locked(&store, block, locked);
}

ka_hal_status_t ka_hal_flash_geometry(ka_hal_flash_geom_t *g)
{
	g->sector_size = KA_SIM_SECTOR_SIZE;
	g->sectors = KA_SIM_SECTORS;
	g->prog_align = KA_SIM_PROG_ALIGN;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_erase(uint32_t sector)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_flash_erase(&store, sector);
}

ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_flash_program(&store, off, data, n);
}

ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_flash_read(&store, off, out, n);
}

ka_hal_status_t ka_hal_flash_protect(uint32_t sector)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_flash_protect(&store, sector);
}

ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_flash_protected(&store, sector, prot);
}

ka_hal_status_t ka_hal_debug_lock(void)
{
	return map == NULL ? KA_HAL_ERR_IO : kq_store_debug_lock(&store);
}

ka_hal_status_t ka_hal_debug_locked(bool *locked)
{
	return map == NULL ? KA_HAL_ERR_IO
			   : kq_store_debug_locked(&store, locked);
}
