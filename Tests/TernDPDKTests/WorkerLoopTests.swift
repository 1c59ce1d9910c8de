import CDPDK
import Foundation
import Testing

@testable import TernBalancing
@testable import TernDPDK
@testable import TernDataplane
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

/// A port whose RX queue is a ring the test fills and whose TX queue is a ring the test drains.
/// rte_eth_from_rings names the port `net_ring_<name>`.
struct RingPort {
    let rx: OpaquePointer
    let tx: OpaquePointer
    let port: UInt16

    init(_ name: String, txSize: UInt32 = 1024) throws {
        guard let rx = rte_ring_create("\(name)_rx", 1024, -1, UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)),
            let tx = rte_ring_create("\(name)_tx", txSize, -1, UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ))
        else { throw DPDKError("rte_ring_create", code: tern_errno()) }
        var rxs: OpaquePointer? = rx
        var txs: OpaquePointer? = tx
        let id = rte_eth_from_rings(name, &rxs, 1, &txs, 1, 0)
        guard id >= 0 else { throw DPDKError("rte_eth_from_rings", code: tern_errno()) }
        self.rx = rx
        self.tx = tx
        port = UInt16(id)
    }

    /// Copies frames into mbufs and puts them on the RX ring.
    func inject(_ frames: [[UInt8]], pool: Mempool) -> Int {
        var mbufs: [OpaquePointer?] = frames.map { frame in
            let m = tern_mbuf_alloc(pool.pointer)!
            let p = tern_mbuf_append(m, UInt16(frame.count))!
            frame.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            return m
        }
        return Int(tern_ring_enqueue_burst(rx, &mbufs, UInt32(mbufs.count)))
    }

    /// Takes every frame off the TX ring (and frees the mbufs).
    func drain() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var mbufs = [OpaquePointer?](repeating: nil, count: 64)
        while true {
            let n = Int(tern_ring_dequeue_burst(tx, &mbufs, 64))
            if n == 0 { return out }
            for m in mbufs[0..<n] {
                out.append(Array(UnsafeRawBufferPointer(start: tern_mbuf_data(m), count: Int(tern_mbuf_data_len(m)))))
                tern_mbuf_free(m)
            }
        }
    }
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
    Worker(index: 0, port: context, flowTableEntries: 4096, tcpIdleTimeout: 300, udpIdleTimeout: 30)
}

func testFrames(_ n: Int) -> [[UInt8]] {
    (0..<n).map { i in
        switch i % 10 {
        case 7: return Frames.ethernet([0, 1, 8, 0, 6, 4, 0, 1], etherType: 0x0806)  // ARP: host, freed
        case 8: return Array(Frames.flow(source: IPAddress(v4: 0xC633_6401), destination: vip, sourcePort: 1, destinationPort: 80).prefix(30))
        default:
            return Frames.flow(
                source: IPAddress(v4: 0xC633_6400 + UInt32(i)), destination: vip, sourcePort: UInt16(1000 + i), destinationPort: 80,
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
    while loop.progress.load(ordering: .relaxed) < UInt64(expected) && Date() < deadline { usleep(1000) }
    loop.requestStop()
    finished.wait()
}

@Suite(.serialized) struct WorkerLoopTests {
    @Test func forwardsOverARingPortExactlyWhatTheSimulatorEmits() throws {
        try #require(TestEAL.started)
        let pool = try Mempool(name: "wl_pool1", count: 2047, cache: 0, dataRoom: 2048)
        let ring = try RingPort("ring_wl1")
        _ = try Port(named: "net_ring_ring_wl1").configure(queues: 1, descriptors: 512, pool: pool)
        try Port(named: "net_ring_ring_wl1").start()
        let frames = testFrames(500)
        let cell = SnapshotCell(ForwardingSnapshot(spec, generation: 1), readers: 1)
        let loop = WorkerLoop(
            index: 0, queues: [WorkerQueue(rxPort: ring.port, queue: 0, backendPort: ring.port, context: context)], burstSize: 32,
            cell: cell, worker: makeWorker())
        var sent = 0
        while sent < frames.count { sent += ring.inject(Array(frames[sent..<min(frames.count, sent + 200)]), pool: pool) }
        runLoop(loop, expected: frames.count)
        let out = ring.drain()

        var simulator = Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: makeWorker())
        let expected = frames.compactMap { simulator.run($0).1 }
        #expect(out == expected)
        #expect(loop.io.rx == 500 && loop.io.tx == UInt64(expected.count) && loop.io.txFailed == 0)
        #expect(loop.worker.pointee.counters.received == 500)
        #expect(loop.worker.pointee.counters[.host] == 50 && loop.worker.pointee.counters[.dropMalformed] == 50)
        #expect(pool.inUse == 0, "every mbuf sent or freed")
        try Port(named: "net_ring_ring_wl1").stopAndClose()
    }

    @Test func framesTheTXQueueRefusesAreCountedAndFreed() throws {
        try #require(TestEAL.started)
        let pool = try Mempool(name: "wl_pool2", count: 2047, cache: 0, dataRoom: 2048)
        let ring = try RingPort("ring_wl2", txSize: 16)  // holds 15 frames
        _ = try Port(named: "net_ring_ring_wl2").configure(queues: 1, descriptors: 512, pool: pool)
        try Port(named: "net_ring_ring_wl2").start()
        let frames = (0..<100).map {
            Frames.flow(source: IPAddress(v4: 0xC633_6400 + UInt32($0)), destination: vip, sourcePort: 7, destinationPort: 80)
        }
        _ = ring.inject(frames, pool: pool)
        let cell = SnapshotCell(ForwardingSnapshot(spec, generation: 1), readers: 1)
        let loop = WorkerLoop(
            index: 0, queues: [WorkerQueue(rxPort: ring.port, queue: 0, backendPort: ring.port, context: context)], burstSize: 32,
            cell: cell, worker: makeWorker())
        runLoop(loop, expected: frames.count)
        let out = ring.drain()
        #expect(out.count == 15)
        #expect(loop.io.tx == 15 && loop.io.txFailed == 85)
        #expect(loop.worker.pointee.counters[.forwarded] == 100)
        #expect(pool.inUse == 0)
        try Port(named: "net_ring_ring_wl2").stopAndClose()
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
