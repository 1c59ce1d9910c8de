import Glibc
import TernTestSupport
import Testing

@testable import TernWire

/// glibc's inet_ntop, as the outside reference for address text.
func ntop(_ a: IPAddress) -> String {
    var bytes = a.bytes
    var out = [CChar](repeating: 0, count: 64)
    _ = inet_ntop(a.isV6 ? AF_INET6 : AF_INET, &bytes, &out, 64)
    return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func pton(_ s: String, v6: Bool) -> [UInt8]? {
    var buf = [UInt8](repeating: 0, count: 16)
    guard inet_pton(v6 ? AF_INET6 : AF_INET, s, &buf) == 1 else { return nil }
    return Array(buf.prefix(v6 ? 16 : 4))
}

@Suite struct AddressTests {
    @Test func printsAndParsesLikeGlibcForRandomAddresses() {
        var rng = SplitMix(seed: 4291)
        for i in 0..<5000 {
            var a: IPAddress
            if i % 2 == 0 {
                a = IPAddress(v4: UInt32.random(in: 0...UInt32.max, using: &rng))
            } else {
                // Many zero groups, so `::` placement is exercised.
                var high: UInt64 = 0
                var low: UInt64 = 0
                for g in 0..<4 where Bool.random(using: &rng) { high |= UInt64.random(in: 0...0xFFFF, using: &rng) << (16 * g) }
                for g in 0..<4 where Bool.random(using: &rng) { low |= UInt64.random(in: 0...0xFFFF, using: &rng) << (16 * g) }
                a = IPAddress(high: high, low: low, isV6: true)
            }
            let text = a.description
            if a.isV6 && a.high == 0 && a.low >> 32 == 0xFFFF {
                // glibc prints IPv4-mapped addresses with a dotted quad; both forms parse back.
            } else if a.isV6 && a.high == 0 && a.low >> 32 == 0 {
                // glibc prints IPv4-compatible (deprecated) addresses as a dotted quad too.
            } else {
                #expect(text == ntop(a), "\(text) vs glibc \(ntop(a))")
            }
            #expect(IPAddress(text) == a)
            #expect(pton(text, v6: a.isV6) == a.bytes)
        }
    }

    @Test func parsesEmbeddedIPv4AndCompressedForms() {
        #expect(IPAddress("::ffff:192.0.2.1")?.low == 0xFFFF_C000_0201)
        #expect(IPAddress("::")?.isV6 == true)
        #expect(IPAddress("::1")?.low == 1)
        #expect(IPAddress("2001:db8::")?.high == 0x2001_0db8_0000_0000)
        #expect(IPAddress("1:2:3:4:5:6:7:8")?.description == "1:2:3:4:5:6:7:8")
    }

    @Test(arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", ":::", "1::2::3", "12345::",
        "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::", "::1.2.3", "1.2.3.4::", " 1.2.3.4",
    ])
    func rejectsMalformedAddressText(_ text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func macAddressesRoundTrip() {
        #expect(MACAddress("02:00:00:00:00:fe")?.description == "02:00:00:00:00:fe")
        #expect(MACAddress("AA-BB-CC-DD-EE-FF")?.value == 0xAABB_CCDD_EEFF)
        #expect(MACAddress("02:00:00:00:00") == nil)
        #expect(MACAddress("02:00:00:00:00:0g") == nil)
        #expect(MACAddress("02:00:00:00:00:001") == nil)
    }

    @Test func onlyOrdinaryUnicastAddressesCanBeEndpoints() {
        for text in ["192.0.2.10", "10.1.0.1", "1.1.1.1", "223.255.255.254", "2001:db8::10", "fc00::1", "::2"] {
            #expect(IPAddress(text)?.notUnicastReason == nil, "\(text)")
        }
        for (text, reason) in [
            ("0.0.0.0", "unspecified"), ("0.1.2.3", "this network"), ("127.0.0.2", "loopback"), ("224.0.0.5", "multicast"),
            ("239.1.1.1", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "broadcast"),
            ("169.254.1.1", "link-local"), ("::", "unspecified"), ("::1", "loopback"), ("ff02::1", "multicast"),
            ("fe80::1", "link-local"), ("febf::1", "link-local"), ("::ffff:10.0.0.1", "IPv4-mapped"),
        ] {
            #expect(IPAddress(text)?.notUnicastReason?.contains(reason) == true, "\(text)")
        }
        #expect(IPAddress("fec0::1")?.notUnicastReason == nil)
        #expect(MACAddress("02:00:00:00:00:01")?.notUnicastReason == nil)
        #expect(MACAddress("00:00:00:00:00:00")?.notUnicastReason == "the all-zero address")
        #expect(MACAddress("ff:ff:ff:ff:ff:ff")?.notUnicastReason == "the broadcast address")
        #expect(MACAddress("33:33:00:00:00:01")?.notUnicastReason == "a multicast address")
    }
}
