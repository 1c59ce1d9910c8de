// The per-packet path, top to bottom:
//
//   parse L2/L3 ─ not IP ─────────────────────────────────────────────▶ host
//        │ malformed ─────────────────────────────────────────────────▶ drop malformed
//   destination a VIP address? ─ no ──────────────────────────────────▶ host
//   tagged with another VLAN than the port's `vlan` ─────────────────▶ host
//   fragment: first (TCP, UDP, ICMP echo) ─ its flow into the fragment table, on as that flow ▼
//        │ later, its first passed ─ on as its first's flow ─────────────────────────────────▼
//        │ later, ahead of its first ─────────────────────────────────▶ held (then run again,
//        │                                     or drop fragment_timeout; hold full: drop fragment)
//        └ other protocols ───────────────────────────────────────────▶ drop fragment
//   parse L4 ─ malformed ─────────────────────────────────────────────▶ drop malformed
//   ICMP echo request ─ from no single host, or from a VIP ──────────▶ drop bad_source
//        │ no VIP on the address is up (min_healthy) ─────────────────▶ drop no_backend
//        └────────────────────────────────────────────────────────────▶ replied (echo reply)
//   ICMPv6 neighbour discovery ───────────────────────────────────────▶ host
//   ICMP error quoting a packet a VIP sent: on as the flow it quotes (to that flow's backend) ▼
//   other ICMP ───────────────────────────────────────────────────────▶ drop icmp_unsupported
//   VIP for (address, port, protocol), else the port-0 VIP ─ none ───▶ drop no_service
//   hash the 5-tuple                  (end of stage 1: prefetch the flow's bucket, then its entry)
//   port with clamp_mss or vlan, or next hop not resolved: `forwardWithPortFeatures`
//        next hop not resolved yet ───────────────────────────────────▶ drop no_neighbor
//        otherwise the steps below plus the port's features
//   flow table hit (backend still configured) or Maglev ─ none ──────▶ drop no_backend
//        (a flow is placed only if it is not UDP to a GUE VIP's own gue_port, GUE inside GUE:
//        ─────────────────────────────────────────────────────────────▶ drop gue_in_gue)
//        (Maglev hashes the VIP's `hash`: 5-tuple, source, or all but the source port;
//        a new connection's SYN to a `clamp_mss` VIP has its MSS lowered)
//   fits the MTU? ─ no: ICMP "fragmentation needed" / "packet too big" ▶ replied (or drop too_big,
//                       icmp_budget over the [icmp] budget, or bad_source when the client is
//                       no single host or is a VIP)
//   room in front for the outer headers? ─ no ────────────────────────▶ drop no_headroom
//   encapsulate (the backend's prepared outer headers), Ethernet to the gateway
//        (802.1Q-tagged with the backend port's `vlan`) ─────────────▶ forwarded
//
// The common case (untagged, unfragmented TCP or UDP without IPv4 options or IPv6 extension
// headers that a VIP serves) is read straight from the frame and settled with one map probe on
// (address, port, protocol) (`classifyFast`); everything else takes the general parser and the
// steps above in order (`classifyGeneral`, `classifyUnserved`), so verdicts do not depend on
// which way a packet went.
//
// A burst runs in stages: `classify` takes every packet of the burst as far as its flow hash and
// starts loading its flow-table bucket; a second pass starts loading the entry whose tag matches
// and notes its way (the hint), or, for a new flow, the entry it will take and its Maglev table
// slot; `forward` then finishes each packet, by which time both are (usually) in cache: an
// established flow is settled at its hinted way, and anything else takes the full lookup. A single
// packet is a burst of one.
//
// Nothing here allocates, retains, locks or calls through an existential: the snapshot is borrowed,
// per-worker state is a ~Copyable struct, and everything is inlined into the caller's loop.

import TernBalancing
import TernMetrics
import TernWire

/// A packet between the stages: classified as going to a VIP, not yet forwarded. Only what stage 2
/// needs, in exactly one cache line (64 bytes, the worker's array 64-aligned; a test pins both)
/// because every packet of a burst writes one and reads it back.
public struct Classified {
    public var tuple: FiveTuple
    public var hash: UInt64
    public var vip: Int32
    public var l3Offset: UInt16
    /// Where the burst's second pass saw this flow's tag (`FlowTable.prefetchEntry`; 0 until then).
    public var flowHint: UInt8
    /// Bytes of the inner IP packet (without link-layer padding).
    public var ipLength: Int32
    public var trafficClass: UInt8
    public var dontFragment: Bool
    /// An ICMP error about `tuple`'s flow rather than a packet of it (never answered with another).
    public var isICMPError: Bool
    /// The TCP flags of the packet (0: UDP, or an ICMP error about a flow).
    public var tcpFlags: UInt8

    @inlinable @inline(__always)
    public init(
        _ net: borrowing NetworkHeader, tuple: FiveTuple, hash: UInt64, vip: Int, isICMPError: Bool = false, tcpFlags: UInt8 = 0
    ) {
        self.init(
            tuple: tuple, hash: hash, vip: vip, l3Offset: net.l3Offset, ipLength: net.ipLength, trafficClass: net.trafficClass,
            dontFragment: net.dontFragment, isICMPError: isICMPError, tcpFlags: tcpFlags)
    }

    @inlinable @inline(__always)
    public init(
        tuple: FiveTuple, hash: UInt64, vip: Int, l3Offset: Int, ipLength: Int, trafficClass: UInt8, dontFragment: Bool,
        isICMPError: Bool, tcpFlags: UInt8
    ) {
        self.tcpFlags = tcpFlags
        self.tuple = tuple
        self.hash = hash
        self.vip = Int32(truncatingIfNeeded: vip)
        self.l3Offset = UInt16(truncatingIfNeeded: l3Offset)
        flowHint = 0
        self.ipLength = Int32(truncatingIfNeeded: ipLength)
        self.trafficClass = trafficClass
        self.dontFragment = dontFragment
        self.isICMPError = isICMPError
    }

    @inlinable public var isV6: Bool { tuple.isV6 }
}

/// One worker's private state: its flow table, counters and port.
public struct Worker: ~Copyable {
    public var flows: FlowTable
    /// Outcomes, flow-table events and I/O, live: the control thread reads them while this worker
    /// runs (TernMetrics).
    public let stats: CounterBlock
    /// Packets per outcome so far.
    public var counters: OutcomeCounters { OutcomeCounters(reading: stats) }
    public let index: Int
    /// The port this burst came in on (the worker loop sets it per queue).
    public var port: PortContext
    /// IP fragments' flows and held fragments (`FragmentTable`); the worker loop holds and
    /// releases fragments through it.
    public let fragments: UnsafeMutablePointer<FragmentTable>
    public static let fragmentTableEntries = 4096
    /// Echo replies left this second (`[icmp] echo_per_second`).
    @usableFromInline let echoBudget: UnsafeMutablePointer<ICMPBudget>
    /// Stage-1 results of the current burst; `pending[i]` says whether packet i awaits stage 2.
    @usableFromInline let classified: UnsafeMutablePointer<Classified>
    @usableFromInline let pending: UnsafeMutablePointer<Bool>
    /// The current burst's packets (set by `processBurst`): where `placeBy` finds the frame of a
    /// classified packet (`frame(of:)`).
    @usableFromInline var burstPackets: UnsafeMutablePointer<Packet>? = nil
    /// The backend and second hop of the `secondHop` answer just given (second chance).
    @usableFromInline var pendingHop = (backend: 0, hop: IPAddress(v4: 0))
    /// This worker's forwarded-packet counters in the burst's snapshot, by backend (set with
    /// `burstPackets`): one add per packet, the row worked out once per burst.
    @usableFromInline var forwardedCounters: Counters? = nil
    /// Largest burst `processBurst` takes.
    public static let maxBurst = 512
    /// How many packets ahead stage 1 starts loading frame bytes.
    @usableFromInline static let packetPrefetchDistance = 16
    /// ICMP errors must be rate-limited (RFC 1812 4.3.2.8, RFC 4443 2.4): at most this many
    /// too-big answers per second per worker (`[icmp] too_big_per_second`); beyond it such packets
    /// are dropped `icmp_budget`.
    public let tooBigRepliesPerSecond: UInt32
    @usableFromInline var tooBigSecond: UInt32 = 0
    @usableFromInline var tooBigBudget: UInt32 = 0
    /// The default budgets.
    public static let icmpRepliesPerSecond: UInt32 = 1000
    public static let echoRepliesPerSecond: UInt32 = 10_000

    /// `flowMemory`: where the flow table lives (a flow-state file kept across restarts).
    public init(index: Int, port: PortContext, settings: WorkerSettings, flowMemory: FlowTable.Memory? = nil) {
        tooBigRepliesPerSecond = settings.tooBigRepliesPerSecond
        self.index = index
        echoBudget = .allocate(capacity: 1)
        echoBudget.initialize(to: ICMPBudget(perSecond: settings.echoRepliesPerSecond))
        let stats = CounterBlock.allocate()
        self.stats = stats
        fragments = .allocate(capacity: 1)
        fragments.initialize(to: FragmentTable(capacity: Worker.fragmentTableEntries, counters: stats))
        self.port = port
        flows = FlowTable(
            capacity: settings.flowTableEntries, tcpIdleTimeout: settings.tcpIdleTimeout, udpIdleTimeout: settings.udpIdleTimeout,
            tcpClosingTimeout: settings.tcpClosingTimeout, counters: stats, memory: flowMemory)
        classified = UnsafeMutableRawPointer.allocate(byteCount: Worker.maxBurst * MemoryLayout<Classified>.stride, alignment: 64)
            .bindMemory(to: Classified.self, capacity: Worker.maxBurst)
        pending = .allocate(capacity: Worker.maxBurst)
        pending.initialize(repeating: false, count: Worker.maxBurst)
    }

    deinit {
        classified.deallocate()
        pending.deallocate()
        echoBudget.deallocate()
        fragments.deinitialize(count: 1)
        fragments.deallocate()
        stats.deallocate()
    }

    /// Runs a burst (at most `maxBurst` packets) through the pipeline, writing each packet's outcome;
    /// `forwarded` and `replied` packets are rewritten in place into the frame to transmit. `now` is
    /// flow-table time in seconds (at least 1). The only way into the pipeline: ternd's worker loop,
    /// `Simulator` (simulate, tests, fuzzing) and the benchmarks all come in here.
    @inlinable
    public mutating func processBurst(
        _ packets: UnsafeMutablePointer<Packet>, count: Int, outcomes: UnsafeMutablePointer<Outcome>,
        snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) {
        precondition(count <= Worker.maxBurst)
        burstPackets = packets
        forwardedCounters = snapshot.forwardedCounters(worker: index)
        defer { (burstPackets, forwardedCounters) = (nil, nil) }
        echoBudget.pointee.refill(now: now)
        fragments.pointee.beginBurst(now: now)
        for i in 0..<min(count, Worker.packetPrefetchDistance) { packets[i].prefetch() }
        for i in 0..<count {
            if i &+ Worker.packetPrefetchDistance < count { packets[i &+ Worker.packetPrefetchDistance].prefetch() }
            let outcome = classify(&packets[i], into: classified + i, snapshot: snapshot)
            pending[i] = outcome == nil
            if let outcome {
                outcomes[i] = outcome
            } else {
                flows.prefetch(hash: classified[i].hash)
            }
        }
        for i in 0..<count where pending[i] {
            let hint = flows.prefetchEntry(hash: classified[i].hash, now: now)
            classified[i].flowHint = hint
            if hint & FlowTable.hinted == 0 { snapshot.prefetchMaglevSlot(vip: Int(classified[i].vip), hash: classified[i].hash) }
        }
        for i in 0..<count {
            if pending[i] { outcomes[i] = forward(&packets[i], classified + i, snapshot: snapshot, now: now) }
            stats.add(.outcomes, offset: Int(outcomes[i].rawValue))
        }
    }

    /// Stage 1: everything up to the flow hash. Returns the outcome when the packet is done (not for
    /// a VIP, dropped, or answered), or nil with `out` filled for stage 2.
    @inlinable @inline(__always)
    func classify(_ packet: inout Packet, into out: UnsafeMutablePointer<Classified>, snapshot: borrowing ForwardingSnapshot)
        -> Outcome?
    {
        if Worker.classifyFast(UnsafeRawPointer(packet.data), length: packet.length, into: out, snapshot: snapshot) { return nil }
        return classifyGeneral(&packet, into: out, snapshot: snapshot)
    }

    /// Stage 1's fast path, for what most traffic is: an untagged TCP or UDP packet, IPv4 without
    /// options or IPv6 without extension headers, not a fragment, to a port a VIP serves. Fields
    /// are read straight from the frame where they are needed (no header records live across the
    /// VIP probe). Returns false for anything else, or anything inconsistent, which
    /// `classifyGeneral` then decides (it gives every verdict); for what both accept they fill
    /// `out` alike (`FastPathTests`).
    @inlinable @inline(__always)
    static func classifyFast(
        _ p: UnsafeRawPointer, length: Int, into out: UnsafeMutablePointer<Classified>, snapshot: borrowing ForwardingSnapshot
    ) -> Bool {
        let l3 = HeaderSize.ethernet
        // EtherType and fragment field compared as on the wire (no byte swaps).
        switch p.wire16(12) {
        case EtherType.ipv4.bigEndian:
            guard length >= l3 &+ HeaderSize.ipv4 &+ HeaderSize.udp, p.u8(l3) == 0x45 else { return false }
            let flags = p.wire16(l3 &+ 6)
            guard flags & UInt16(0x3FFF).bigEndian == 0 else { return false }
            return classifyTransport(
                p, length: length, isV6: false, ipLength: Int(p.be16(l3 &+ 2)), ipProtocol: p.u8(l3 &+ 9),
                trafficClass: p.u8(l3 &+ 1), dontFragment: flags & UInt16(0x4000).bigEndian != 0, into: out, snapshot: snapshot)
        case EtherType.ipv6.bigEndian:
            guard length >= l3 &+ HeaderSize.ipv6 &+ HeaderSize.udp, p.u8(l3) >> 4 == 6 else { return false }
            return classifyTransport(
                p, length: length, isV6: true, ipLength: HeaderSize.ipv6 &+ Int(p.be16(l3 &+ 4)), ipProtocol: p.u8(l3 &+ 6),
                trafficClass: UInt8(truncatingIfNeeded: p.be16(l3) >> 4), dontFragment: false, into: out, snapshot: snapshot)
        default:
            return false
        }
    }

    /// `classifyFast` past the IP header (inlined once per family, so `isV6` is a constant).
    @inlinable @inline(__always)
    static func classifyTransport(
        _ p: UnsafeRawPointer, length: Int, isV6: Bool, ipLength: Int, ipProtocol: UInt8, trafficClass: UInt8, dontFragment: Bool,
        into out: UnsafeMutablePointer<Classified>, snapshot: borrowing ForwardingSnapshot
    ) -> Bool {
        let l3 = HeaderSize.ethernet
        let l4 = l3 &+ (isV6 ? HeaderSize.ipv6 : HeaderSize.ipv4)
        // Transport bytes the IP header claims; they must all be in the frame.
        let available = l3 &+ ipLength &- l4
        guard l3 &+ ipLength <= length else { return false }
        var tcpFlags: UInt8 = 0
        if ipProtocol == IPProtocol.tcp {
            guard available >= 20 else { return false }
            let dataOffset = Int(p.u8(l4 &+ 12) >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= available else { return false }
            tcpFlags = p.u8(l4 &+ 13)
        } else if ipProtocol == IPProtocol.udp {
            let udpLength = Int(p.be16(l4 &+ 4))
            guard available >= 8, udpLength >= 8, udpLength <= available else { return false }
        } else {
            return false
        }
        let destination = IPAddress(loadingFrom: p, offset: l3 &+ (isV6 ? 24 : 16), isV6: isV6)
        let ports = p.be32(l4)
        let tuple = FiveTuple(
            source: IPAddress(loadingFrom: p, offset: l3 &+ (isV6 ? 8 : 12), isV6: isV6), destination: destination,
            ports: ports, ipProtocol: ipProtocol)
        // The record is written before the VIP probe (its VIP after): nothing read so far has to
        // outlive the probe in a register or on the stack.
        out.initialize(
            to: Classified(
                tuple: tuple, hash: FlowHash.hash(tuple), vip: -1, l3Offset: l3, ipLength: ipLength, trafficClass: trafficClass,
                dontFragment: dontFragment, isICMPError: false, tcpFlags: tcpFlags))
        let vip = snapshot.findVIP(address: destination, port: UInt16(truncatingIfNeeded: ports), ipProtocol: ipProtocol)
        if vip < 0 { return false }
        out.pointee.vip = Int32(truncatingIfNeeded: vip)
        return true
    }

    /// Stage 1 for every frame: Ethernet with or without a VLAN tag, IPv4 or IPv6 with options or
    /// extension headers, fragments, ICMP, and all that no VIP serves.
    @inlinable @inline(never)
    func classifyGeneral(
        _ packet: inout Packet, into out: UnsafeMutablePointer<Classified>, snapshot: borrowing ForwardingSnapshot
    )
        -> Outcome?
    {
        let p = UnsafeRawPointer(packet.data)
        var net = NetworkHeader()
        switch Parser.parseNetwork(p, length: packet.length, into: &net) {
        case .ok: break
        case .notIP: return .host
        case .malformed: return .dropMalformed
        }
        // The common case first: unfragmented TCP or UDP that a VIP serves, one map probe.
        var l4 = TransportHeader()
        var vip = -1
        if !net.isFragment && (net.ipProtocol == IPProtocol.tcp || net.ipProtocol == IPProtocol.udp)
            && Parser.parseTransport(p, net, into: &l4) == .ok
        {
            vip = snapshot.findVIP(address: net.destination, port: l4.destinationPort, ipProtocol: net.ipProtocol)
        }
        if vip < 0 {
            return Worker.classifyUnserved(
                &packet, net, port: port, echoBudget: echoBudget, fragments: fragments, snapshot: snapshot, into: out)
        }

        let tuple = FiveTuple(
            source: net.source, destination: net.destination, sourcePort: l4.sourcePort,
            destinationPort: l4.destinationPort, ipProtocol: net.ipProtocol)
        out.initialize(to: Classified(net, tuple: tuple, hash: FlowHash.hash(tuple), vip: vip, tcpFlags: l4.tcpFlags))
        return nil
    }

    /// Stage 1 for what no VIP serves, in the order of the diagram at the top: the host's traffic,
    /// drops, echo requests to answer, and ICMP errors to pass on to a backend (nil, `out` filled).
    /// Static and out of line: the worker's state stays put.
    @inlinable @inline(never)
    static func classifyUnserved(
        _ packet: inout Packet, _ net: borrowing NetworkHeader, port: borrowing PortContext,
        echoBudget: UnsafeMutablePointer<ICMPBudget>, fragments: UnsafeMutablePointer<FragmentTable>,
        snapshot: borrowing ForwardingSnapshot,
        into out: UnsafeMutablePointer<Classified>
    ) -> Outcome? {
        let addressState = snapshot.vipAddressState(net.destination)
        if addressState < 0 { return .host }
        if isOtherVLAN(UnsafeRawPointer(packet.data), l3Offset: net.l3Offset, port: port) { return .host }
        if net.isFragment { return classifyFragment(packet, net, fragments: fragments, snapshot: snapshot, into: out) }
        var l4 = TransportHeader()
        if Parser.parseTransport(UnsafeRawPointer(packet.data), net, into: &l4) != .ok { return .dropMalformed }
        let isV6 = net.isV6
        let ipProtocol = net.ipProtocol
        if ipProtocol == IPProtocol.icmp || ipProtocol == IPProtocol.icmpv6 {
            if l4.icmpType == (isV6 ? 128 : 8) {
                let source = net.source
                if !source.isSingleHost { return .dropBadSource }
                if snapshot.isVIPAddress(source) { return .dropBadSource }
                if addressState == 0 { return .dropNoBackend }  // no VIP on it is up
                if port.replyGatewayMAC == PortContext.unknownMAC { return .dropNoNeighbor }
                if !echoBudget.pointee.take() { return .dropICMPBudget }
                return replyToEcho(&packet, net, port: port)
            }
            // Neighbour discovery (router/neighbour solicitation and advertisement, redirect) is
            // the host's business even when it names a VIP address.
            if isV6 && (133...137).contains(l4.icmpType) { return .host }
            let t = l4.icmpType
            if isV6 ? (1...4).contains(t) : t == 3 || t == 11 || t == 12 {  // errors: unreachable, too big, ...
                return steerICMPError(packet, net, snapshot: snapshot, into: out)
            }
            return .dropICMPUnsupported
        }
        return .dropNoService
    }

    /// A fragment to a VIP address (`FragmentTable`). A TCP or UDP first fragment is classified by
    /// its ports; an ICMP echo request's first goes to a backend of the address's first VIP that is
    /// up (Tern answers whole echo requests itself but does not reassemble: the backend does, and
    /// answers from the VIP). The first leaves its flow in the table; a later fragment is
    /// classified as a packet of that flow (nil, `out` filled), or held until its first passes.
    /// Fragments of other protocols are dropped `fragment`.
    @inlinable
    static func classifyFragment(
        _ packet: borrowing Packet, _ net: borrowing NetworkHeader, fragments table: UnsafeMutablePointer<FragmentTable>,
        snapshot: borrowing ForwardingSnapshot, into out: UnsafeMutablePointer<Classified>
    ) -> Outcome? {
        let ipProtocol = net.ipProtocol
        let isICMP = ipProtocol == IPProtocol.icmp || ipProtocol == IPProtocol.icmpv6
        guard ipProtocol == IPProtocol.tcp || ipProtocol == IPProtocol.udp || isICMP else { return .dropFragment }
        let p = UnsafeRawPointer(packet.data)
        guard let f = Parser.fragmentFields(p, net) else { return .dropMalformed }
        if f.offset == 0 {
            var l4 = TransportHeader()
            let vip: Int
            if isICMP {
                guard net.ipEnd &- net.l4Offset >= 8 else { return .dropMalformed }
                if p.u8(net.l4Offset) != (net.isV6 ? 128 : 8) { return .dropFragment }  // only echo requests
                let source = net.source
                if !source.isSingleHost || snapshot.isVIPAddress(source) { return .dropBadSource }
                vip = snapshot.echoVIP(net.destination)
                if vip < 0 { return .dropNoBackend }
            } else {
                guard Parser.parseFirstFragmentPorts(p, net, into: &l4) else { return .dropMalformed }
                vip = snapshot.findVIP(address: net.destination, port: l4.destinationPort, ipProtocol: ipProtocol)
                if vip < 0 { return .dropNoService }
            }
            let tuple = FiveTuple(
                source: net.source, destination: net.destination, sourcePort: l4.sourcePort, destinationPort: l4.destinationPort,
                ipProtocol: ipProtocol)
            let hash = FlowHash.hash(tuple)
            if !table.pointee.insert(
                source: net.source, destination: net.destination, id: f.id, ipProtocol: ipProtocol, tuple: tuple, hash: hash,
                vip: vip,
                generation: snapshot.generation)
            {
                table.pointee.counters.add(CounterSlot.fragmentTableFull)
            }
            out.initialize(to: Classified(net, tuple: tuple, hash: hash, vip: vip, tcpFlags: l4.tcpFlags))
            return nil
        }
        guard
            let flow = table.pointee.find(
                source: net.source, destination: net.destination, id: f.id, ipProtocol: ipProtocol, last: !f.more)
        else { return table.pointee.reserveHold() ? .held : .dropFragment }
        // After a reload the VIP may have another index: found again by its (address, port, protocol).
        let vip =
            flow.generation == snapshot.generation
            ? flow.vip
            : isICMP
                ? snapshot.echoVIP(net.destination)
                : snapshot.findVIP(
                    address: net.destination, port: UInt16(truncatingIfNeeded: flow.tuple.portsAndProtocol >> 32),
                    ipProtocol: ipProtocol)
        if vip < 0 { return .dropNoService }
        table.pointee.counters.add(CounterSlot.fragmentsFollowed)
        out.initialize(to: Classified(net, tuple: flow.tuple, hash: flow.hash, vip: vip))
        return nil
    }

    /// An ICMP error about a packet a VIP sent (a backend's reply, in DSR), such as "fragmentation
    /// needed" from a router on the way back to the client: it goes to the backend of the flow it
    /// quotes, hashed as that flow (client to VIP), so the backend's kernel can act on it (path
    /// MTU discovery); one quoting an echo reply goes where the fragmented echo requests of that
    /// client went. Anything else, or a flow of no VIP, is dropped `icmp_unsupported`.
    @inlinable
    static func steerICMPError(
        _ packet: borrowing Packet, _ net: borrowing NetworkHeader, snapshot: borrowing ForwardingSnapshot,
        into out: UnsafeMutablePointer<Classified>
    ) -> Outcome? {
        guard
            let quoted = Parser.parseQuoted(UnsafeRawPointer(packet.data), at: net.l4Offset &+ 8, end: net.ipEnd, isV6: net.isV6),
            quoted.source == net.destination
        else { return .dropICMPUnsupported }
        // A quoted echo reply: the backend that took the fragmented echo request (`classifyFragment`).
        let vip =
            quoted.ipProtocol == IPProtocol.icmp || quoted.ipProtocol == IPProtocol.icmpv6
            ? snapshot.echoVIP(quoted.source)
            : snapshot.findVIP(address: quoted.source, port: quoted.sourcePort, ipProtocol: quoted.ipProtocol)
        if vip < 0 { return .dropICMPUnsupported }
        let tuple = FiveTuple(
            source: quoted.destination, destination: quoted.source, sourcePort: quoted.destinationPort,
            destinationPort: quoted.sourcePort, ipProtocol: quoted.ipProtocol)
        out.initialize(to: Classified(net, tuple: tuple, hash: FlowHash.hash(tuple), vip: vip, isICMPError: true))
        return nil
    }

    /// Stage 2: flow table or Maglev, then encapsulation. `@_transparent`: with `@inline(__always)`
    /// the compiler kept it a call from the burst loop; inlined it saves the call (RESULTS.md).
    @usableFromInline @_transparent
    mutating func forward(
        _ packet: inout Packet, _ c: UnsafePointer<Classified>, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Outcome {
        let vip = Int(c.pointee.vip)
        if _slowPath(port.takesSlowForward) { return forwardWithPortFeatures(&packet, c, vip: vip, snapshot: snapshot, now: now) }
        let backend = chooseBackend(c, vip: vip, snapshot: snapshot, now: now)
        if backend < 0 { return answer(&packet, c, backend, snapshot: snapshot, now: now) }
        let outcome = encapsulate(&packet, c, backend: backend, snapshot: snapshot, now: now)
        if outcome == .forwarded { countForwarded(backend, c) }
        return outcome
    }

    /// A packet of `c` forwarded to `backend`: its packet and byte counters.
    @inlinable @inline(__always)
    func countForwarded(_ backend: Int, _ c: UnsafePointer<Classified>) {
        ForwardingSnapshot.countForwarded(forwardedCounters.unsafelyUnwrapped, backend: backend, bytes: c.pointee.ipLength)
    }

    /// `forward` on a port with `clamp_mss` or a VLAN, or whose learned next hop is not resolved
    /// yet (dropped before a flow is placed: none waits for it): a frame tagged with another VLAN
    /// is the host's; a SYN's MSS is clamped; the encapsulated frame gets the backend port's tag.
    /// Out of line: other ports pay one test per packet.
    @inlinable @inline(never)
    mutating func forwardWithPortFeatures(
        _ packet: inout Packet, _ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Outcome {
        if port.gatewayMAC == PortContext.unknownMAC { return .dropNoNeighbor }
        if Worker.isOtherVLAN(UnsafeRawPointer(packet.data), l3Offset: Int(c.pointee.l3Offset), port: port) { return .host }
        let backend = chooseBackend(c, vip: vip, snapshot: snapshot, now: now)
        if backend < 0 { return answer(&packet, c, backend, snapshot: snapshot, now: now) }
        if port.clampMSS { clampMSS(packet.data, c, backend: backend, snapshot: snapshot) }
        var outcome = encapsulate(&packet, c, backend: backend, snapshot: snapshot, now: now)
        if outcome.verdict == .forwarded && port.vlan != 0 { outcome = Worker.pushVLANTag(&packet, port.vlan, outcome) }
        if outcome == .forwarded { countForwarded(backend, c) }
        return outcome
    }

    /// A received frame tagged with another VLAN id than its port's (`[[port]] vlan`): not Tern's.
    /// Id 0 (priority-tagged, 802.1Q) counts as untagged: processed, as untagged frames are.
    @inlinable
    static func isOtherVLAN(_ frame: UnsafeRawPointer, l3Offset: Int, port: borrowing PortContext) -> Bool {
        let vlan = port.replyVLAN
        if vlan == 0 || l3Offset != HeaderSize.ethernet &+ HeaderSize.vlanTag { return false }
        let id = frame.be16(14) & 0x0FFF
        return id != vlan && id != 0
    }

    /// Inserts an 802.1Q tag after the MAC addresses of a built frame (4 bytes of headroom).
    @inlinable
    static func pushVLANTag(_ packet: inout Packet, _ vlan: UInt16, _ outcome: Outcome) -> Outcome {
        if packet.headroom < HeaderSize.vlanTag { return .dropNoHeadroom }
        let p = packet.data
        (p - HeaderSize.vlanTag).copyMemory(from: p, byteCount: 12)
        p.storeBE16(EtherType.vlan, at: 12 &- HeaderSize.vlanTag)
        p.storeBE16(vlan, at: 14 &- HeaderSize.vlanTag)
        packet.reframe(start: -HeaderSize.vlanTag, length: packet.length &+ HeaderSize.vlanTag)
        return outcome
    }

    /// `chooseBackend`'s answers that are not a backend: the VIP has none to offer, or the packet
    /// is UDP to a GUE VIP's own `gue_port` (GUE inside GUE at the backend). Negative Ints rather
    /// than an optional or an enum with a payload: the answer stays one register, tested by sign,
    /// on the path every packet takes (`currentBackend`'s -1 and `FlowTable.liveEntry`'s likewise).
    @usableFromInline static let noBackend = -1
    @usableFromInline static let gueInGUE = -2
    /// A backend whose packet carries a second hop (second chance): both in `pendingHop`.
    @usableFromInline static let secondHop = -3

    @inlinable
    static func noBackendOutcome(_ answer: Int) -> Outcome { answer == gueInGUE ? .dropGUEInGUE : .dropNoBackend }

    /// What a negative `chooseBackend` answer does to the packet: dropped, or sent with a second
    /// hop. Out of line: no established flow of the table comes here.
    @inlinable @inline(never)
    mutating func answer(
        _ packet: inout Packet, _ c: UnsafePointer<Classified>, _ answer: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Outcome {
        guard answer == Worker.secondHop else { return Worker.noBackendOutcome(answer) }
        let (backend, hop) = pendingHop
        let kind = EncapTemplate.kind(snapshot.template(backend: backend))
        let extra = SecondHop.length(hop)
        // Without the hop when it cannot be carried: the tunnel has no room for it, or the hop is
        // of the other family than the outer header (Tern's backend program then delivers it).
        let carries =
            (kind == .ipv4GUE || kind == .ipv6GUE) && kind.outerIsV6 == hop.isV6
            && Int(c.pointee.ipLength) &+ kind.headerLength &+ extra <= port.mtu
        var outcome = encapsulate(&packet, c, backend: backend, snapshot: snapshot, now: now)
        if carries && outcome == .forwarded && packet.headroom >= extra {
            let start = SecondHop.insert(into: packet.data, frameStart: 0, outerIsV6: kind.outerIsV6, hop: hop)
            packet.reframe(start: start, length: packet.length &+ extra)
            stats.add(CounterSlot.secondHop)
        }
        if outcome.verdict == .forwarded && port.vlan != 0 { outcome = Worker.pushVLANTag(&packet, port.vlan, outcome) }
        if outcome == .forwarded { countForwarded(backend, c) }
        return outcome
    }

    /// Second chance for a flow just placed on `backend`: its owner is the backend it had if that
    /// one left the VIP (`left`: removed, or down), else, for a flow this node did not know, the
    /// one the VIP's previous table gave it (the owner if the connection is older than the
    /// change). When the owner is another backend, the flow remembers it and this packet and its
    /// next ones go to `backend` carrying it as a second hop (`secondHop`, with `pendingHop` set);
    /// Tern's backend program there sends them on unless the connection is its own. SYNs open
    /// connections here and ICMP errors are no connection's packets: never a hop.
    @inlinable @inline(never)
    mutating func withSecondHop(
        _ entry: UnsafeMutablePointer<FlowEntry>, _ c: UnsafePointer<Classified>, vip: Int, backend: Int, left: IPAddress?,
        snapshot: borrowing ForwardingSnapshot
    ) -> Int {
        guard !c.pointee.isICMPError else { return backend }
        let record = snapshot.vips[vip]
        let hash = Worker.placementHash(c, record)
        guard let owner = left ?? snapshot.previousBackend(vip: vip, hash: hash), owner != snapshot.backends[backend].address
        else {
            return backend
        }
        // The entry names the owner; generation 0 names no snapshot, so every packet of the flow
        // comes back through `refind` (`viaSecondHop`).
        entry.pointee.backendHigh = owner.high
        entry.pointee.backendLow = owner.low
        entry.pointee.backendFlags = FlowEntry.secondHopFlag | (owner.isV6 ? FlowEntry.v6Flag : 0)
        entry.pointee.generation = 0
        pendingHop = (backend, owner)
        return Worker.secondHop
    }

    /// What Maglev hashes to place a flow of this VIP: the 5-tuple's hash, or the VIP's `hash` mode's.
    @inlinable @inline(__always)
    static func placementHash(_ c: UnsafePointer<Classified>, _ record: VIPRecord) -> UInt64 {
        record.hashMode == .fiveTuple ? c.pointee.hash : FlowHash.hash(c.pointee.tuple, mode: record.hashMode)
    }

    /// A packet of a flow that carries a second hop: to Maglev's pick today, with the flow's owner
    /// as the hop, or to the owner itself when it is the pick.
    @inlinable @inline(never)
    mutating func viaSecondHop(
        _ entry: UnsafeMutablePointer<FlowEntry>, _ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot
    ) -> Int {
        let record = snapshot.vips[vip]
        let hash = Worker.placementHash(c, record)
        let slot = snapshot.maglevSlot(vip: vip, hash: hash)
        if slot == Maglev.emptySlot { return Worker.noBackend }
        let via = record.firstBackend &+ Int(slot)
        let owner = entry.pointee.backendAddress
        if snapshot.backends[via].address == owner { return via }
        pendingHop = (via, owner)
        return Worker.secondHop
    }

    /// Whether a flow is UDP to its GUE VIP's own `gue_port`. Asked only where a flow is placed (a
    /// new one, or one remembered from an older snapshot, which may have had another gue_port):
    /// such a flow is never in the table, so its established packets need not ask.
    @inlinable @inline(__always)
    static func isGUEInGUE(_ c: UnsafePointer<Classified>, _ record: VIPRecord) -> Bool {
        record.gueGuard == UInt32(c.pointee.tuple.destinationPort) | VIPRecord.gueGuardFlag
    }

    /// The backend (index into `snapshot.backends`) for a flow: the one the flow table remembers if
    /// it is still one of the VIP's backends (even drained), otherwise Maglev's pick; `noBackend`
    /// when the VIP has none to offer, `gueInGUE` for UDP to its gue_port. A TCP SYN without ACK
    /// opens a new connection: it always takes Maglev's pick from the current table and replaces
    /// what the table remembered for its 5-tuple (a reused source port must not reach a drained
    /// backend). FIN or RST leave the flow `tcp_closing_timeout_s` to live.
    ///
    /// The common case is settled here: a packet of an established flow (no SYN, FIN or RST), at
    /// the way the burst's second pass saw, remembered under this snapshot. Everything else takes
    /// `lookUpBackend`, out of line, so this path keeps few values live.
    @inlinable @inline(__always)
    mutating func chooseBackend(
        _ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Int {
        if c.pointee.tcpFlags & (TCPFlag.syn | TCPFlag.fin | TCPFlag.rst) == 0 {
            let index = flows.liveEntry(c.pointee.tuple, hash: c.pointee.hash, hint: c.pointee.flowHint, now: now)
            if index >= 0 {
                let backend = Worker.currentBackend(flows.entries + index, snapshot.vips[vip], snapshot: snapshot)
                if backend >= 0 { return backend }
            }
        }
        return lookUpBackend(c, vip: vip, snapshot: snapshot, now: now)
    }

    /// `chooseBackend` past its common case: the full flow-table lookup, connection events, the
    /// re-find after a reload, a new flow's placement.
    @inlinable @inline(never)
    mutating func lookUpBackend(
        _ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Int {
        let tcpFlags = c.pointee.tcpFlags
        var probe = flows.probe(c.pointee.tuple, hash: c.pointee.hash, now: now, touch: true)
        if tcpFlags & (TCPFlag.syn | TCPFlag.fin | TCPFlag.rst) != 0 && probe.found {
            probe = connectionEvent(probe, tcpFlags: tcpFlags)
        }
        if probe.found {
            let entry = flows.entries + probe.index
            let current = Worker.currentBackend(entry, snapshot.vips[vip], snapshot: snapshot)
            if current >= 0 { return current }
            let backend = refind(entry, c, vip: vip, snapshot: snapshot)
            if backend != Worker.noBackend { return backend }
        }
        return placeNewFlow(c, vip: vip, at: probe, snapshot: snapshot, now: now)
    }

    /// The backend a flow-table entry names if it was written under this snapshot and its slot is
    /// still one of the VIP's, else -1 (`refind` decides).
    @inlinable @inline(__always)
    static func currentBackend(
        _ entry: UnsafeMutablePointer<FlowEntry>, _ record: VIPRecord, snapshot: borrowing ForwardingSnapshot
    ) -> Int {
        if entry.pointee.generation != snapshot.generation || Int(entry.pointee.backendSlot) >= record.backendCount { return -1 }
        return record.firstBackend &+ Int(entry.pointee.backendSlot)
    }

    /// A flow-table entry written under an older snapshot: the same backend found by address and
    /// the entry brought up to date; `noBackend` when the VIP no longer has it (the flow is placed
    /// anew), `gueInGUE` when a reload made the flow's port its VIP's gue_port. Out of line: the
    /// first packet of each flow after a reload.
    @inlinable @inline(never)
    mutating func refind(
        _ entry: UnsafeMutablePointer<FlowEntry>, _ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot
    ) -> Int {
        let record = snapshot.vips[vip]
        if Worker.isGUEInGUE(c, record) { return Worker.gueInGUE }
        if entry.pointee.backendFlags & FlowEntry.secondHopFlag != 0 {
            return viaSecondHop(entry, c, vip: vip, snapshot: snapshot)
        }
        guard let slot = snapshot.slot(of: entry.pointee.backendAddress, vip: vip) else { return Worker.noBackend }
        entry.pointee.generation = snapshot.generation
        entry.pointee.backendSlot = slot
        return record.firstBackend &+ Int(slot)
    }

    /// A flow the table does not know (or a new connection on a known 5-tuple): Maglev's pick,
    /// over the VIP's `hash` (the 5-tuple, or less of it), remembered in the flow table. Out of
    /// line: established flows, the common case, stay short.
    @inlinable @inline(never)
    mutating func placeNewFlow(
        _ c: UnsafePointer<Classified>, vip: Int, at probe: FlowProbe, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Int {
        let record = snapshot.vips[vip]
        if Worker.isGUEInGUE(c, record) { return Worker.gueInGUE }
        let hash = c.pointee.hash
        let slot = record.plainPlacement ? snapshot.maglevSlot(vip: vip, hash: hash) : placeBy(c, vip: vip, snapshot: snapshot)
        if slot == Maglev.emptySlot { return Worker.noBackend }
        let backend = record.firstBackend &+ Int(slot)
        // Second chance: not for SYNs (they open connections here), only where the VIP has a previous table.
        if c.pointee.tcpFlags & TCPFlag.syn == 0 && snapshot.secondChances[vip].table != nil {
            // A flow the table knew, whose backend left the VIP (removed, or down): that backend owns it.
            let left = probe.found ? flows.entries[probe.index].backendAddress : nil
            remember(c, at: probe, backend: backend, slot: slot, snapshot: snapshot, now: now)
            return withSecondHop(flows.entries + probe.index, c, vip: vip, backend: backend, left: left, snapshot: snapshot)
        }
        remember(c, at: probe, backend: backend, slot: slot, snapshot: snapshot, now: now)
        return backend
    }

    /// A new flow's entry, its closing state and its count.
    @inlinable @inline(__always)
    mutating func remember(
        _ c: UnsafePointer<Classified>, at probe: FlowProbe, backend: Int, slot: BackendSlot,
        snapshot: borrowing ForwardingSnapshot,
        now: UInt32
    ) {
        flows.insert(
            c.pointee.tuple, at: probe, hash: c.pointee.hash, backend: snapshot.backends[backend].address, slot: slot,
            generation: snapshot.generation, now: now)
        if c.pointee.tcpFlags & (TCPFlag.fin | TCPFlag.rst) != 0 { flows.markClosing(probe.index) }
        snapshot.countNewFlow(worker: index, backend: backend)
    }

    /// The frame of the packet whose stage-1 record is `c`: records and packets share the burst
    /// index (`processBurst` writes `classified + i` for `packets[i]`). Recovered here, on the rare
    /// placements that read the frame, rather than passed down: passing the index (or the frame)
    /// through `chooseBackend`, `lookUpBackend` and `placeNewFlow` cost tcp-syn 5 instructions a
    /// packet and tcp-established up to 5 (bench/compare.py, RESULTS.md).
    @inlinable @inline(__always)
    func frame(of c: UnsafePointer<Classified>, in packets: UnsafeMutablePointer<Packet>) -> UnsafeMutableRawPointer {
        packets[c - UnsafePointer(classified)].data
    }

    /// A new flow of a VIP with a `hash` mode, `quic` or `clamp_mss`: placed by `pick`, then a
    /// connection's SYN has its MSS clamped. The frame is found through the burst's packets
    /// (`burstPackets`), so no other placement carries it.
    @inlinable @inline(never)
    mutating func placeBy(_ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot) -> BackendSlot {
        let record = snapshot.vips[vip]
        let slot = pick(c, vip: vip, snapshot: snapshot)
        if record.clampMSS && slot != Maglev.emptySlot, let packets = burstPackets {
            clampMSS(frame(of: c, in: packets), c, backend: record.firstBackend &+ Int(slot), snapshot: snapshot)
        }
        return slot
    }

    /// The backend a QUIC connection ID names (counted by what the ID said), else Maglev over the
    /// VIP's hash.
    @inlinable @inline(__always)
    mutating func pick(_ c: UnsafePointer<Classified>, vip: Int, snapshot: borrowing ForwardingSnapshot) -> BackendSlot {
        let record = snapshot.vips[vip]
        if record.quic && !c.pointee.isICMPError, let packets = burstPackets {
            let frame = UnsafeRawPointer(frame(of: c, in: packets))
            // UDP payload: after the IP header (its length is what l3Offset + ipLength leave) and 8 bytes.
            var net = NetworkHeader()
            let end = Int(c.pointee.l3Offset) &+ Int(c.pointee.ipLength)
            // A later fragment holds no UDP header (it follows its first: `classifyFragment`).
            if Parser.parseNetwork(frame, length: end, into: &net) == .ok && !net.isFragment && net.l4Offset &+ 8 <= end {
                switch QUIC.serverID(frame + (net.l4Offset &+ 8), length: end &- net.l4Offset &- 8) {
                case .serverID(let id):
                    let slot = snapshot.quicBackendSlot(vip: vip, serverID: id)
                    if slot >= 0 {
                        stats.add(CounterSlot.quicByServerID)
                        return BackendSlot(slot)
                    }
                    stats.add(CounterSlot.quicUnknownServerID)
                case .none:
                    stats.add(CounterSlot.quicWithoutServerID)
                }
            }
        }
        let hash = Worker.placementHash(c, record)
        return snapshot.maglevSlot(vip: vip, hash: hash)
    }

    /// On a `clamp_mss` port or VIP: lowers a TCP SYN's MSS option to what the tunnel toward
    /// `backend` carries (port MTU less the outer headers, less the inner IP and TCP headers);
    /// checksum updated, counted. Out of line: ports without clamping pay one test per packet,
    /// VIPs without it none (a SYN without ACK is always placed anew: `connectionEvent`).
    @inlinable @inline(never)
    mutating func clampMSS(
        _ frame: UnsafeMutableRawPointer, _ c: UnsafePointer<Classified>, backend: Int, snapshot: borrowing ForwardingSnapshot
    ) {
        guard c.pointee.tcpFlags & (TCPFlag.syn | TCPFlag.ack) == TCPFlag.syn else { return }
        var net = NetworkHeader()
        let end = Int(c.pointee.l3Offset) &+ Int(c.pointee.ipLength)
        guard Parser.parseNetwork(UnsafeRawPointer(frame), length: end, into: &net) == .ok, net.ipProtocol == IPProtocol.tcp
        else {
            return
        }
        let tunnelMTU = port.mtu &- EncapTemplate.kind(snapshot.template(backend: backend)).headerLength
        let limit = TCPOptions.mss(tunnelMTU: tunnelMTU, innerIsV6: net.isV6)
        if TCPOptions.clampMSS(frame + net.l4Offset, available: net.ipEnd &- net.l4Offset, to: limit) {
            stats.add(CounterSlot.mssClamped)
        }
    }

    /// A known flow's SYN, FIN or RST (out of line: rare). A SYN without ACK is a new connection on
    /// a remembered 5-tuple: decided afresh, in place (returned as not found). FIN or RST: the
    /// flow closes.
    @inlinable @inline(never)
    func connectionEvent(_ probe: FlowProbe, tcpFlags: UInt8) -> FlowProbe {
        if tcpFlags & (TCPFlag.syn | TCPFlag.ack) == TCPFlag.syn {
            return FlowProbe(index: probe.index, found: false, evicts: false)
        }
        if tcpFlags & (TCPFlag.fin | TCPFlag.rst) != 0 { flows.markClosing(probe.index) }
        return probe
    }

    /// Puts the outer IP header (and UDP + GUE for GUE VIPs) and a new Ethernet header in front of
    /// the IP packet, from the backend's prepared template. Link-layer padding and any VLAN tag of
    /// the received frame are left behind.
    @inlinable @inline(__always)
    mutating func encapsulate(
        _ packet: inout Packet, _ c: UnsafePointer<Classified>, backend: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32,
        fragmenting: Bool = false
    ) -> Outcome {
        let template = snapshot.template(backend: backend)
        let headerLength = EncapTemplate.headerLength(template)
        let ipLength = Int(c.pointee.ipLength)
        let l3Offset = Int(c.pointee.l3Offset)
        // `fragmenting` (from `tooBig`): build the frame whole, the transmitter cuts it.
        if !fragmenting && ipLength &+ headerLength > port.mtu {
            return tooBig(&packet, c, backend: backend, snapshot: snapshot, now: now)
        }
        let o = l3Offset &- headerLength
        let start = o &- HeaderSize.ethernet
        if start < 0 &- packet.headroom { return .dropNoHeadroom }

        let p = packet.data
        // An inner IPv6 packet may not be fragmented on the way, so 6in4 sets DF; an inner IPv4
        // packet without DF keeps its own identification, which is unique for its sender.
        let dontFragment = c.pointee.isV6 || c.pointee.dontFragment
        let identification = dontFragment ? 0 : UnsafeRawPointer(p).be16(l3Offset &+ 4)
        EncapTemplate.apply(
            template, to: p, at: o, innerLength: ipLength, trafficClass: c.pointee.trafficClass,
            identification: identification, dontFragment: dontFragment, hash: c.pointee.hash)
        port.macWords.store(to: p, at: start)
        EncapTemplate.storeEtherType(template, to: p, at: start &+ 12)
        packet.reframe(start: start, length: ipLength &+ headerLength &+ HeaderSize.ethernet)
        return .forwarded
    }

    /// A packet the tunnel cannot carry. An inner IPv4 packet without DF toward an IPv4 tunnel is
    /// encapsulated whole with the outer DF clear and sent as outer fragments (RFC 2003 5.1; the
    /// transmitter cuts it, `OuterFragments`). Otherwise it is answered (within the per-second
    /// budget) so that the client lowers its path MTU instead of retransmitting into a black hole.
    /// Out of line: rare.
    @inlinable @inline(never)
    mutating func tooBig(
        _ packet: inout Packet, _ c: UnsafePointer<Classified>, backend: Int, snapshot: borrowing ForwardingSnapshot, now: UInt32
    ) -> Outcome {
        let template = snapshot.template(backend: backend)
        let kind = EncapTemplate.kind(template)
        let tunnelMTU = port.mtu &- kind.headerLength
        if !c.pointee.isV6 && !c.pointee.dontFragment && !kind.outerIsV6 {
            let payload = Int(c.pointee.ipLength) &+ kind.headerLength &- HeaderSize.ipv4
            guard OuterFragments.count(payload: payload, mtu: port.mtu) <= OuterFragments.maxCount else { return .dropTooBig }
            let outcome = encapsulate(&packet, c, backend: backend, snapshot: snapshot, now: now, fragmenting: true)
            guard outcome == .forwarded else { return outcome }
            countForwarded(backend, c)
            return .forwardedInFragments
        }
        if c.pointee.isICMPError { return .dropTooBig }  // no ICMP error about an ICMP error (RFC 1122)
        let client = c.pointee.tuple.source
        if !client.isSingleHost { return .dropBadSource }
        if snapshot.isVIPAddress(client) { return .dropBadSource }
        if now != tooBigSecond {
            tooBigSecond = now
            tooBigBudget = tooBigRepliesPerSecond
        }
        guard tooBigBudget > 0 else { return .dropICMPBudget }
        if port.replyGatewayMAC == PortContext.unknownMAC { return .dropNoNeighbor }
        let outcome = Worker.replyTooBig(&packet, c, tunnelMTU: tunnelMTU, port: port)
        if outcome == .repliedTooBig { tooBigBudget -= 1 }
        return outcome
    }

    /// Turns a packet too big for the tunnel into the ICMP error for its sender, in place: from the
    /// VIP to the client, ICMP type 3 code 4 ("fragmentation needed", RFC 1191) or ICMPv6 type 2
    /// ("packet too big", RFC 8201) carrying the MTU the tunnel leaves, and quoting the packet from
    /// its IP header on, as much as fits in 576 (IPv4) or 1280 (IPv6) bytes. The new headers go in
    /// front of the IP header, so the quoted bytes stay where they are. An IPv4 packet without DF
    /// that reaches here (toward an IPv6 tunnel, which Tern does not fragment) is dropped `too_big`.
    @inlinable
    static func replyTooBig(_ packet: inout Packet, _ c: UnsafePointer<Classified>, tunnelMTU: Int, port: borrowing PortContext)
        -> Outcome
    {
        let isV6 = c.pointee.isV6
        if !isV6 && !c.pointee.dontFragment { return .dropTooBig }
        let ipHeader = isV6 ? HeaderSize.ipv6 : HeaderSize.ipv4
        let quoted = min(Int(c.pointee.ipLength), (isV6 ? 1280 : 576) &- ipHeader &- 8)
        let l3 = Int(c.pointee.l3Offset)
        let o = l3 &- ipHeader &- 8
        if o &- HeaderSize.ethernet &- (port.replyVLAN == 0 ? 0 : HeaderSize.vlanTag) < -packet.headroom { return .dropTooBig }

        let p = packet.data
        let icmp = o &+ ipHeader
        let messageLength = 8 &+ quoted
        let vip = c.pointee.tuple.destination
        let client = c.pointee.tuple.source
        p.storeU8(isV6 ? 2 : 3, at: icmp)
        p.storeU8(isV6 ? 0 : 4, at: icmp &+ 1)
        p.storeBE16(0, at: icmp &+ 2)
        if isV6 {
            p.storeBE32(UInt32(tunnelMTU), at: icmp &+ 4)
            HeaderBuilder.writeIPv6(
                p, at: o, trafficClass: 0, flowLabel: 0, payloadLength: messageLength, nextHeader: IPProtocol.icmpv6,
                source: vip, destination: client)
            let pseudo = Checksum.sum(of: vip) &+ Checksum.sum(of: client) &+ UInt64(messageLength) &+ UInt64(IPProtocol.icmpv6)
            p.storeBE16(Checksum.finish(Checksum.add(p + icmp, length: messageLength, to: pseudo)), at: icmp &+ 2)
        } else {
            p.storeBE16(0, at: icmp &+ 4)
            p.storeBE16(UInt16(tunnelMTU), at: icmp &+ 6)
            HeaderBuilder.writeIPv4(
                p, at: o, tos: 0, totalLength: ipHeader &+ messageLength, identification: 0, dontFragment: false,
                ipProtocol: IPProtocol.icmp, source: vip, destination: client)
            p.storeBE16(Checksum.compute(p + icmp, length: messageLength), at: icmp &+ 2)
        }
        let start = HeaderBuilder.writeLinkHeader(
            p, before: o, destination: port.replyGatewayMAC, source: port.replyMAC,
            etherType: isV6 ? EtherType.ipv6 : EtherType.ipv4,
            vlan: port.replyVLAN)
        packet.reframe(start: start, length: (o &- start) &+ ipHeader &+ messageLength)
        return .repliedTooBig
    }

    /// Turns an ICMP or ICMPv6 echo request into the echo reply in place: addresses swapped, TTL or
    /// hop limit 64, type 0 or 129, checksums computed afresh (an incremental update cannot tell an
    /// all-zero message's checksum 0xFFFF from 0x0000); sent back to the gateway.
    @inlinable
    static func replyToEcho(_ packet: inout Packet, _ net: borrowing NetworkHeader, port: borrowing PortContext) -> Outcome {
        let p = packet.data
        let l3 = net.l3Offset
        // An untagged request with a tagged reply needs 4 bytes in front.
        if port.replyVLAN != 0 && l3 &- HeaderSize.ethernet &- HeaderSize.vlanTag < -packet.headroom { return .dropNoHeadroom }
        let l4 = net.l4Offset
        let messageLength = net.ipEnd &- l4
        p.storeU8(net.isV6 ? 129 : 0, at: l4)
        p.storeBE16(0, at: l4 &+ 2)
        if net.isV6 {
            net.destination.store(to: p, offset: l3 &+ 8)
            net.source.store(to: p, offset: l3 &+ 24)
            p.storeU8(64, at: l3 &+ 7)
            var sum = Checksum.sum(of: net.source) &+ Checksum.sum(of: net.destination)
            sum &+= UInt64(messageLength) &+ UInt64(IPProtocol.icmpv6)
            p.storeBE16(Checksum.finish(Checksum.add(p + l4, length: messageLength, to: sum)), at: l4 &+ 2)
        } else {
            net.destination.store(to: p, offset: l3 &+ 12)
            net.source.store(to: p, offset: l3 &+ 16)
            p.storeU8(64, at: l3 &+ 8)
            p.storeBE16(0, at: l3 &+ 10)
            p.storeBE16(Checksum.compute(p + l3, length: l4 &- l3), at: l3 &+ 10)
            p.storeBE16(Checksum.compute(p + l4, length: messageLength), at: l4 &+ 2)
        }
        let start = HeaderBuilder.writeLinkHeader(
            p, before: l3, destination: port.replyGatewayMAC, source: port.replyMAC,
            etherType: net.isV6 ? EtherType.ipv6 : EtherType.ipv4,
            vlan: port.replyVLAN)
        packet.reframe(start: start, length: net.ipLength &+ (l3 &- start))
        return .replied
    }
}
