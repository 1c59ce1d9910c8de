// CFastPath: what the packet path needs and Swift has no spelling for: cache-prefetch hints, SIMD
// over a flow-table bucket (tag compare, replacement way), the CRC32C step of the flow hash (all
// static inline, so they inline into Swift), and huge-page memory for the tables the path
// probes. Not DPDK.
#ifndef TERN_CFASTPATH_H
#define TERN_CFASTPATH_H

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE4_1__)
#include <smmintrin.h>
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

/// Where a new flow goes in a full flow-table bucket (no never-used way): the first way whose
/// flow has idled out (`now - seen[w] > timeouts[classes[w] & 3]`, unsigned), else the way seen
/// least recently (the first of equals), with bit 8 set (an eviction). `seen`: 8 x u32, `classes`:
/// 8 x u8, `timeouts`: 4 x u32. With SSE4.1 the eight ways are checked at once (a loop of eight
/// cost ~110 instructions per new flow in a full table, twice: prefetch and insert).
static inline uint32_t tern_replacement_way(const void *seen, const void *classes, const uint32_t *timeouts, uint32_t now) {
#if defined(__SSE4_1__)
    __m128i s0 = _mm_loadu_si128((const __m128i *)seen);
    __m128i s1 = _mm_loadu_si128((const __m128i *)((const uint8_t *)seen + 16));
    __m128i n = _mm_set1_epi32((int)now);
    __m128i age0 = _mm_sub_epi32(n, s0), age1 = _mm_sub_epi32(n, s1);
    // Each way's timeout: its class (0-3) picks 4 bytes of the timeouts vector (pshufb).
    uint64_t c;
    __builtin_memcpy(&c, classes, 8);
    __m128i cls = _mm_cvtsi64_si128((long long)(c & 0x0303030303030303ull));
    __m128i pairs = _mm_unpacklo_epi8(cls, cls);
    __m128i lanes = _mm_set1_epi32(0x03020100);
    __m128i pick0 = _mm_add_epi8(_mm_slli_epi16(_mm_unpacklo_epi16(pairs, pairs), 2), lanes);
    __m128i pick1 = _mm_add_epi8(_mm_slli_epi16(_mm_unpackhi_epi16(pairs, pairs), 2), lanes);
    __m128i t = _mm_loadu_si128((const __m128i *)timeouts);
    __m128i t0 = _mm_shuffle_epi8(t, pick0), t1 = _mm_shuffle_epi8(t, pick1);
    // Live: age <= timeout (unsigned), i.e. max(age, timeout) == timeout.
    uint32_t live = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_max_epu32(age0, t0), t0)))
        | (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_max_epu32(age1, t1), t1))) << 4;
    if (live != 0xFF) return (uint32_t)__builtin_ctz(~live & 0xFF);
    __m128i m = _mm_min_epu32(s0, s1);
    m = _mm_min_epu32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_min_epu32(m, _mm_shuffle_epi32(m, 0xB1));
    uint32_t oldest = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(s0, m)))
        | (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(s1, m))) << 4;
    return (uint32_t)__builtin_ctz(oldest) | 0x100;
#else
    const uint8_t *k = (const uint8_t *)classes;
    uint32_t oldest = 0, oldest_seen = UINT32_MAX;
    for (uint32_t w = 0; w < 8; w++) {
        uint32_t s;
        __builtin_memcpy(&s, (const uint8_t *)seen + 4 * w, 4);
        if (now - s > timeouts[k[w] & 3]) return w;
        if (s < oldest_seen) {
            oldest_seen = s;
            oldest = w;
        }
    }
    return oldest | 0x100;
#endif
}

/// Zeroed, page-aligned memory for a per-worker table or a packet arena. From 2 MiB up it is
/// 2 MiB aligned and marked for transparent huge pages (madvise MADV_HUGEPAGE): a flow table of
/// hundreds of MB would otherwise take a TLB miss on nearly every lookup. Ordinary pages where
/// THP is off. Free with tern_huge_free and the same size. NULL when out of memory.
void *tern_huge_alloc(size_t bytes);
void tern_huge_free(void *p, size_t bytes);

/// What tern_huge_alloc maps for `bytes`: whole 2 MiB pages from 2 MiB up, else whole 4 KiB pages.
size_t tern_mapped_size(size_t bytes);

/// 1 when `path` is on tmpfs (statfs TMPFS_MAGIC), 0 when not, -1 when statfs fails (errno):
/// flow tables kept in a file must live in memory, never on a disk the kernel writes back to.
int tern_is_tmpfs(const char *path);

#endif
