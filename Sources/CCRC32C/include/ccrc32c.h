#ifndef ENSEMBLE_CCRC32C_H
#define ENSEMBLE_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Nonzero when this CPU has CRC-32C instructions (x86-64 SSE4.2, AArch64 CRC).
int ensemble_crc32c_hardware(void);

/// Extends the finalized CRC-32C `crc` with `length` bytes at `bytes`, with
/// the CPU's instructions. Only to be called when ensemble_crc32c_hardware().
uint32_t ensemble_crc32c_update(uint32_t crc, const void *bytes, size_t length);

#endif
