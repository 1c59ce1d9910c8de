// The few shim functions that are not static inline (they build C structs with unions and
// bitfields that are clumsy from Swift).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
// rte_pcapng_copy (tern_pcapng_prime) is experimental in DPDK 22.11.
#define ALLOW_EXPERIMENTAL_API 1
#include "cdpdk.h"

#include <rte_log.h>
#include <rte_pcapng.h>
#include <stdio.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

// Tern's frames must fit one mbuf with room for outer headers in front.
_Static_assert(RTE_PKTMBUF_HEADROOM >= 64, "mbuf headroom too small for outer headers");

int tern_port_configure(uint16_t port, uint16_t rx_queues, uint16_t tx_queues, int rss, uint64_t *rss_enabled) {
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) return rc;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    *rss_enabled = 0;
    if (rss && rx_queues > 1) {
        uint64_t wanted = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
        uint64_t offered = wanted & info.flow_type_rss_offloads;
        if (offered != 0) {
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = offered;
            *rss_enabled = offered;
        }
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    return rte_eth_dev_configure(port, rx_queues, tx_queues, &conf);
}

int tern_block_signals_fd(void) {
    // Every signal whose default action ends the process, except the synchronous faults
    // (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT) and SIGKILL/SIGSTOP: the control
    // thread reads them all; SIGHUP, SIGINT and SIGTERM act, the rest are logged and ignored
    // (SIGXCPU and SIGXFSZ may come from resource limits; write() then fails with EFBIG instead).
    static const int terminating[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,   SIGALRM, SIGVTALRM,
                                      SIGPROF, SIGIO,   SIGPWR,  SIGXCPU, SIGXFSZ, SIGSTKFLT};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof terminating / sizeof terminating[0]; i++) sigaddset(&set, terminating[i]);
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++) sigaddset(&set, s);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    // A peer that closes a socket must not kill the daemon: write() then fails with EPIPE.
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int tern_read_signal(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n <= 0) return n;
    struct signalfd_siginfo info;
    if (read(fd, &info, sizeof info) != sizeof info) return -1;
    // I/O readiness a library asked the kernel for (net_tap sets F_SETSIG to SIGRTMIN+1 on its
    // queues): not a signal anyone sent; consumed without a word (0: nothing to act on).
    int io = info.ssi_code >= POLL_IN && info.ssi_code <= POLL_HUP;
    if (io && (info.ssi_signo == SIGIO || (int)info.ssi_signo >= SIGRTMIN)) return 0;
    return (int)info.ssi_signo;
}

int tern_stop_signal_pending(void) {
    sigset_t set;
    if (sigpending(&set) != 0) return 0;
    return sigismember(&set, SIGTERM) == 1 || sigismember(&set, SIGINT) == 1;
}

int tern_lock_holder(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int rc = fcntl(fd, F_GETLK, &lock);
    close(fd);
    if (rc != 0 || lock.l_type == F_UNLCK) return 0;
    return (int)lock.l_pid;
}

int tern_port_link(uint16_t port, uint32_t *speed) {
    struct rte_eth_link link;
    memset(&link, 0, sizeof link);
    int rc = rte_eth_link_get_nowait(port, &link);
    if (rc != 0) return rc;
    *speed = link.link_speed;
    return link.link_status;
}

static tern_log_sink log_sink;

static ssize_t log_write(void *cookie, const char *bytes, size_t length) {
    (void)cookie;
    log_sink((uint32_t)rte_log_cur_msg_loglevel(), bytes, length);
    return (ssize_t)length;
}

int tern_log_to(tern_log_sink sink) {
    log_sink = sink;
    cookie_io_functions_t io = {.read = NULL, .write = log_write, .seek = NULL, .close = NULL};
    FILE *f = fopencookie(NULL, "w", io);
    if (f == NULL) return -1;
    setvbuf(f, NULL, _IOLBF, 0);  // each line reaches the sink as soon as it is complete
    return rte_openlog_stream(f);
}

/* DPDK 22.11's pcapng converts TSC cycles to time against a base it takes lazily, on its first
 * conversion, with its own rdtsc. pdump reads the burst's TSC before calling it, so the first
 * packet ever captured is older than the base: the difference wraps, about 2^64 cycles are
 * counted as whole seconds and moved into the base, and every later capture of the process is
 * stamped centuries ahead (year 2251-2281 at 2-3 GHz). One conversion at start-up, with a time half
 * a second ahead of now (under a second: the base is left where it is), sets the base before any
 * burst is captured. */
int tern_pcapng_prime(uint16_t port, struct rte_mempool *pool) {
    struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (m == NULL) return -1;
    char *data = rte_pktmbuf_append(m, 64);
    if (data == NULL) {
        rte_pktmbuf_free(m);
        return -1;
    }
    memset(data, 0, 64);
    uint64_t ahead = rte_get_tsc_cycles() + rte_get_tsc_hz() / 2;
    struct rte_mbuf *copy = rte_pcapng_copy(port, 0, m, pool, 64, ahead, RTE_PCAPNG_DIRECTION_IN);
    rte_pktmbuf_free(m);
    if (copy == NULL) return -1;
    rte_pktmbuf_free(copy);
    return 0;
}
