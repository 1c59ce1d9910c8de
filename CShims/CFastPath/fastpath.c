// The out-of-line part of CFastPath: large table memory backed by transparent huge pages, and
// the mappings retired snapshots leave for the next build.
#include "cfastpath.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define TERN_HUGE_PAGE ((size_t)2 << 20)
#define TERN_PAGE ((size_t)4096)

// Tables under one huge page stay on ordinary pages: a huge page would multiply their footprint.
static size_t tern_mapped_size(size_t bytes) {
    size_t unit = bytes >= TERN_HUGE_PAGE ? TERN_HUGE_PAGE : TERN_PAGE;
    return (bytes + unit - 1) & ~(unit - 1);
}

void *tern_huge_alloc(size_t bytes) {
    size_t size = tern_mapped_size(bytes);
    if (size < TERN_HUGE_PAGE) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    // Map one huge page more than needed, then trim both ends so the table starts on a 2 MiB
    // boundary: only aligned 2 MiB ranges can become huge pages.
    uint8_t *raw = mmap(NULL, size + TERN_HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *start = (uint8_t *)(((uintptr_t)raw + TERN_HUGE_PAGE - 1) & ~(uintptr_t)(TERN_HUGE_PAGE - 1));
    if (start > raw) munmap(raw, (size_t)(start - raw));
    size_t tail = (size_t)(raw + size + TERN_HUGE_PAGE - (start + size));
    if (tail > 0) munmap(start + size, tail);
    (void)madvise(start, size, MADV_HUGEPAGE);  // advice only: ordinary pages if THP is off
    return start;
}

void tern_huge_free(void *p, size_t bytes) {
    if (p != NULL) munmap(p, tern_mapped_size(bytes));
}

// Kept mappings: what the last few retired snapshots freed, by mapped size, oldest first out.
#define TERN_KEPT_SLOTS 8
#define TERN_KEPT_BYTES ((size_t)512 << 20)

static struct {
    void *p;
    size_t size;
} tern_kept[TERN_KEPT_SLOTS];
static size_t tern_kept_count, tern_kept_total;
static pthread_mutex_t tern_kept_lock = PTHREAD_MUTEX_INITIALIZER;

// Takes kept mapping `i` out of the list and returns it (the lock held).
static void *tern_kept_remove(size_t i) {
    void *p = tern_kept[i].p;
    tern_kept_total -= tern_kept[i].size;
    memmove(&tern_kept[i], &tern_kept[i + 1], (tern_kept_count - i - 1) * sizeof tern_kept[0]);
    tern_kept_count--;
    return p;
}

static void *tern_kept_take(size_t size) {
    void *p = NULL;
    pthread_mutex_lock(&tern_kept_lock);
    for (size_t i = 0; i < tern_kept_count; i++) {
        if (tern_kept[i].size == size) {
            p = tern_kept_remove(i);
            break;
        }
    }
    pthread_mutex_unlock(&tern_kept_lock);
    return p;
}

void *tern_kept_alloc(size_t bytes, int zeroed) {
    size_t size = tern_mapped_size(bytes);
    void *p = tern_kept_take(size);
    if (p == NULL) return tern_huge_alloc(bytes);
    if (zeroed) memset(p, 0, bytes);
    return p;
}

void tern_kept_free(void *p, size_t bytes) {
    if (p == NULL) return;
    size_t size = tern_mapped_size(bytes);
    if (size > TERN_KEPT_BYTES) {
        munmap(p, size);
        return;
    }
    void *evicted[TERN_KEPT_SLOTS + 1];
    size_t evictedSizes[TERN_KEPT_SLOTS + 1], n = 0;
    pthread_mutex_lock(&tern_kept_lock);
    while (tern_kept_count > 0 && (tern_kept_count == TERN_KEPT_SLOTS || tern_kept_total + size > TERN_KEPT_BYTES)) {
        evictedSizes[n] = tern_kept[0].size;
        evicted[n++] = tern_kept_remove(0);
    }
    tern_kept[tern_kept_count].p = p;
    tern_kept[tern_kept_count].size = size;
    tern_kept_count++;
    tern_kept_total += size;
    pthread_mutex_unlock(&tern_kept_lock);
    for (size_t i = 0; i < n; i++) munmap(evicted[i], evictedSizes[i]);
}

void tern_kept_reserve(size_t bytes) {
    void *p = tern_huge_alloc(bytes);
    if (p == NULL) return;
    memset(p, 0, bytes);  // every page faulted in now
    tern_kept_free(p, bytes);
}

size_t tern_kept_bytes(void) {
    pthread_mutex_lock(&tern_kept_lock);
    size_t total = tern_kept_total;
    pthread_mutex_unlock(&tern_kept_lock);
    return total;
}
