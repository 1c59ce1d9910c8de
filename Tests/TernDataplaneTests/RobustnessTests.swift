import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

@Suite struct RobustnessTests {
    /// Hundreds of thousands of frames: valid skeletons with random bytes written over random
    /// fields and random truncations, plus pure noise. Every one must end in exactly one counted
    /// outcome, never trap, and never write outside the frame and its headroom.
    @Test func arbitraryBytesNeverTrapAndAlwaysGetAnOutcome() {
        var sim = makeSimulator(
            [
                web([("10.1.0.1", 1), ("fc00::2", 1)], encapsulation: .gue),
                ServiceSpec(
                    address: ip("2001:db8::10"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .ipip,
                    backends: [(ip("10.1.0.1"), 1), (ip("fc00::1"), 1)]),
                ServiceSpec(
                    address: ip("2001:db8::10"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080,
                    backends: [(ip("10.1.0.1"), 1)]),
            ], flows: 4096)
        var rng = SplitMix(seed: 42)
        let total = 300_000
        var input = [UInt8](repeating: 0, count: 96)
        for _ in 0..<total {
            let n = Int.random(in: 3..<input.count, using: &rng)
            for k in 0..<n { input[k] = UInt8.random(in: 0...255, using: &rng) }
            // Mostly small edits of valid frames: flip a few bytes instead of overwriting many.
            if Bool.random(using: &rng) {
                for k in 3..<n where UInt8.random(in: 0...255, using: &rng) > 8 { input[k] = 0 }
            }
            let frame = input.withUnsafeBufferPointer { FuzzFrames.frame(from: UnsafeBufferPointer(rebasing: $0[0..<n])) }
            let (outcome, out) = sim.run(frame)
            #expect((out != nil) == outcome.transmits)
            if let out { #expect(out.count <= frame.count + 14 + 40 + 12) }
            for (o, out) in sim.takeReleased() { #expect((out != nil) == o.transmits) }  // held fragments let go
        }
        sim.finish()  // what is still held is given up: then every frame has its one final outcome
        let c = sim.worker.counters
        #expect(c.received == UInt64(total))
        // The generator reaches every verdict (so the test exercises the whole path).
        #expect(c[.forwarded] > 1000 && c[.host] > 1000 && c[.replied] > 100 && c[.dropMalformed] > 1000)
    }
}
