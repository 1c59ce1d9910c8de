import Foundation
import Testing

@testable import TernBalancing
@testable import TernDataplane

@Suite(.serialized) struct FlowStateFileTests {
    let path = "/dev/shm/tern-flowstate-test-\(getpid())"

    @Test func aSecondTernOfTheSameShapeFindsTheFlowsTheFirstLeftAndItsClockGoesOn() throws {
        defer { unlink(path) }
        let first = try FlowStateFile(path: path, workers: 2, capacity: 1024, monotonicNow: 100)
        #expect(!first.attached && first.clockBase == 1)
        // A flow as worker 1's table writes it: an entry, its tag in the bucket's metadata.
        let m = first.memory(worker: 1)
        m.entries.assumingMemoryBound(to: FlowEntry.self)[3].generation = 7
        m.entries.assumingMemoryBound(to: FlowEntry.self)[3].backendLow = 0x0A01_0001
        m.meta.storeBytes(of: UInt16(0x1235), toByteOffset: 3 * 2, as: UInt16.self)
        first.closeForTests()
        let second = try FlowStateFile(path: path, workers: 2, capacity: 1024, monotonicNow: 160)
        #expect(second.attached && second.clockBase == 61)  // the epoch was 99: now reads 61 at 160
        let entry = second.memory(worker: 1).entries.assumingMemoryBound(to: FlowEntry.self)[3]
        #expect(entry.backendLow == 0x0A01_0001 && entry.generation == 0)  // found again by address
        #expect(second.summary.contains("1 flow entries of 2 worker(s)"), "\(second.summary)")
        second.closeForTests()
    }

    @Test func aFileOfAnotherShapeIsDiscarded() throws {
        defer { unlink(path) }
        try FlowStateFile(path: path, workers: 1, capacity: 1024, monotonicNow: 10).closeForTests()
        let other = try FlowStateFile(path: path, workers: 2, capacity: 1024, monotonicNow: 20)
        #expect(!other.attached && other.clockBase == 1)
        #expect(other.summary.contains("1 worker(s) x 1024 flows, now 2 x 1024"), "\(other.summary)")
        other.closeForTests()
    }

    @Test func twoTernsCannotShareOneFileAndADiskIsRefusedWithAWarning() throws {
        defer { unlink(path) }
        let first = try FlowStateFile(path: path, workers: 1, capacity: 1024, monotonicNow: 10)
        #expect(throws: FlowStateError.self) { try FlowStateFile(path: path, workers: 1, capacity: 1024, monotonicNow: 10) }
        first.closeForTests()
        do {
            _ = try FlowStateFile(path: "/var/tmp/tern-flowstate-\(getpid())", workers: 1, capacity: 1024, monotonicNow: 1)
            Issue.record("a file on a disk filesystem was used")
        } catch {
            #expect(error.onlyWarning && error.description.contains("is not on tmpfs"))
        }
    }
}
