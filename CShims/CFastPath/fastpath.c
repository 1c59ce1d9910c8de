// The out-of-line part of CFastPath: large table memory backed by transparent huge pages.
#include "cfastpath.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#define TERN_HUGE_PAGE ((size_t)2 << 20)
#define TERN_PAGE ((size_t)4096)

// Tables under one huge page stay on ordinary pages: a huge page would multiply their footprint.
size_t tern_mapped_size(size_t bytes) {
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

int tern_is_tmpfs(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return fs.f_type == TMPFS_MAGIC ? 1 : 0;
}
