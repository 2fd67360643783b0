/*
 * qemu-mps2 port: mbedTLS heap high-water mark without MBEDTLS_MEMORY_DEBUG.
 *
 * The firmware is linked with --wrap=mbedtls_memory_buffer_alloc_init and
 * --wrap=mbedtls_platform_set_calloc_free: the first records the heap the
 * core hands to mbedTLS, the second interposes a calloc that notes the
 * highest heap byte any allocation reaches (headers included, as the
 * buffer allocator places its block header right before the pointer).
 * That is the heap size this allocator needed, fragmentation included.
 */
#ifndef KILN_DEVICE_PORTS_QEMU_MPS2_HEAPMON_H
#define KILN_DEVICE_PORTS_QEMU_MPS2_HEAPMON_H

#include <stddef.h>

void __real_mbedtls_memory_buffer_alloc_init(unsigned char *buf, size_t len);
void __wrap_mbedtls_memory_buffer_alloc_init(unsigned char *buf, size_t len);
int __real_mbedtls_platform_set_calloc_free(void *(*c)(size_t, size_t),
					    void (*f)(void *));
int __wrap_mbedtls_platform_set_calloc_free(void *(*c)(size_t, size_t),
					    void (*f)(void *));

#endif
