// The run-to-completion loop of one worker lcore, l2fwd style: take the current snapshot and report
// a quiescent state, then per RX queue: RX a burst, run the pipeline over it, hand transmitted
// frames to TX and free the rest. Every mbuf is either sent or freed on every path.

import CDPDK
import CPcap
import Synchronization
import TernBalancing
import TernDataplane
import TernMetrics
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// Where a worker receives and where its packets leave. (`@unchecked`: the host rings and gateway
/// words are raw pointers, owned by the host path and the data plane, which outlive the worker.)
public struct WorkerQueue: @unchecked Sendable {
    /// Port and queue to poll.
    public var rxPort: UInt16
    public var queue: UInt16
    /// Port encapsulated packets leave on (the same port when one-armed); replies leave on `rxPort`.
    public var backendPort: UInt16
    /// MACs and MTU for packets received here.
    public var context: PortContext
    /// Where host-bound frames go (the host path's ring for this worker and port); nil: freed.
    public var hostRing: OpaquePointer?
    /// Frames the kernel sent on this port's host interface, for this worker to transmit on
    /// `rxPort` (worker 0 only); nil: none.
    public var fromHostRing: OpaquePointer?
    /// Learned next hops (`GatewayCell.word`) of the backend port and of this port, read once
    /// per burst into `context`; nil where the MAC is configured.
    public var gateway: UnsafeMutablePointer<Atomic<UInt64>>?
    public var replyGateway: UnsafeMutablePointer<Atomic<UInt64>>?

    public init(
        rxPort: UInt16, queue: UInt16, backendPort: UInt16, context: PortContext, hostRing: OpaquePointer? = nil,
        fromHostRing: OpaquePointer? = nil, gateway: UnsafeMutablePointer<Atomic<UInt64>>? = nil,
        replyGateway: UnsafeMutablePointer<Atomic<UInt64>>? = nil
    ) {
        self.rxPort = rxPort
        self.queue = queue
        self.backendPort = backendPort
        self.context = context
        self.hostRing = hostRing
        self.fromHostRing = fromHostRing
        self.gateway = gateway
        self.replyGateway = replyGateway
    }
}

/// Everything one worker lcore needs; shared with the control thread only through atomics, the
/// snapshot cell, and after the worker has stopped.
public final class WorkerLoop: LcoreTask, @unchecked Sendable {
    public let index: Int
    public let queues: [WorkerQueue]
    public let burstSize: Int
    public let cell: SnapshotCell
    /// The pipeline state (flow table, outcome counters); owned by this loop while it runs.
    public let worker: UnsafeMutablePointer<Worker>
    /// The worker's counter block (outcomes, flow table, rx/tx): the control thread reads it while
    /// the loop runs, e.g. `rx` to tell when input went idle.
    public let stats: CounterBlock
    let stop: Atomic<Bool>
    /// Sleep this long after 1024 empty polls in a row (0: always busy-poll).
    let idleSleepMicroseconds: UInt32
    /// The flow clock's value when the loop starts (seconds; 1 for a fresh flow table): a table
    /// kept from an earlier ternd goes on from where its clock stood, so idle timeouts count the gap.
    let clockBase: UInt32
    /// Where a running capture (`ternctl capture`) is found; one load per burst.
    let tap: PacketTap?

    public init(
        index: Int, queues: [WorkerQueue], burstSize: Int, cell: SnapshotCell, worker: consuming Worker,
        idleSleepMicroseconds: UInt32 = 0, clockBase: UInt32 = 1, tap: PacketTap? = nil
    ) {
        self.tap = tap
        self.clockBase = clockBase
        self.index = index
        self.queues = queues
        self.burstSize = burstSize
        self.cell = cell
        self.stats = worker.stats
        self.worker = .allocate(capacity: 1)
        self.worker.initialize(to: worker)
        self.stop = Atomic(false)
        self.idleSleepMicroseconds = idleSleepMicroseconds
    }

    deinit {
        worker.deinitialize(count: 1)
        worker.deallocate()
    }

    /// Asks the loop to finish its current burst and return.
    public func requestStop() { stop.store(true, ordering: .releasing) }

    /// The loop's lists, allocated once per run: a burst's mbufs, packets and outcomes, and where
    /// its frames go.
    struct Lists {
        let mbufs: UnsafeMutablePointer<OpaquePointer?>
        let packets: UnsafeMutablePointer<Packet>
        let outcomes: UnsafeMutablePointer<Outcome>
        let toBackends: UnsafeMutablePointer<OpaquePointer?>
        let replies: UnsafeMutablePointer<OpaquePointer?>
        let toFree: UnsafeMutablePointer<OpaquePointer?>
        let toHost: UnsafeMutablePointer<OpaquePointer?>
        /// Outer fragments of one frame (`sendInFragments`).
        let fragments: UnsafeMutablePointer<OpaquePointer?>
        /// Held IP fragments given back (`FragmentTable`).
        let handles: UnsafeMutablePointer<UInt>
        /// Frames of the burst a running capture selected (its filter, on the frame as received).
        let selected: UnsafeMutablePointer<Bool>

        init(burst: Int) {
            let n = max(burst, FragmentTable.heldCapacity)
            mbufs = .allocate(capacity: n)
            packets = .allocate(capacity: n)
            outcomes = .allocate(capacity: n)
            toBackends = .allocate(capacity: n)
            replies = .allocate(capacity: n)
            toFree = .allocate(capacity: n)
            toHost = .allocate(capacity: n)
            fragments = .allocate(capacity: OuterFragments.maxCount)
            handles = .allocate(capacity: FragmentTable.heldCapacity)
            selected = .allocate(capacity: n)
        }

        func deallocate() {
            for p in [mbufs, toBackends, replies, toFree, toHost, fragments] { p.deallocate() }
            packets.deallocate()
            outcomes.deallocate()
            handles.deallocate()
            selected.deallocate()
        }
    }

    /// The loop itself; returns after `requestStop`.
    public func run() {
        let burst = burstSize
        let lists = Lists(burst: burst)
        defer { lists.deallocate() }
        let queues = self.queues
        let hz = EAL.tscHz
        let start = tern_tsc()
        var idlePolls = 0
        var polls = 0
        let stats = self.stats
        let tap = self.tap
        let held = worker.pointee.fragments
        let clockBase = self.clockBase
        var now = clockBase

        while !stop.load(ordering: .acquiring) {
            let snapshot = cell.enterBurst(reader: index)
            now = UInt32(truncatingIfNeeded: (tern_tsc() &- start) / hz) &+ clockBase
            var received = 0
            for q in queues {
                if let ring = q.fromHostRing { sendFromHost(ring, q, list: lists.toHost, burst: burst, stats: stats) }
                let n = Int(tern_rx_burst(q.rxPort, q.queue, lists.mbufs, UInt16(burst)))
                if n == 0 { continue }
                received += n
                for i in 0..<n {
                    let m = lists.mbufs[i]
                    lists.packets[i] = Packet(
                        data: tern_mbuf_data(m)!, length: Int(tern_mbuf_data_len(m)), headroom: Int(tern_mbuf_headroom(m)))
                }
                worker.pointee.port = q.context
                if let g = q.gateway { worker.pointee.port.gatewayMAC = GatewayCell.load(g) }
                if let g = q.replyGateway { worker.pointee.port.replyGatewayMAC = GatewayCell.load(g) }
                let capture = tap?.current()
                if let capture { selectForCapture(capture, q, count: n, lists) }
                worker.pointee.processBurst(
                    lists.packets, count: n, outcomes: lists.outcomes, snapshot: snapshot.pointee, now: now)
                if let capture { copyForCapture(capture, count: n, lists) }
                finishBurst(count: n, q, lists, stats: stats)
                if held.pointee.heldCount > 0 { releaseHeld(q, lists, snapshot: snapshot, now: now) }
            }
            if held.pointee.heldCount > 0 { freeHeld(held.pointee.takeExpired(now: now, into: lists.handles), lists) }
            // The flow-table gauge: a step of its survey on every idle poll, and every 1,024th poll
            // under load (a pass then takes 16M packets at 128 buckets a step and bursts of 32).
            polls &+= 1
            if received == 0 || polls & 1023 == 0, let live = worker.pointee.flows.survey(step: 128, now: now) {
                stats.set(.flowTableLive, UInt64(live))
            }
            if received > 0 {
                stats.addReleasing(CounterSlot.rx, UInt64(received))  // after the burst's outcomes (LiveStats)
                idlePolls = 0
            } else if idleSleepMicroseconds > 0 {
                idlePolls += 1
                if idlePolls >= 1024 {
                    usleep(idleSleepMicroseconds)
                    idlePolls = 0
                }
            }
        }
        freeHeld(held.pointee.takeExpired(now: now, all: true, into: lists.handles), lists)
        cell.goOffline(reader: index)
    }

    /// A capture runs: marks the frames its filter selects, as they were received (on its port).
    @inline(never)
    func selectForCapture(_ capture: UnsafeMutablePointer<CaptureSession>, _ q: WorkerQueue, count n: Int, _ lists: Lists) {
        let port = capture.pointee.port
        let filter = capture.pointee.filter
        for i in 0..<n {
            let p = lists.packets[i]
            lists.selected[i] =
                (port < 0 || port == Int(q.rxPort))
                && tern_filter_match(UnsafeRawPointer(filter), p.data, UInt32(p.length), UInt32(p.length)) != 0
        }
    }

    /// Copies the selected frames as the burst left them (encapsulated toward a backend, answered,
    /// or as received when dropped or for the host) into this worker's ring.
    @inline(never)
    func copyForCapture(_ capture: UnsafeMutablePointer<CaptureSession>, count n: Int, _ lists: Lists) {
        let ring = capture.pointee.rings[index]
        let nanoseconds = CaptureSession.now()
        for i in 0..<n where lists.selected[i] {
            let p = lists.packets[i]
            ring.push(p.data, length: p.length, snapLength: capture.pointee.snapLength, nanoseconds: nanoseconds)
        }
    }

    /// Sends, frees or passes to the host each packet of a processed burst, by its outcome; keeps
    /// the fragments the pipeline holds.
    @inline(__always)
    func finishBurst(count n: Int, _ q: WorkerQueue, _ lists: Lists, stats: CounterBlock) {
        let oneArmed = q.backendPort == q.rxPort
        var backendCount = 0
        var replyCount = 0
        var freeCount = 0
        var hostCount = 0
        let packets = lists.packets
        for i in 0..<n {
            let m = lists.mbufs[i]
            switch lists.outcomes[i] {
            case .forwarded:
                tern_mbuf_reframe(
                    m, UInt16(truncatingIfNeeded: packets[i].headroom), UInt16(truncatingIfNeeded: packets[i].length))
                lists.toBackends[backendCount] = m
                backendCount += 1
            case .forwardedInFragments:
                sendInFragments(
                    m, packets[i], mtu: q.context.mtu, list: lists.fragments, port: q.backendPort, queue: q.queue, stats: stats)
            case .replied, .repliedTooBig:
                tern_mbuf_reframe(
                    m, UInt16(truncatingIfNeeded: packets[i].headroom), UInt16(truncatingIfNeeded: packets[i].length))
                // One-armed: one TX list, so frames leave in the order they arrived.
                if oneArmed {
                    lists.toBackends[backendCount] = m
                    backendCount += 1
                } else {
                    lists.replies[replyCount] = m
                    replyCount += 1
                }
            case .host where q.hostRing != nil:
                lists.toHost[hostCount] = m
                hostCount += 1
            case .held
            where worker.pointee.fragments.pointee.hold(
                frame: packets[i].data, length: packets[i].length, handle: UInt(bitPattern: m)):
                break
            default:
                // Drops, and host-bound frames of a port without a host interface.
                lists.toFree[freeCount] = m
                freeCount += 1
            }
        }
        if hostCount > 0 {
            let queued = Int(tern_ring_enqueue_burst(q.hostRing, lists.toHost, UInt32(hostCount)))
            if queued < hostCount {
                tern_mbuf_free_bulk(lists.toHost + queued, UInt32(hostCount - queued))
                stats.add(CounterSlot.hostDropped, UInt64(hostCount - queued))
            }
        }
        if freeCount > 0 { tern_mbuf_free_bulk(lists.toFree, UInt32(freeCount)) }
        transmit(lists.toBackends, count: backendCount, port: q.backendPort, queue: q.queue, stats: stats)
        transmit(lists.replies, count: replyCount, port: q.rxPort, queue: q.queue, stats: stats)
    }

    /// Runs the held fragments whose first fragment has now passed through the pipeline again, as
    /// a burst of their own on the queue that brought the first, after its burst was sent.
    func releaseHeld(_ q: WorkerQueue, _ lists: Lists, snapshot: UnsafePointer<ForwardingSnapshot>, now: UInt32) {
        let k = worker.pointee.fragments.pointee.takeReleased(into: lists.handles)
        guard k > 0 else { return }
        for j in 0..<k {
            let m = OpaquePointer(bitPattern: lists.handles[j])
            lists.mbufs[j] = m
            lists.packets[j] = Packet(
                data: tern_mbuf_data(m)!, length: Int(tern_mbuf_data_len(m)), headroom: Int(tern_mbuf_headroom(m)))
        }
        worker.pointee.processBurst(lists.packets, count: k, outcomes: lists.outcomes, snapshot: snapshot.pointee, now: now)
        finishBurst(count: k, q, lists, stats: stats)
    }

    /// Frees held fragments given back (`takeExpired`: already counted `fragment_timeout`).
    func freeHeld(_ k: Int, _ lists: Lists) {
        guard k > 0 else { return }
        for j in 0..<k { lists.toFree[j] = OpaquePointer(bitPattern: lists.handles[j]) }
        tern_mbuf_free_bulk(lists.toFree, UInt32(k))
    }

    /// Transmits what the kernel sent on the port's host interface (queued by the host path).
    func sendFromHost(
        _ ring: OpaquePointer, _ q: WorkerQueue, list: UnsafeMutablePointer<OpaquePointer?>, burst: Int, stats: CounterBlock
    ) {
        let n = Int(tern_ring_dequeue_burst(ring, list, UInt32(burst)))
        guard n > 0 else { return }
        stats.add(CounterSlot.hostRx, UInt64(n))
        transmit(list, count: n, port: q.rxPort, queue: q.queue, stats: stats)
    }

    /// Cuts a frame too big for the tunnel into outer IPv4 fragments (`OuterFragments`): the
    /// first stays in the received mbuf, the others get mbufs from its pool; sends them at once
    /// (rare: ahead of the burst's other frames). Without mbufs for all of them, none is sent
    /// (counted `tx_failed`).
    func sendInFragments(
        _ m: OpaquePointer?, _ packet: Packet, mtu: Int, list: UnsafeMutablePointer<OpaquePointer?>, port: UInt16, queue: UInt16,
        stats: CounterBlock
    ) {
        let frame = packet.data
        let n = OuterFragments.count(frame, length: packet.length, mtu: mtu)
        list[0] = m
        for k in 1..<n {
            guard let extra = tern_mbuf_alloc(tern_mbuf_pool(m)),
                let out = tern_mbuf_append(extra, UInt16(OuterFragments.largestFrame(mtu: mtu)))
            else {
                tern_mbuf_free_bulk(list, UInt32(k))
                stats.add(CounterSlot.txFailed, UInt64(n))
                return
            }
            let length = OuterFragments.write(k, of: frame, length: packet.length, mtu: mtu, to: UnsafeMutableRawPointer(out))
            tern_mbuf_reframe(extra, UInt16(truncatingIfNeeded: tern_mbuf_headroom(extra)), UInt16(truncatingIfNeeded: length))
            list[k] = extra
        }
        let first = OuterFragments.write(0, of: frame, length: packet.length, mtu: mtu, to: frame)
        tern_mbuf_reframe(m, UInt16(truncatingIfNeeded: packet.headroom), UInt16(truncatingIfNeeded: first))
        transmit(list, count: n, port: port, queue: queue, stats: stats)
    }

    /// Sends what the TX queue takes; frees and counts what it refuses.
    @inline(__always)
    func transmit(_ list: UnsafeMutablePointer<OpaquePointer?>, count: Int, port: UInt16, queue: UInt16, stats: CounterBlock) {
        guard count > 0 else { return }
        let sent = Int(tern_tx_burst(port, queue, list, UInt16(count)))
        stats.add(CounterSlot.tx, UInt64(sent))
        if sent < count {
            tern_mbuf_free_bulk(list + sent, UInt32(count - sent))
            stats.add(CounterSlot.txFailed, UInt64(count - sent))
        }
    }
}
