// Tern's XDP program for AF_XDP mode (`[[port]] af_xdp_interface`): the kernel keeps the NIC, and
// only what Tern's data plane serves is redirected to ternd's AF_XDP socket on the receiving
// queue. Everything else (ARP, ND, BGP, ssh, the node's own traffic, replies to its health checks)
// passes to the kernel, which keeps running when ternd stops, restarts or dies.
//
// What the data plane serves, per VIP (ternd keeps `tern_vips` equal to its running config):
//   TCP or UDP to the VIP's port (port 0: every port of the protocol) -> key (protocol, port, address)
//   ICMP/ICMPv6 and IP fragments for the VIP's address               -> key (0, 0, address)
// Keys live in an LPM trie: protocol and port come first (exact, 24 bits), then the address as
// IPv6 (IPv4 as ::ffff:a.b.c.d), so a CIDR VIP is one entry of prefix 24 + 96 + its length.
// One 802.1Q tag is looked through. Frames for a VIP while no socket is bound on the queue pass
// to the kernel (counted): ternd is starting or gone.
//
// Loaded by DPDK's net_af_xdp driver (devarg xdp_prog=), which puts its sockets in `xsks_map`.
// Build: clang -O2 -g -target bpf -c tern_xdp.c -o tern_xdp.o (`make ebpf`; installed by `make install`).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// The key of `tern_vips` (LPM trie: prefixlen counts bits of data from its first byte).
struct vip_key {
    __u32 prefixlen;
    __u8 protocol;      // 6 or 17; 0: the address entry (ICMP, fragments)
    __u8 port[2];       // network order; 0 with a protocol: every port
    __u8 address[16];   // IPv6, or IPv4-mapped
    __u8 zero;          // padding, part of the key: always 0
};

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __type(key, struct vip_key);
    __type(value, __u32);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
} tern_vips SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(key_size, sizeof(int));
    __uint(value_size, sizeof(int));
    __uint(max_entries, 64);
} xsks_map SEC(".maps");

// Counters, per CPU: see the enum. ternd sums them for /metrics.
enum { REDIRECTED, PASSED, NO_SOCKET, COUNTERS };
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, COUNTERS);
} tern_xdp_stats SEC(".maps");

static __always_inline int count(__u32 slot, int verdict) {
    __u64 *n = bpf_map_lookup_elem(&tern_xdp_stats, &slot);
    if (n) *n += 1;
    return verdict;
}

// Whether (protocol, port, address) or, failing that, (protocol, 0, address) is a VIP's.
static __always_inline int served(struct vip_key *key, __u8 protocol, __u16 port_be) {
    key->prefixlen = 8 * (sizeof(*key) - sizeof(key->prefixlen));
    key->protocol = protocol;
    __builtin_memcpy(key->port, &port_be, 2);
    if (bpf_map_lookup_elem(&tern_vips, key)) return 1;
    if (protocol == 0 || port_be == 0) return 0;
    key->port[0] = key->port[1] = 0;
    return bpf_map_lookup_elem(&tern_vips, key) != 0;
}

// Destination port of the TCP or UDP header at `l4` (network order), or -1 if it is cut short.
static __always_inline int destination_port(void *l4, void *end) {
    __u16 *ports = l4;
    if ((void *)(ports + 2) > end) return -1;
    return ports[1];
}

SEC("xdp")
int tern_xdp(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) return count(PASSED, XDP_PASS);
    __u16 ethertype = eth->h_proto;
    void *l3 = eth + 1;
    if (ethertype == bpf_htons(ETH_P_8021Q)) {
        __u16 *tag = l3;
        if ((void *)(tag + 2) > end) return count(PASSED, XDP_PASS);
        ethertype = tag[1];
        l3 = tag + 2;
    }
    struct vip_key key = {};
    __u8 protocol;
    void *l4;
    int fragment;
    if (ethertype == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > end || ip->ihl < 5) return count(PASSED, XDP_PASS);
        key.address[10] = key.address[11] = 0xff;
        __builtin_memcpy(&key.address[12], &ip->daddr, 4);
        protocol = ip->protocol;
        fragment = (ip->frag_off & bpf_htons(0x3fff)) != 0;  // MF or an offset
        l4 = l3 + ip->ihl * 4;
    } else if (ethertype == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > end) return count(PASSED, XDP_PASS);
        __builtin_memcpy(key.address, &ip6->daddr, 16);
        protocol = ip6->nexthdr;
        // Extension headers (hop-by-hop, routing, fragment, destination options) hide the ports:
        // the address entry decides, as for IPv4 fragments.
        fragment = protocol == 0 || protocol == 43 || protocol == 44 || protocol == 60;
        l4 = ip6 + 1;
    } else {
        return count(PASSED, XDP_PASS);
    }
    int match;
    if (fragment || protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
        match = served(&key, 0, 0);
    } else if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
        int port = destination_port(l4, end);
        match = port >= 0 && served(&key, protocol, (__u16)port);
    } else {
        match = 0;
    }
    if (!match) return count(PASSED, XDP_PASS);
    int queue = ctx->rx_queue_index;
    if (!bpf_map_lookup_elem(&xsks_map, &queue)) return count(NO_SOCKET, XDP_PASS);
    return count(REDIRECTED, bpf_redirect_map(&xsks_map, queue, XDP_PASS));
}

char _license[] SEC("license") = "Dual BSD/GPL";
