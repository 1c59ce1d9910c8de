import TernTestSupport
import Testing

@testable import TernWire

@Suite struct ChecksumTests {
    @Test func matchesTheRFC1071Example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        let sum = bytes.withUnsafeBytes { Checksum.fold(Checksum.add($0.baseAddress!, length: 8)) }
        #expect(sum == 0xDDF2)
    }

    @Test func oddLengthsPadWithZero() {
        let a: [UInt8] = [1, 2, 3]
        let b: [UInt8] = [1, 2, 3, 0]
        let ca = a.withUnsafeBytes { Checksum.compute($0.baseAddress!, length: 3) }
        let cb = b.withUnsafeBytes { Checksum.compute($0.baseAddress!, length: 4) }
        #expect(ca == cb)
    }

    @Test func incrementalUpdateEqualsRecomputing() {
        var rng = SplitMix(seed: 1071)
        for _ in 0..<2000 {
            var words = (0..<10).map { _ in UInt16.random(in: 1...0xFFFF, using: &rng) }
            let bytes = { (w: [UInt16]) in w.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } }
            let before = bytes(words).withUnsafeBytes { Checksum.compute($0.baseAddress!, length: 20) }
            let i = Int.random(in: 0..<10, using: &rng)
            let old = words[i]
            words[i] = UInt16.random(in: 1...0xFFFF, using: &rng)
            let after = bytes(words).withUnsafeBytes { Checksum.compute($0.baseAddress!, length: 20) }
            #expect(Checksum.update(before, old: old, new: words[i]) == after)
        }
    }

    @Test func smallFoldEqualsTheGeneralFoldForEvery32BitSum() {
        // The extremes (0x1FFFE after the first fold, carries out of the second) and random sums.
        var rng = SplitMix(seed: 0x1FFFE)
        let edges: [UInt32] = [0, 0xFFFF, 0x1_0000, 0x1_FFFE, 0xFFFE_FFFF, 0xFFFF_0000, 0xFFFF_FFFF, 0x4_FFFB]
        for sum in edges + (0..<20_000).map({ _ in UInt32.random(in: 0...UInt32.max, using: &rng) }) {
            #expect(Checksum.fold(small: sum) == Checksum.fold(UInt64(sum)))
        }
    }

    @Test func builtIPv4HeaderVerifiesToZero() {
        var buffer = [UInt8](repeating: 0, count: 20)
        buffer.withUnsafeMutableBytes { p in
            HeaderBuilder.writeIPv4(
                p.baseAddress!, at: 0, tos: 0xB8, totalLength: 1234, identification: 7, dontFragment: true,
                ipProtocol: 4, source: IPAddress("10.0.0.1")!, destination: IPAddress("10.9.8.7")!)
        }
        let check = buffer.withUnsafeBytes { Checksum.fold(Checksum.add($0.baseAddress!, length: 20)) }
        #expect(check == 0xFFFF)
        #expect(buffer[0] == 0x45 && buffer[1] == 0xB8 && buffer[6] == 0x40 && buffer[8] == 64 && buffer[9] == 4)
    }
}
