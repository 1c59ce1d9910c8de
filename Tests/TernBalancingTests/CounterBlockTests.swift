import Foundation
import Synchronization
import Testing

@testable import TernMetrics

@Suite(.serialized) struct CounterBlockTests {
    /// Run under ThreadSanitizer by `make tsan-test`: a reader loads while the owning thread adds;
    /// plain stores would be a data race. Every value read is whole and never goes back.
    @Test func aReaderSeesEveryCounterWholeAndNeverGoingBackWhileItsWorkerAdds() {
        let block = CounterBlock.allocate()
        defer { block.deallocate() }
        let done = Atomic<Bool>(false)
        let finished = spawn {
            for _ in 0..<200_000 {
                block.add(CounterSlot.rx)
                block.add(CounterSlot.outcomes, 2)
            }
            done.store(true, ordering: .releasing)
        }
        var last: UInt64 = 0
        var wentBack = false
        var reads = 0
        while !done.load(ordering: .acquiring) {
            let v = block.load(CounterSlot.rx)
            wentBack = wentBack || v < last
            last = v
            reads += 1
        }
        finished.wait()
        #expect(!wentBack && reads > 0)
        #expect(block.load(CounterSlot.rx) == 200_000 && block.load(CounterSlot.outcomes) == 400_000)
    }
}
