import Testing

@testable import TernTestSupport
@testable import TernWire

/// A TCP segment (header with `options`) from 198.51.100.1 to 192.0.2.10, checksum right.
func segment(options: [UInt8]) -> [UInt8] {
    Frames.tcp(
        source: IPAddress("198.51.100.1")!, destination: IPAddress("192.0.2.10")!, sourcePort: 40000, destinationPort: 80,
        flags: TCPFlag.syn, options: options)
}

/// Whether a segment's checksum is right (the sum over pseudo-header and segment folds to 0xFFFF).
func checksumHolds(_ s: [UInt8]) -> Bool {
    let pseudo = Frames.pseudoSum(IPAddress("198.51.100.1")!, IPAddress("192.0.2.10")!, IPProtocol.tcp, s.count)
    return s.withUnsafeBytes { Checksum.fold(Checksum.add($0.baseAddress!, length: s.count, to: pseudo)) } == 0xFFFF
}

/// Clamps a copy; returns (clamped?, the MSS option's value afterwards at `at`, the segment).
func clamp(_ s: [UInt8], to limit: UInt16, mssAt at: Int) -> (Bool, UInt16, [UInt8]) {
    var out = s
    let done = out.withUnsafeMutableBytes { TCPOptions.clampMSS($0.baseAddress!, available: $0.count, to: limit) }
    return (done, UInt16(out[at]) << 8 | UInt16(out[at + 1]), out)
}

@Suite struct TCPOptionsTests {
    @Test func anMSSAboveTheLimitIsLoweredAndTheChecksumStaysRight() {
        // MSS first (value at offset 22), then SACK permitted, window scale, padding.
        let s = segment(options: [2, 4, 0x05, 0xB4, 4, 2, 3, 3, 7, 0, 0, 0])
        #expect(checksumHolds(s))
        let (done, mss, out) = clamp(s, to: 1440, mssAt: 22)
        #expect(done && mss == 1440 && checksumHolds(out))
    }

    @Test func anMSSAtAnOddOffsetIsLoweredAndTheChecksumStaysRight() {
        // One NOP first: the value starts at offset 23, across two 16-bit words.
        let s = segment(options: [1, 2, 4, 0x23, 0x28, 1, 1, 1])
        let (done, mss, out) = clamp(s, to: 1220, mssAt: 23)
        #expect(done && mss == 1220 && checksumHolds(out))
    }

    @Test func smallEnoughMissingOrMalformedOptionsAreLeftAlone() {
        let cases: [[UInt8]] = [
            [2, 4, 0x05, 0x00, 1, 1, 1, 1],  // 1280, under the limit
            [4, 2, 1, 1],  // no MSS option
            [0, 0, 0, 0, 2, 4, 0x05, 0xB4],  // after the end of the option list
            [3, 0, 2, 4, 0x05, 0xB4, 1, 1],  // a zero length: malformed
            [1, 1, 1, 1, 1, 2, 4, 0x05],  // overruns the header
            [],  // no options at all
        ]
        for options in cases {
            let s = segment(options: options)
            var out = s
            let done = out.withUnsafeMutableBytes { TCPOptions.clampMSS($0.baseAddress!, available: $0.count, to: 1400) }
            #expect(!done && out == s, "\(options)")
        }
    }

    @Test func aHeaderLongerThanWhatIsThereIsLeftAlone() {
        var s = segment(options: [2, 4, 0x05, 0xB4])
        let done = s.withUnsafeMutableBytes { TCPOptions.clampMSS($0.baseAddress!, available: 22, to: 1400) }
        #expect(!done)
    }

    @Test func theLimitIsTheTunnelLessTheInnerHeaders() {
        #expect(TCPOptions.mss(tunnelMTU: 1480, innerIsV6: false) == 1440)
        #expect(TCPOptions.mss(tunnelMTU: 1460, innerIsV6: true) == 1400)
    }
}
