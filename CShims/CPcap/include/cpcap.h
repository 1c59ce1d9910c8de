// libpcap's filter language for `ternctl capture --filter`: compiled on the control thread,
// matched by a worker (classic BPF, interpreted; no allocation, no lock) only while a capture runs.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Compiles `expression` for Ethernet frames; NULL with the reason in `error` if it does not compile.
void *tern_filter_compile(const char *expression, char *error, size_t error_length);
/// Whether the frame matches (a NULL filter matches everything).
int tern_filter_match(const void *filter, const uint8_t *frame, uint32_t captured, uint32_t length);
void tern_filter_free(void *filter);
