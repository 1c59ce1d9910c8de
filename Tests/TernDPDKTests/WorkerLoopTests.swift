import CDPDK
import Foundation
import TernDPDKTestSupport
import Testing

@testable import TernBalancing
@testable import TernDPDK
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

/// EAL starts once per test process (a second rte_eal_init fails); no hugepages, no PCI.
enum TestEAL {
    static let started: Bool = {
        let prefix = "tern-swift-test-\(getpid())"
        let args = [
            "tern-tests", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", prefix, "--lcores=0@(0-1)",
            "--log-level", "lib.eal:error",
        ]
        do {
            _ = try EAL.initialize(args)
            return true
        } catch {
            print("EAL: \(error)")
            return false
        }
    }()
}

let vip = IPAddress("192.0.2.10")!
let spec = SnapshotSpec(
    services: [
        ServiceSpec(
            address: vip, port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
            backends: [(IPAddress("10.1.0.1")!, 1), (IPAddress("10.1.0.2")!, 1), (IPAddress("fc00::3")!, 1)])
    ],
    tableSize: 1009, tunnelSourceV4: IPAddress("10.0.0.10"), tunnelSourceV6: IPAddress("fc00::10"))
let context = PortContext(mac: Frames.ourMAC, gatewayMAC: Frames.routerMAC, mtu: 1500)

func makeWorker() -> Worker {
    Worker(
        index: 0, port: context,
        settings: WorkerSettings(flowTableEntries: 4096, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
}

func testFrames(_ n: Int) -> [[UInt8]] {
    (0..<n).map { i in
        switch i % 10 {
        case 7: return Frames.ethernet([0, 1, 8, 0, 6, 4, 0, 1], etherType: 0x0806)  // ARP: host, freed
        case 8:
            return Array(
                Frames.flow(source: IPAddress(v4: 0xC633_6401), destination: vip, sourcePort: 1, destinationPort: 80).prefix(30))
        default:
            return Frames.flow(
                source: IPAddress(v4: 0xC633_6400 + UInt32(i)), destination: vip, sourcePort: UInt16(1000 + i),
                destinationPort: 80,
                payload: [UInt8](repeating: UInt8(i & 0xFF), count: i % 50))
        }
    }
}

/// Runs a WorkerLoop on a plain thread until it has received `expected` packets, then stops it.
func runLoop(_ loop: WorkerLoop, expected: Int) {
    let finished = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        loop.run()
        finished.signal()
    }
    let deadline = Date().addingTimeInterval(20)
    while loop.stats.load(CounterSlot.rx) < UInt64(expected) && Date() < deadline { usleep(1000) }
    loop.requestStop()
    finished.wait()
}

@Suite(.serialized) struct WorkerLoopTests {
    @Test func forwardsOverARingPortExactlyWhatTheSimulatorEmits() throws {
        try #require(TestEAL.started)
        let pool = try Mempool(name: "wl_pool1", count: 2047, cache: 0, dataRoom: 2048)
        let ring = try RingPort("ring_wl1")
        _ = try ring.port.configure(queues: 1, descriptors: 512, pool: pool)
        try ring.port.start()
        let frames = testFrames(500)
        let cell = SnapshotCell(ForwardingSnapshot(spec, generation: 1), readers: 1)
        let loop = WorkerLoop(
            index: 0, queues: [WorkerQueue(rxPort: ring.port.id, queue: 0, backendPort: ring.port.id, context: context)],
            burstSize: 32,
            cell: cell, worker: makeWorker())
        var sent = 0
        while sent < frames.count { sent += ring.inject(Array(frames[sent..<min(frames.count, sent + 200)]), pool: pool) }
        runLoop(loop, expected: frames.count)
        let out = ring.drain()

        var simulator = Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: makeWorker())
        let expected = frames.compactMap { simulator.run($0).1 }
        #expect(out == expected)
        #expect(
            loop.stats.load(CounterSlot.rx) == 500 && loop.stats.load(CounterSlot.tx) == UInt64(expected.count)
                && loop.stats.load(CounterSlot.txFailed) == 0)
        #expect(loop.worker.pointee.counters.received == 500)
        #expect(loop.worker.pointee.counters[.host] == 50 && loop.worker.pointee.counters[.dropMalformed] == 50)
        #expect(pool.inUse == 0, "every mbuf sent or freed")
        ring.port.stopAndClose()
    }

    @Test func framesTheTXQueueRefusesAreCountedAndFreed() throws {
        try #require(TestEAL.started)
        let pool = try Mempool(name: "wl_pool2", count: 2047, cache: 0, dataRoom: 2048)
        let ring = try RingPort("ring_wl2", txSize: 16)  // holds 15 frames
        _ = try ring.port.configure(queues: 1, descriptors: 512, pool: pool)
        try ring.port.start()
        let frames = (0..<100).map {
            Frames.flow(source: IPAddress(v4: 0xC633_6400 + UInt32($0)), destination: vip, sourcePort: 7, destinationPort: 80)
        }
        _ = ring.inject(frames, pool: pool)
        let cell = SnapshotCell(ForwardingSnapshot(spec, generation: 1), readers: 1)
        let loop = WorkerLoop(
            index: 0, queues: [WorkerQueue(rxPort: ring.port.id, queue: 0, backendPort: ring.port.id, context: context)],
            burstSize: 32,
            cell: cell, worker: makeWorker())
        runLoop(loop, expected: frames.count)
        let out = ring.drain()
        #expect(out.count == 15)
        #expect(loop.stats.load(CounterSlot.tx) == 15 && loop.stats.load(CounterSlot.txFailed) == 85)
        #expect(loop.worker.pointee.counters[.forwarded] == 100)
        #expect(pool.inUse == 0)
        ring.port.stopAndClose()
    }

    @Test func aMissingDeviceIsReportedWithTheKnownPorts() throws {
        try #require(TestEAL.started)
        #expect(throws: DPDKError.self) { try Port(named: "net_nothing9") }
        do {
            _ = try Port(named: "net_nothing9")
        } catch {
            #expect(error.description.contains("no DPDK port named \"net_nothing9\""))
        }
    }
}
