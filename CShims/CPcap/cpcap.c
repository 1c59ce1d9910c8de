#include "cpcap.h"

#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tern_filter_compile(const char *expression, char *error, size_t error_length) {
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    if (dead == NULL) {
        snprintf(error, error_length, "libpcap: cannot open a dead handle");
        return NULL;
    }
    struct bpf_program *program = calloc(1, sizeof *program);
    if (program == NULL || pcap_compile(dead, program, expression, 1, PCAP_NETMASK_UNKNOWN) != 0) {
        snprintf(error, error_length, "%s", program == NULL ? "out of memory" : pcap_geterr(dead));
        free(program);
        pcap_close(dead);
        return NULL;
    }
    pcap_close(dead);
    return program;
}

int tern_filter_match(const void *filter, const uint8_t *frame, uint32_t captured, uint32_t length) {
    if (filter == NULL) return 1;
    const struct bpf_program *program = filter;
    return bpf_filter(program->bf_insns, frame, length, captured) != 0;
}

void tern_filter_free(void *filter) {
    if (filter == NULL) return;
    pcap_freecode(filter);
    free(filter);
}
