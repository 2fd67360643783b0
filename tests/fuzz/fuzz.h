/* The libFuzzer entry point every target in tests/fuzz/ defines. */
#ifndef KILN_TESTS_FUZZ_H
#define KILN_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/** Run one input; abort() (crash) on any violated invariant. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
