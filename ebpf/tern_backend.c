// Tern's backend side: an XDP program for the NIC of each backend (`ternctl backend attach`).
// It strips every encapsulation Tern emits (IPv4 or IPv6 outer header carrying IPv4 or IPv6:
// RFC 2003 / RFC 2473, or inside GUE variant 0 on a configured UDP port) from packets addressed to
// this node whose inner destination is a local address too (a VIP on lo), and hands the inner
// packet to the kernel, which answers the client directly (DSR). Everything else passes untouched.
// XDP rather than tc: it runs before the kernel builds an skb, needs no qdisc, and can send a
// packet on (XDP_TX) for the second chance below.
//
// Second chance: a GUE packet may carry a second hop in its private data (Tern's format, README
// "Wire formats"): the backend that owned the flow before the VIP's backends changed. When the
// inner packet is TCP without SYN and no local socket has it (bpf_skc_lookup_tcp; a listener does
// not count), the packet is sent on to that backend with the hop removed (never twice): outer
// destination rewritten, next hop from bpf_fib_lookup (or, where this host does not forward, back
// to the MAC it came from, the router). Otherwise it is delivered here.
//
// ternctl fills the maps: the GUE ports, the node's local addresses (every address of every
// interface when attached; attach again after adding addresses). Counters per CPU.
// Build: clang -O2 -g -target bpf -c tern_backend.c (`make ebpf`; installed by `make install`).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define GUE_PORTS 4
#define HOP_MAGIC 0x54    // 'T': the private flags word is Tern's
#define HOP_VERSION 1
#define AF_INET 2
#define AF_INET6 10

struct config {
    __u16 gue_ports[GUE_PORTS];  // network order; 0: unused
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct config);
    __uint(max_entries, 1);
} tern_be_config SEC(".maps");

// Local addresses: IPv6, or IPv4-mapped (::ffff:a.b.c.d).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u8[16]);
    __type(value, __u8);
    __uint(max_entries, 4096);
} tern_be_local SEC(".maps");

enum { DECAPSULATED, PASSED, NOT_LOCAL, HOP_LOCAL, HOP_FORWARDED, HOP_REFLECTED, HOP_UNUSABLE, COUNTERS };
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, COUNTERS);
} tern_be_stats SEC(".maps");

static __always_inline int count(__u32 slot, int verdict) {
    __u64 *n = bpf_map_lookup_elem(&tern_be_stats, &slot);
    if (n) *n += 1;
    return verdict;
}

static __always_inline int local4(__be32 address) {
    __u8 key[16] = {};
    key[10] = key[11] = 0xff;
    __builtin_memcpy(&key[12], &address, 4);
    return bpf_map_lookup_elem(&tern_be_local, key) != 0;
}

static __always_inline int local6(struct in6_addr *address) {
    __u8 key[16];
    __builtin_memcpy(key, address, 16);
    return bpf_map_lookup_elem(&tern_be_local, key) != 0;
}

static __always_inline int gue_port(__u16 port) {
    __u32 zero = 0;
    struct config *c = bpf_map_lookup_elem(&tern_be_config, &zero);
    if (!c) return 0;
#pragma unroll
    for (int i = 0; i < GUE_PORTS; i++) {
        if (c->gue_ports[i] && c->gue_ports[i] == port) return 1;
    }
    return 0;
}

static __always_inline __u16 checksum_ipv4(struct iphdr *ip) {
    __u32 sum = 0;
    __u16 *words = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++) sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum;
}

// What the parse found.
struct parsed {
    int outer_v6;
    int outer_length;  // bytes after Ethernet up to the inner IP header
    int inner_v6;
    int hop_length;    // bytes of GUE options (the hop), 0 without
    __u8 hop[16];      // the second hop (IPv4 in the first 4 bytes)
    int hop_v6;
};

// Whether a local socket other than a listener has the inner TCP segment's connection.
static __always_inline int has_socket(struct xdp_md *ctx, void *inner, void *end, int v6) {
    struct bpf_sock_tuple tuple = {};
    __u32 size;
    if (v6) {
        struct ipv6hdr *ip6 = inner;
        struct tcphdr *tcp = (void *)(ip6 + 1);
        if ((void *)(tcp + 1) > end) return 1;
        __builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, 16);
        __builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, 16);
        tuple.ipv6.sport = tcp->source;
        tuple.ipv6.dport = tcp->dest;
        size = sizeof(tuple.ipv6);
    } else {
        struct iphdr *ip = inner;
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) > end) return 1;
        tuple.ipv4.saddr = ip->saddr;
        tuple.ipv4.daddr = ip->daddr;
        tuple.ipv4.sport = tcp->source;
        tuple.ipv4.dport = tcp->dest;
        size = sizeof(tuple.ipv4);
    }
    struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
    if (!sk) return 0;
    int listener = sk->state == BPF_TCP_LISTEN;
    bpf_sk_release(sk);
    return !listener;
}

// Whether the inner packet is TCP without SYN (a packet of an established connection).
static __always_inline int tcp_not_syn(void *inner, void *end, int v6) {
    struct tcphdr *tcp;
    if (v6) {
        struct ipv6hdr *ip6 = inner;
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP) return 0;
        tcp = (void *)(ip6 + 1);
    } else {
        struct iphdr *ip = inner;
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5) return 0;
        tcp = (void *)(ip + 1);
    }
    if ((void *)(tcp + 1) > end) return 0;
    return !tcp->syn;
}

// Sends the packet on to its second hop: the GUE options go, the outer destination becomes the
// hop and the source this node. XDP_TX toward the FIB's next hop, or back to the frame's source
// MAC where the FIB cannot say (this host does not forward); -1 when it cannot be sent (the packet
// is untouched: delivered here).
static __always_inline int forward_to_hop(struct xdp_md *ctx, struct parsed *p) {
    __u8 head[14 + 40 + 12];
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (p->hop_v6 != p->outer_v6) return -1;
    if (p->outer_v6) {
        if (data + 14 + 40 + 12 > end) return -1;
        __builtin_memcpy(head, data, 14 + 40 + 12);
        if (((struct ipv6hdr *)(head + 14))->hop_limit <= 1) return -1;
    } else {
        if (data + 14 + 20 + 12 > end) return -1;
        __builtin_memcpy(head, data, 14 + 20 + 12);
        if (((struct iphdr *)(head + 14))->ttl <= 1) return -1;
    }
    int drop = p->hop_length;
    if (drop != 8 && drop != 20) return -1;
    if (bpf_xdp_adjust_head(ctx, drop)) return -1;
    // From here the frame has moved: a failure drops it.
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct udphdr *udp;
    __u8 *gue;
    struct bpf_fib_lookup fib = {};
    if (p->outer_v6) {
        if (data + 14 + 40 + 12 > end) return XDP_DROP;
        __builtin_memcpy(data, head, 14 + 40 + 12);
        struct ipv6hdr *ip6 = data + 14;
        ip6->saddr = ip6->daddr;
        __builtin_memcpy(&ip6->daddr, p->hop, 16);
        ip6->payload_len = bpf_htons(bpf_ntohs(ip6->payload_len) - drop);
        ip6->hop_limit--;
        udp = (void *)(ip6 + 1);
        fib.family = AF_INET6;
        __builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
        __builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
        fib.l4_protocol = IPPROTO_UDP;
        fib.tot_len = bpf_ntohs(ip6->payload_len) + 40;
    } else {
        if (data + 14 + 20 + 12 > end) return XDP_DROP;
        __builtin_memcpy(data, head, 14 + 20 + 12);
        struct iphdr *ip = data + 14;
        ip->saddr = ip->daddr;
        __builtin_memcpy(&ip->daddr, p->hop, 4);
        ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) - drop);
        ip->ttl--;
        ip->check = 0;
        ip->check = checksum_ipv4(ip);
        udp = (void *)(ip + 1);
        fib.family = AF_INET;
        fib.ipv4_src = ip->saddr;
        fib.ipv4_dst = ip->daddr;
        fib.l4_protocol = IPPROTO_UDP;
        fib.tot_len = bpf_ntohs(ip->tot_len);
    }
    udp->len = bpf_htons(bpf_ntohs(udp->len) - drop);
    udp->check = 0;  // the next backend's program takes GUE without a checksum (RFC 6935 for IPv6)
    gue = (__u8 *)(udp + 1);
    gue[0] = 0;      // version 0, data, no options left
    gue[2] = 0;
    gue[3] = 0;
    fib.ifindex = ctx->ingress_ifindex;
    long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
    if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
        __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
        __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
        if (fib.ifindex == ctx->ingress_ifindex) return count(HOP_FORWARDED, XDP_TX);
        return count(HOP_FORWARDED, bpf_redirect(fib.ifindex, 0));
    }
    // Back toward the router the packet came from.
    __u8 mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    return count(HOP_REFLECTED, XDP_TX);
}

static __always_inline int backend(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) return count(PASSED, XDP_PASS);
    void *l3 = eth + 1;
    struct parsed p = {};
    __u8 next;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff))) return count(PASSED, XDP_PASS);
        if (!local4(ip->daddr)) return count(PASSED, XDP_PASS);
        next = ip->protocol;
        p.outer_length = 20;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > end) return count(PASSED, XDP_PASS);
        if (!local6(&ip6->daddr)) return count(PASSED, XDP_PASS);
        next = ip6->nexthdr;
        p.outer_v6 = 1;
        p.outer_length = 40;
    } else {
        return count(PASSED, XDP_PASS);
    }
    if (next == IPPROTO_UDP) {
        struct udphdr *udp = l3 + p.outer_length;
        __u8 *gue = (__u8 *)(udp + 1);
        if ((void *)(gue + 4) > end || !gue_port(udp->dest)) return count(PASSED, XDP_PASS);
        if ((gue[0] & 0xe0) != 0) return count(PASSED, XDP_PASS);  // variant 0 data messages only
        int options = (gue[0] & 0x1f) * 4;
        next = gue[1];
        if (gue[3] & 1) {  // P: private flags first; Tern's carry the second hop
            __u8 *priv = gue + 4;
            if ((void *)(priv + 4) > end) return count(PASSED, XDP_PASS);
            if (priv[0] == HOP_MAGIC && priv[1] == HOP_VERSION && priv[3] == 1) {
                if (priv[2] == 4 && options == 8 && (void *)(priv + 8) <= end) {
                    __builtin_memcpy(p.hop, priv + 4, 4);
                    p.hop_length = 8;
                } else if (priv[2] == 6 && options == 20 && (void *)(priv + 20) <= end) {
                    __builtin_memcpy(p.hop, priv + 4, 16);
                    p.hop_length = 20;
                    p.hop_v6 = 1;
                }
            }
        }
        if (options > 20) return count(PASSED, XDP_PASS);
        p.outer_length += 8 + 4 + options;
    }
    if (next == IPPROTO_IPIP) {
        p.inner_v6 = 0;
    } else if (next == IPPROTO_IPV6) {
        p.inner_v6 = 1;
    } else {
        return count(PASSED, XDP_PASS);
    }
    if (p.outer_length > 40 + 8 + 4 + 20) return count(PASSED, XDP_PASS);
    void *inner = l3 + p.outer_length;
    if (p.inner_v6) {
        struct ipv6hdr *ip6 = inner;
        if ((void *)(ip6 + 1) > end) return count(PASSED, XDP_PASS);
        if (!local6(&ip6->daddr)) return count(NOT_LOCAL, XDP_PASS);
    } else {
        struct iphdr *ip = inner;
        if ((void *)(ip + 1) > end) return count(PASSED, XDP_PASS);
        if (!local4(ip->daddr)) return count(NOT_LOCAL, XDP_PASS);
    }
    if (p.hop_length) {
        if (tcp_not_syn(inner, end, p.inner_v6) && !has_socket(ctx, inner, end, p.inner_v6)) {
            int verdict = forward_to_hop(ctx, &p);
            if (verdict >= 0) return verdict;
            count(HOP_UNUSABLE, 0);  // delivered here instead
        } else {
            count(HOP_LOCAL, 0);
        }
        data = (void *)(long)ctx->data;
        end = (void *)(long)ctx->data_end;
        eth = data;
        if ((void *)(eth + 1) > end) return XDP_DROP;
    }
    // Strip: the Ethernet header moves up to the inner packet.
    struct ethhdr saved = *eth;
    saved.h_proto = p.inner_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
    if (bpf_xdp_adjust_head(ctx, p.outer_length)) return count(PASSED, XDP_PASS);
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    eth = data;
    if ((void *)(eth + 1) > end) return XDP_DROP;
    *eth = saved;
    return count(DECAPSULATED, XDP_PASS);
}

SEC("xdp")
int tern_backend(struct xdp_md *ctx) { return backend(ctx); }

// The same for links whose MTU exceeds a page (jumbo frames): drivers take such a program only
// when it says it handles multi-buffer frames; the headers it reads are in the first buffer.
SEC("xdp.frags")
int tern_backend_frags(struct xdp_md *ctx) { return backend(ctx); }

char LICENSE[] SEC("license") = "GPL";
