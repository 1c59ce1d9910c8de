// Test fixture, not part of Tern: what a backend runs to decapsulate Tern's tunnels.
//
// This kernel has no ipip, ip6tnl, sit or fou modules, so test_netns.py's backend namespaces strip
// the outer headers with this XDP program instead (attached to the veth facing the router). It
// handles IPv4 or IPv6 outer headers carrying IPv4 (protocol 4) or IPv6 (41), directly (RFC 2003,
// RFC 2473) or inside GUE variant 0 on UDP port GUE_PORT. Anything else passes untouched, so the
// backend's own traffic (ARP, neighbour discovery, replies) is unaffected.
//
// Build: clang -O2 -g -target bpf -c xdp_decap.c -o xdp_decap.o (the clang beside swift works).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define GUE_PORT 6080

// Bytes of outer header after Ethernet, and the inner IP version's EtherType, or 0 to pass.
static __always_inline int outer_length(void *l3, void *end, __u16 ethertype, __u16 *inner_type) {
    __u8 next;
    int length;
    if (ethertype == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > end || ip->ihl != 5) return 0;
        next = ip->protocol;
        length = sizeof(*ip);
    } else if (ethertype == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > end) return 0;
        next = ip6->nexthdr;
        length = sizeof(*ip6);
    } else {
        return 0;
    }
    if (next == IPPROTO_UDP) {
        struct udphdr *udp = l3 + length;
        __u8 *gue = (__u8 *)(udp + 1);
        if ((void *)(gue + 4) > end || udp->dest != bpf_htons(GUE_PORT)) return 0;
        if (gue[0] != 0) return 0;  // version 0, no control bit, no extension words
        next = gue[1];
        length += sizeof(*udp) + 4;
    }
    if (next == IPPROTO_IPIP) *inner_type = bpf_htons(ETH_P_IP);
    else if (next == IPPROTO_IPV6) *inner_type = bpf_htons(ETH_P_IPV6);
    else return 0;
    return length;
}

static __always_inline int decap(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) return XDP_PASS;

    __u16 inner_type = 0;
    int strip = outer_length(eth + 1, end, eth->h_proto, &inner_type);
    if (strip == 0) return XDP_PASS;

    struct ethhdr saved = *eth;
    saved.h_proto = inner_type;
    if (bpf_xdp_adjust_head(ctx, strip)) return XDP_DROP;
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    eth = data;
    if ((void *)(eth + 1) > end) return XDP_DROP;
    *eth = saved;
    return XDP_PASS;
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx) { return decap(ctx); }

// The same for links whose MTU exceeds a page (jumbo frames): veth takes such a program only
// when it says it handles multi-buffer frames; the headers it reads are in the first buffer.
SEC("xdp.frags")
int xdp_decap_frags(struct xdp_md *ctx) { return decap(ctx); }

char LICENSE[] SEC("license") = "GPL";
