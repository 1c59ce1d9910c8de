import Foundation
import Synchronization
import TernTestSupport
import Testing

@testable import TernBalancing
@testable import TernWire

/// A snapshot whose contents encode its generation, so a reader can tell a torn or freed one.
func numberedSnapshot(_ generation: UInt32, workers: Int) -> ForwardingSnapshot {
    let backends = (0..<Int(generation % 5 + 1)).map { (address: IPAddress(v4: 0x0A00_0000 + UInt32($0)), weight: 1) }
    let spec = SnapshotSpec(
        services: [
            ServiceSpec(
                address: IPAddress(v4: generation), port: UInt16(truncatingIfNeeded: generation), ipProtocol: IPProtocol.tcp,
                encapsulation: .ipip,
                backends: backends)
        ],
        tableSize: 101, tunnelSourceV4: IPAddress(v4: generation), tunnelSourceV6: nil)
    return ForwardingSnapshot(spec, generation: generation, workers: workers)
}

@Suite(.serialized) struct SnapshotCellTests {
    /// Run under ThreadSanitizer by `make tsan-test`: readers spin over the current snapshot while the
    /// writer publishes and frees hundreds of them; freeing without a grace period would race.
    @Test func concurrentReadersNeverSeeAFreedOrTornSnapshot() {
        let readers = 2
        let cell = SnapshotCell(numberedSnapshot(1, workers: readers), readers: readers)
        let stop = Atomic<Bool>(false)
        let bad = Atomic<Int>(0)
        let bursts = Atomic<Int>(0)
        let started = Atomic<Int>(0)
        var finished: [DispatchSemaphore] = []
        for r in 0..<readers {
            finished.append(
                spawn {
                    _ = cell.enterBurst(reader: r)
                    started.add(1, ordering: .releasing)
                    while !stop.load(ordering: .acquiring) {
                        let s = cell.enterBurst(reader: r)
                        let g = s.pointee.generation
                        var ok = s.pointee.vips[0].port == g && s.pointee.tunnelSourceV4.v4Value == UInt32(g)
                        ok = ok && s.pointee.vips[0].backendCount == Int(g % 5 + 1)
                        for slot in 0..<101 where Int(s.pointee.vips[0].table[slot]) >= s.pointee.vips[0].backendCount {
                            ok = false
                        }
                        s.pointee.forwardedCounters(worker: r).add(0)
                        if !ok { bad.add(1, ordering: .relaxed) }
                        bursts.add(1, ordering: .relaxed)
                    }
                    cell.goOffline(reader: r)
                })
        }
        // Readers start offline; publish only once all of them are reading.
        while started.load(ordering: .acquiring) < readers { usleep(100) }
        var published = 0
        for g in 2..<300 {
            let old = cell.publish(numberedSnapshot(UInt32(g), workers: readers), pollMicroseconds: 20)
            // After the grace period no reader can touch `old`: reading its counters and freeing it are safe.
            _ = old.pointee.backendTotals()
            SnapshotCell.retire(old)
            published += 1
        }
        stop.store(true, ordering: .releasing)
        for f in finished { f.wait() }
        let torn = bad.load(ordering: .relaxed)
        let read = bursts.load(ordering: .relaxed)
        #expect(torn == 0)
        #expect(published == 298 && read > 0)
    }

    @Test func theGracePeriodLastsUntilEveryReaderStillInItsBurstEntersAnother() {
        let cell = SnapshotCell(numberedSnapshot(1, workers: 2), readers: 2)
        _ = cell.enterBurst(reader: 0)  // both readers now hold generation 1
        _ = cell.enterBurst(reader: 1)
        let grace = cell.swap(numberedSnapshot(2, workers: 2))
        #expect(!cell.hasElapsed(grace))
        let next = cell.enterBurst(reader: 0)  // quiescent: reader 0 let go of generation 1
        #expect(next.pointee.generation == 2)
        #expect(!cell.hasElapsed(grace))  // reader 1 still may be reading it
        cell.goOffline(reader: 1)
        #expect(cell.hasElapsed(grace))
        #expect(grace.old.pointee.generation == 1)
        SnapshotCell.retire(grace.old)
    }

    @Test func publishReturnsOnceTheReaderStillInItsBurstEntersAnother() {
        let cell = SnapshotCell(numberedSnapshot(1, workers: 1), readers: 1)
        _ = cell.enterBurst(reader: 0)
        let done = spawn { SnapshotCell.retire(cell.publish(numberedSnapshot(2, workers: 1), pollMicroseconds: 50)) }
        // The reader keeps entering bursts until it sees the new snapshot; publish cannot return before.
        while cell.enterBurst(reader: 0).pointee.generation != 2 { usleep(50) }
        done.wait()
    }

    @Test func offlineReadersDoNotHoldUpPublication() {
        let cell = SnapshotCell(numberedSnapshot(1, workers: 2), readers: 2)
        _ = cell.enterBurst(reader: 0)
        cell.goOffline(reader: 0)
        let old = cell.publish(numberedSnapshot(2, workers: 2))
        #expect(old.pointee.generation == 1 && cell.current.pointee.generation == 2)
        SnapshotCell.retire(old)
    }
}
