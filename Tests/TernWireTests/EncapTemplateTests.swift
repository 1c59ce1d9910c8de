import Testing

@testable import TernWire

@Suite struct EncapTemplateTests {
    /// The header length and outer EtherType a packet reads from the template (not from its kind)
    /// are the kind's, for all four kinds.
    @Test func aTemplateCarriesItsKindsHeaderLengthAndEtherType() {
        let t = UnsafeMutableRawPointer.allocate(byteCount: EncapTemplate.size, alignment: 64)
        defer { t.deallocate() }
        let cases: [(IPAddress, IPAddress, UInt16?, EncapTemplate.Kind, Int, UInt16)] = [
            (IPAddress("10.0.0.1")!, IPAddress("10.1.0.1")!, nil, .ipv4, 20, EtherType.ipv4),
            (IPAddress("10.0.0.1")!, IPAddress("10.1.0.1")!, 6080, .ipv4GUE, 32, EtherType.ipv4),
            (IPAddress("fc00::1")!, IPAddress("fc00::2")!, nil, .ipv6, 40, EtherType.ipv6),
            (IPAddress("fc00::1")!, IPAddress("fc00::2")!, 6080, .ipv6GUE, 52, EtherType.ipv6),
        ]
        for (source, destination, guePort, kind, length, etherType) in cases {
            EncapTemplate.prepare(at: t, source: source, destination: destination, innerIsV6: false, guePort: guePort)
            #expect(EncapTemplate.kind(t) == kind)
            #expect(EncapTemplate.headerLength(t) == length && kind.headerLength == length)
            var frame = [UInt8](repeating: 0, count: 14)
            frame.withUnsafeMutableBytes { EncapTemplate.storeEtherType(t, to: $0.baseAddress!, at: 12) }
            #expect(frame[12] == UInt8(etherType >> 8) && frame[13] == UInt8(etherType & 0xFF))
        }
    }
}
