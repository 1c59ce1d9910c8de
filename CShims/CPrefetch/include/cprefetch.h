// CPrefetch: the cache-prefetch hint Swift has no spelling for. Not DPDK: the packet path
// (TernBalancing's flow table) uses it to start loading a flow's entry a few packets early.
#ifndef TERN_CPREFETCH_H
#define TERN_CPREFETCH_H

/// Hints that the cache line at `p` will be read soon (prefetcht0). Never faults.
static inline void tern_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Hints that the cache line at `p` will be written soon.
static inline void tern_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

#endif
