import Foundation
import Synchronization
import TernTestSupport
import Testing

@testable import TernMetrics

@Suite(.serialized) struct CounterBlockTests {
    /// Run under ThreadSanitizer by `make tsan-test`: a reader loads while the owning thread adds;
    /// plain stores would be a data race. Every value read is whole and never goes back.
    @Test func aReaderSeesEveryCounterWholeAndNeverGoingBackWhileItsWorkerAdds() {
        let block = CounterBlock.allocate()
        defer { block.deallocate() }
        let done = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let added = Atomic<Int>(0)
        // The worker adds until the reader has read a thousand times while it did (on a busy
        // machine the reader may start late), at most 50 million times.
        let finished = spawn {
            var n = 0
            while n < 200_000 || (reads.load(ordering: .relaxed) < 1000 && n < 50_000_000) {
                block.add(CounterSlot.rx)
                block.add(CounterSlot.outcomes, 2)
                n += 1
            }
            added.store(n, ordering: .relaxed)
            done.store(true, ordering: .releasing)
        }
        var last: UInt64 = 0
        var wentBack = false
        repeat {
            let v = block.load(CounterSlot.rx)
            wentBack = wentBack || v < last
            last = v
            reads.add(1, ordering: .relaxed)
        } while !done.load(ordering: .acquiring)
        finished.wait()
        let n = UInt64(added.load(ordering: .relaxed))
        #expect(!wentBack && reads.load(ordering: .relaxed) >= 1000)
        #expect(block.load(CounterSlot.rx) == n && block.load(CounterSlot.outcomes) == 2 * n)
    }

    @Test func everySlotLiesPastTheOutcomesAndInsideTheBlock() {
        for slot in CounterSlot.allCases where slot != .outcomes {
            #expect(slot.rawValue >= CounterSlot.outcomes.rawValue + CounterSlot.outcomeSlots, "\(slot)")
            #expect(slot.rawValue < CounterSlot.count, "\(slot)")
        }
        #expect(Set(CounterSlot.features.map(\.slot)).count == CounterSlot.features.count)
    }
}
