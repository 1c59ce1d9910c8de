// CDPDK: Tern's C for DPDK (CFastPath holds the packet path's C helpers, which know no DPDK).
// Static-inline accessors for what Swift cannot reach in DPDK's
// headers (mbuf fields of a cache-aligned struct, macros, rte_errno) and the glibc functions
// Swift cannot see (CPU sets, signalfd). Every symbol is prefixed `tern_`.
#ifndef TERN_CDPDK_H
#define TERN_CDPDK_H

#include <rte_config.h>
#include <rte_bus_vdev.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>
#include <rte_eth_ring.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_ring.h>

#include <signal.h>
#include <stdint.h>

// ---- mbufs ------------------------------------------------------------------------------------

/// The first byte of the frame (rte_pktmbuf_mtod).
static inline void *tern_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
static inline uint16_t tern_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline uint16_t tern_mbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }

/// Makes a single-segment mbuf's frame start `headroom` bytes into its buffer and be `length`
/// bytes long (after the pipeline moved the frame start back for outer headers).
static inline void tern_mbuf_reframe(struct rte_mbuf *m, uint16_t headroom, uint16_t length) {
    m->data_off = headroom;
    m->data_len = length;
    m->pkt_len = length;
}

static inline void tern_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
static inline void tern_mbuf_free_bulk(struct rte_mbuf **m, unsigned n) { rte_pktmbuf_free_bulk(m, n); }
static inline struct rte_mbuf *tern_mbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
/// The pool an mbuf came from (outer fragments are taken from it).
static inline struct rte_mempool *tern_mbuf_pool(struct rte_mbuf *m) { return m->pool; }
static inline char *tern_mbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
/// The mbuf's private area (mempool created with a non-zero priv_size).
static inline void *tern_mbuf_priv(struct rte_mbuf *m) { return rte_mbuf_to_priv(m); }

/// Swaps source and destination MAC of a frame (the macswap baseline).
static inline void tern_swap_macs(struct rte_mbuf *m) {
    struct rte_ether_hdr *e = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
    struct rte_ether_addr t = e->dst_addr;
    e->dst_addr = e->src_addr;
    e->src_addr = t;
}

// ---- ports ------------------------------------------------------------------------------------

/// The arguments the device was created with (`--vdev net_pcap0,rx_pcap=...`), or "".
static inline const char *tern_port_devargs(uint16_t port) {
    struct rte_eth_dev_info info;
    if (rte_eth_dev_info_get(port, &info) != 0 || info.device == NULL) return "";
    const struct rte_devargs *d = rte_dev_devargs(info.device);
    return (d != NULL && d->args != NULL) ? d->args : "";
}

static inline uint16_t tern_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
static inline uint16_t tern_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}

/// Configures `port` with `rx_queues` RX and `tx_queues` TX queues. RSS on the 5-tuple when `rss`
/// and the device offers it; returns the RSS hash functions actually enabled in *rss_enabled (0 = none).
int tern_port_configure(uint16_t port, uint16_t rx_queues, uint16_t tx_queues, int rss, uint64_t *rss_enabled);

// ---- rings (tests feed ring-backed ports directly) ---------------------------------------------

static inline unsigned tern_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **m, unsigned n) {
    return rte_ring_enqueue_burst(r, (void **)m, n, NULL);
}
static inline unsigned tern_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **m, unsigned n) {
    return rte_ring_dequeue_burst(r, (void **)m, n, NULL);
}

// ---- EAL, lcores, time ------------------------------------------------------------------------

static inline int tern_errno(void) { return rte_errno; }
static inline uint64_t tern_tsc(void) { return rte_rdtsc(); }
static inline uint64_t tern_tsc_hz(void) { return rte_get_tsc_hz(); }

// ---- port status ------------------------------------------------------------------------------

/// Link up (1) or down (0), or a negative errno; `speed` in Mb/s (`rte_eth_link_get_nowait`: the
/// link struct has bitfields).
int tern_port_link(uint16_t port, uint32_t *speed);

// ---- signals (glibc) --------------------------------------------------------------------------

/// Blocks SIGHUP, SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 in the calling thread (and the threads it
/// creates later) and ignores SIGPIPE; returns a signalfd that reads the blocked ones, or -1.
int tern_block_signals_fd(void);
/// Reads one signal from the signalfd within `timeout_ms`; 0 when none arrived, -1 on error.
// (0: an I/O readiness signal a library asked for, consumed.)
int tern_read_signal(int fd, int timeout_ms);
/// 1 when SIGTERM or SIGINT is pending (blocked, not yet read from the signalfd), else 0
/// (`sigpending`): lets long work give way to a stop without consuming the signal.
int tern_stop_signal_pending(void);
/// The pid holding a write lock on `path` (`fcntl(F_GETLK)`), 0 when none, -1 when the file
/// cannot be opened.
int tern_lock_holder(const char *path);

/// Sets DPDK pcapng's time base before dpdk-dumpcap captures anything (shim.c says why); 0 on success.
int tern_pcapng_prime(uint16_t port, struct rte_mempool *pool);

// ---- EAL's log --------------------------------------------------------------------------------

/// Receives what DPDK logs: the level of the message (RTE_LOG_EMERG 1 ... RTE_LOG_DEBUG 8) and
/// the bytes written (whole lines, or a part of a long one).
typedef void (*tern_log_sink)(uint32_t level, const char *bytes, size_t length);

/// Makes DPDK write its log to `sink` instead of stderr (rte_openlog_stream on a fopencookie
/// stream). Returns 0, or -1 when the stream cannot be made.
int tern_log_to(tern_log_sink sink);

#endif
