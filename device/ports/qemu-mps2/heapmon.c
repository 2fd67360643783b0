/* qemu-mps2 port: mbedTLS heap high-water mark (see heapmon.h). */
#include <stddef.h>
#include <stdint.h>

#include "device/ports/qemu-mps2/board.h"
#include "device/ports/qemu-mps2/heapmon.h"

static uintptr_t heap_base;
static uint32_t heap_len, heap_hwm;
static void *(*real_calloc)(size_t, size_t);

static void *counting_calloc(size_t n, size_t size)
{
	void *p = real_calloc != NULL ? real_calloc(n, size) : NULL;

	if (p != NULL && heap_base != 0 && (uintptr_t)p >= heap_base) {
		uintptr_t top = (uintptr_t)p - heap_base + n * size;

		if (top > heap_hwm)
			heap_hwm = (uint32_t)top;
	}
	return p;
}

void __wrap_mbedtls_memory_buffer_alloc_init(unsigned char *buf, size_t len)
{
	heap_base = (uintptr_t)buf;
	heap_len = (uint32_t)len;
	__real_mbedtls_memory_buffer_alloc_init(buf, len);
}

int __wrap_mbedtls_platform_set_calloc_free(void *(*c)(size_t, size_t),
					    void (*f)(void *))
{
	real_calloc = c;
	return __real_mbedtls_platform_set_calloc_free(counting_calloc, f);
}

void kq_heap_stats(uint32_t *size, uint32_t *hwm)
{
	*size = heap_len;
	*hwm = heap_hwm;
}
