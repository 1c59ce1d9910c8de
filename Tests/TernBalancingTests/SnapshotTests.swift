import Testing

@testable import TernBalancing
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

func service(_ address: String, _ port: UInt16, _ proto: UInt8 = IPProtocol.tcp, backends: [String] = ["10.1.0.1"])
    -> ServiceSpec
{
    ServiceSpec(
        address: IPAddress(address)!, port: port, ipProtocol: proto, encapsulation: .ipip,
        backends: backends.map { (IPAddress($0)!, 100) })
}

/// The VIP `s` picks for a destination (a plain function: `#expect` cannot capture a ~Copyable snapshot).
func lookup(_ s: borrowing ForwardingSnapshot, _ address: String, _ port: UInt16, _ proto: UInt8 = IPProtocol.tcp) -> Int {
    s.findVIP(address: IPAddress(address)!, port: port, ipProtocol: proto)
}

func isVIPAddress(_ s: borrowing ForwardingSnapshot, _ address: IPAddress) -> Bool { s.isVIPAddress(address) }

@Suite struct SnapshotTests {
    @Test func findsExactVIPsBeforeAnyPortVIPs() {
        let spec = SnapshotSpec(
            services: [
                service("192.0.2.10", 80), service("192.0.2.10", 0), service("192.0.2.10", 0, IPProtocol.udp),
                service("2001:db8::1", 443), service("192.0.2.11", 53, IPProtocol.udp),
            ],
            tableSize: 7, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.10")!) == true)
        #expect(lookup(s, "192.0.2.10", 80) == 0)
        #expect(lookup(s, "192.0.2.10", 81) == 1)
        #expect(lookup(s, "192.0.2.10", 80, IPProtocol.udp) == 2)
        #expect(lookup(s, "192.0.2.10", 80, 47) == -1)
        #expect(lookup(s, "2001:db8::1", 443) == 3)
        #expect(lookup(s, "2001:db8::1", 80) == -1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.11")!) == true)
        #expect(lookup(s, "192.0.2.11", 53) == -1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.12")!) == false)
        #expect(lookup(s, "192.0.2.12", 80) == -1)
        // An IPv4 address and the IPv6 address with the same low bits are different VIPs.
        let lookalike = IPAddress(high: 0, low: 0xC000_020A, isV6: true)
        #expect(isVIPAddress(s, lookalike) == false)
        #expect(lookup(s, lookalike.description, 80) == -1)
    }

    @Test func anyPortVIPsAloneServeEveryPort() {
        let spec = SnapshotSpec(
            services: [service("192.0.2.10", 0), service("192.0.2.10", 0, IPProtocol.udp)],
            tableSize: 7, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect(lookup(s, "192.0.2.10", 443) == 0)
        #expect(lookup(s, "192.0.2.10", 0, IPProtocol.udp) == 1)
        #expect(lookup(s, "192.0.2.10", 443, IPProtocol.icmp) == -1)
    }

    @Test func keepsEachVIPsBackendsInAddressOrder() {
        let spec = SnapshotSpec(
            services: [service("192.0.2.10", 80, backends: ["10.1.0.9", "10.1.0.1", "10.1.0.5"])],
            tableSize: 7, tunnelSourceV4: nil, tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect((0..<3).map { s.backends[$0].address.description } == ["10.1.0.1", "10.1.0.5", "10.1.0.9"])
        #expect(s.slot(of: IPAddress("10.1.0.9")!, vip: 0) == 2)
        #expect(s.slot(of: IPAddress("10.1.0.2")!, vip: 0) == nil)
    }

    @Test func manyVIPsOnOneAddressAllResolve() {
        let services = (1...500).map { service("192.0.2.10", UInt16($0)) }
        let s = ForwardingSnapshot(
            SnapshotSpec(services: services, tableSize: 7, tunnelSourceV4: nil, tunnelSourceV6: nil), generation: 1)
        for p in 1...500 { #expect(lookup(s, "192.0.2.10", UInt16(p)) == p - 1) }
    }
}

/// The VIP maps' hash (CRC32C of the key's words, low bits) spreads the keys configurations make
/// (runs of consecutive addresses and ports, IPv6 prefixes that differ high or low): every key is
/// found, and none sits far from its first slot.
@Suite struct VIPMapSpreadTests {
    @Test func consecutiveAddressesAndPortsSpreadOverTheMap() {
        let v6 = IPAddress("2001:db8::")!
        var keys: [MapKey] = []
        for i in 0..<1024 {
            keys.append(MapKey(IPAddress(v4: 0xC000_0200 &+ UInt32(i)), port: 443, ipProtocol: IPProtocol.tcp))
            keys.append(MapKey(IPAddress("192.0.2.10")!, port: UInt16(i), ipProtocol: IPProtocol.udp))
            keys.append(MapKey(IPAddress(high: v6.high, low: UInt64(i), isV6: true), port: 80, ipProtocol: IPProtocol.tcp))
            let prefix = IPAddress(high: v6.high | UInt64(i) << 16, low: 0xFFFF, isV6: true)
            keys.append(MapKey(prefix, port: 80, ipProtocol: IPProtocol.tcp))
        }
        let map = KeyMap(keys.enumerated().map { ($0.element, Int32($0.offset)) })
        defer { map.deallocate() }
        var longest = 0
        for (i, key) in keys.enumerated() {
            #expect(map.find(key) == i)
            var slot = key.slot(mask: map.mask)
            var distance = 0
            while map.slots[slot].key != key {
                slot = (slot + 1) & map.mask
                distance += 1
            }
            longest = max(longest, distance)
        }
        // Linear probing at most half full: a few dozen at worst for 4,096 keys spread at random.
        #expect(longest < 40, "longest probe \(longest)")
    }
}

/// Rebuilding only what changed: a snapshot takes the running one's Maglev tables for VIPs whose
/// backends, weights and table size are unchanged, and VIPs with the same backends share one.
@Suite struct IncrementalTableTests {
    func spec(_ services: [ServiceSpec], tableSize: Int = 1009) -> SnapshotSpec {
        SnapshotSpec(services: services, tableSize: tableSize, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
    }

    func tablePointers(_ s: borrowing ForwardingSnapshot) -> [UnsafePointer<UInt16>] {
        (0..<s.vips.count).map { s.vips[$0].table }
    }

    @Test func onlyChangedTablesAreBuiltAndTheRestAreTheRunningOnes() {
        let web = service("192.0.2.10", 80, backends: ["10.1.0.1", "10.1.0.2"])
        let tls = service("192.0.2.10", 443, backends: ["10.1.0.2", "10.1.0.1"])  // same set, other order
        let dns = service("192.0.2.11", 53, IPProtocol.udp, backends: ["10.1.0.3", "10.1.0.4"])
        let first = ForwardingSnapshot(spec([web, tls, dns]), generation: 1)
        #expect(first.tablesBuilt == 2)  // web and tls share one
        let before = tablePointers(first)
        #expect(before[0] == before[1] && before[0] != before[2])

        var lighter = dns
        lighter.backends[1].weight = 50
        let second = ForwardingSnapshot(
            spec([web, tls, lighter]), generation: 2, reusing: first.tableCache, shouldStop: { false })!
        let after = tablePointers(second)
        #expect(second.tablesBuilt == 1 && after[0] == before[0] && after[2] != before[2])
        // The reused table is the one a full build makes.
        let full = ForwardingSnapshot(spec([web, tls, lighter]), generation: 3)
        #expect(
            Array(second.table(vip: 0)) == Array(full.table(vip: 0)) && Array(second.table(vip: 2)) == Array(full.table(vip: 2)))
        #expect(second.fingerprint(vip: 2) == full.fingerprint(vip: 2))

        // Another table size: nothing can be reused.
        let resized = ForwardingSnapshot(
            spec([web, tls, lighter], tableSize: 2003), generation: 4, reusing: second.tableCache, shouldStop: { false })!
        #expect(resized.tablesBuilt == 2)
    }

    /// With `previous`, VIPs built from the same inputs are copied (records, templates, table);
    /// the result equals a full build byte for byte, whatever changed around them.
    @Test func copyingUnchangedVIPsFromThePreviousSnapshotEqualsAFullBuild() {
        func withIDs(_ services: [ServiceSpec]) -> [ServiceSpec] {
            var ids = 0
            return services.map { s in
                var s = s
                s.counterIDs = s.backends.indices.map { _ in
                    ids += 1
                    return ids
                }
                return s
            }
        }
        let web = service("192.0.2.10", 80, backends: ["10.1.0.2", "10.1.0.1", "10.1.0.3"])
        let dns = service("192.0.2.11", 53, IPProtocol.udp, backends: ["10.1.0.4", "10.1.0.5"])
        let gue = ServiceSpec(
            address: IPAddress("192.0.2.12")!, port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080,
            backends: [(IPAddress("10.1.0.6")!, 100), (IPAddress("10.1.0.7")!, 100)])
        let first = ForwardingSnapshot(spec(withIDs([web, dns, gue])), generation: 1)
        var heavier = dns
        heavier.backends[0].weight = 300
        for next in [
            withIDs([web, heavier, gue]), withIDs([gue, web]),
            withIDs([web, dns, gue, service("192.0.2.13", 80, backends: ["10.1.0.8"])]),
        ] {
            let copied = withUnsafePointer(to: first) {
                ForwardingSnapshot(spec(next), generation: 2, previous: $0, shouldStop: { false })!
            }
            let full = ForwardingSnapshot(spec(next), generation: 2)
            #expect(
                copied.backends.map(\.address) == full.backends.map(\.address)
                    && copied.backends.map(\.counterID) == full.backends.map(\.counterID))
            #expect(copied.backends.map(\.weight) == full.backends.map(\.weight))
            #expect((0..<next.count).allSatisfy { copied.fingerprint(vip: $0) == full.fingerprint(vip: $0) })
            let bytes = copied.backends.count * EncapTemplate.size
            #expect(memcmp(copied.templates, full.templates, bytes) == 0)
        }
        // Another tunnel source changes every template: nothing is copied.
        let moved = SnapshotSpec(
            services: withIDs([web, dns, gue]), tableSize: 1009, tunnelSourceV4: IPAddress("10.0.0.2"), tunnelSourceV6: nil)
        let copied = withUnsafePointer(to: first) {
            ForwardingSnapshot(moved, generation: 2, previous: $0, shouldStop: { false })!
        }
        let full = ForwardingSnapshot(moved, generation: 2)
        #expect(memcmp(copied.templates, full.templates, copied.backends.count * EncapTemplate.size) == 0)
    }

    @Test func aTableOutlivesTheSnapshotThatBuiltItWhileAnotherUsesIt() {
        let web = service("192.0.2.10", 80, backends: ["10.1.0.1", "10.1.0.2"])
        var cache: [MaglevTableKey: MaglevTable] = [:]
        var expected: [UInt16] = []
        do {
            let first = ForwardingSnapshot(spec([web]), generation: 1)
            cache = first.tableCache
            expected = Array(first.table(vip: 0))
        }  // first is gone; the cache holds its table
        let second = ForwardingSnapshot(spec([web]), generation: 2, reusing: cache, shouldStop: { false })!
        cache = [:]
        #expect(second.tablesBuilt == 0 && Array(second.table(vip: 0)) == expected)
    }
}
