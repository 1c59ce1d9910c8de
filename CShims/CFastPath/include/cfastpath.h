// CFastPath: what the packet path needs and Swift has no spelling for: cache-prefetch hints and a
// 16-bit SIMD compare that yields a bit mask (static inline, so they inline into Swift), and
// huge-page memory for the tables the path probes. Not DPDK.
#ifndef TERN_CFASTPATH_H
#define TERN_CFASTPATH_H

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/// Hints that the cache line at `p` will be read soon (prefetcht0). Never faults.
static inline void tern_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Hints that the cache line at `p` will be written soon.
static inline void tern_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/// Bit i set when `lanes[i] == value`, for the eight 16-bit lanes at `lanes` (16-byte aligned).
/// One flow-table bucket's tags are compared in four instructions instead of a loop of eight.
static inline uint32_t tern_match_u16x8(const void *lanes, uint16_t value) {
#if defined(__SSE2__)
    __m128i eq = _mm_cmpeq_epi16(_mm_load_si128((const __m128i *)lanes), _mm_set1_epi16((short)value));
    return (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128()));
#else
    const uint16_t *l = (const uint16_t *)lanes;
    uint32_t mask = 0;
    for (int i = 0; i < 8; i++) mask |= (uint32_t)(l[i] == value) << i;
    return mask;
#endif
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, no inversion) of `crc` followed by the 8
/// bytes of `v` in little-endian order: one SSE4.2 `crc32` instruction (Package.swift compiles
/// Tern for corei7), a bitwise loop elsewhere. The flow hash (FlowHash, version 2) is built on it.
static inline uint32_t tern_crc32c_u64(uint32_t crc, uint64_t v) {
#if defined(__SSE4_2__)
    return (uint32_t)__builtin_ia32_crc32di(crc, v);
#else
    for (int i = 0; i < 8; i++) {
        crc ^= (uint32_t)(v >> (8 * i)) & 0xFF;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
#endif
}

/// Zeroed, page-aligned memory for a per-worker table or a packet arena. From 2 MiB up it is
/// 2 MiB aligned and marked for transparent huge pages (madvise MADV_HUGEPAGE): a flow table of
/// hundreds of MB would otherwise take a TLB miss on nearly every lookup. Ordinary pages where
/// THP is off. Free with tern_huge_free and the same size. NULL when out of memory.
void *tern_huge_alloc(size_t bytes);
void tern_huge_free(void *p, size_t bytes);

#endif
