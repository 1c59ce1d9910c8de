// Verdicts and drop reasons: every packet ends in exactly one of these, and each has a counter.

import TernMetrics

/// The end of one packet's trip through the pipeline.
public enum Outcome: UInt8, CaseIterable, Sendable {
    /// Encapsulated toward a backend; transmit it.
    case forwarded
    /// Not for a VIP (ARP, BGP, management traffic, any non-VIP address): the host's business.
    case host
    /// Answered by Tern itself (ICMP echo to a VIP address); transmit it.
    case replied
    /// Truncated or inconsistent headers.
    case dropMalformed
    /// An IP fragment to a VIP that cannot follow a first fragment: a later fragment whose first
    /// has not passed while the hold is full, or a fragment of a protocol Tern does not route
    /// (`FragmentTable`).
    case dropFragment
    /// To a VIP address, but no VIP serves that protocol and port (or the protocol is not TCP/UDP).
    case dropNoService
    /// The VIP has no backend with a weight above zero.
    case dropNoBackend
    /// The encapsulated packet would exceed the port's MTU.
    case dropTooBig
    /// Not enough room in front of the packet for the outer headers.
    case dropNoHeadroom
    /// ICMP to a VIP address other than an echo request or an error about a flow of a VIP.
    case dropICMPUnsupported
    /// An ICMP answer (echo reply, too big) would go to a source that is not one host (RFC 1122
    /// 3.2.2, RFC 4443 2.4: broadcast, multicast, unspecified, loopback, 240/4) or to a VIP: none
    /// is sent.
    case dropBadSource
    /// UDP to a GUE VIP's own `gue_port`: GUE inside GUE, which a backend decapsulating on that
    /// port would open twice (a client could inject packets with any source).
    case dropGUEInGUE
    /// The next hop's MAC (`[[port]] gateway`) is not known yet: nothing can be sent toward it.
    case dropNoNeighbor
    /// Too big for the tunnel: answered with ICMP "fragmentation needed" or ICMPv6 "packet too
    /// big" so the client lowers its path MTU; transmit it (verdict `replied`).
    case repliedTooBig
    /// A too-big answer over the worker's per-second budget (`[icmp] too_big_per_second`): not sent.
    case dropICMPBudget
    /// Encapsulated but too big for the tunnel, inner IPv4 without DF: built whole with the outer
    /// DF clear; the transmitter sends it as outer fragments (`OuterFragments`, RFC 2003 5.1).
    /// Verdict `forwarded`.
    case forwardedInFragments
    /// A later IP fragment that came before its datagram's first: kept (its buffer) until the first
    /// passes, then run again and counted by its final outcome (`FragmentTable`). Not a final
    /// outcome: `OutcomeCounters.received` leaves it out.
    case held
    /// A held fragment whose first fragment did not come within `FragmentTable.holdSeconds`
    /// (or the worker stopped while holding it).
    case dropFragmentTimeout

    public enum Verdict: String, Sendable { case forwarded, host, replied, dropped, held }

    public var verdict: Verdict {
        switch self {
        case .forwarded, .forwardedInFragments: .forwarded
        case .host: .host
        case .replied, .repliedTooBig: .replied
        case .held: .held
        default: .dropped
        }
    }

    /// Whether the packet leaves on the TX queue.
    @inlinable @inline(__always)
    public var transmits: Bool {
        self == .forwarded || self == .replied || self == .repliedTooBig || self == .forwardedInFragments
    }

    /// The drop reason's name in counters and JSON, or nil for verdicts that are not drops.
    public var dropReason: String? {
        switch self {
        case .forwarded, .forwardedInFragments, .host, .replied, .repliedTooBig, .held: nil
        case .dropMalformed: "malformed"
        case .dropFragment: "fragment"
        case .dropNoService: "no_service"
        case .dropNoBackend: "no_backend"
        case .dropTooBig: "too_big"
        case .dropNoHeadroom: "no_headroom"
        case .dropICMPUnsupported: "icmp_unsupported"
        case .dropBadSource: "bad_source"
        case .dropGUEInGUE: "gue_in_gue"
        case .dropNoNeighbor: "no_neighbor"
        case .dropICMPBudget: "icmp_budget"
        case .dropFragmentTimeout: "fragment_timeout"
        }
    }

    public static var dropReasons: [Outcome] { allCases.filter { $0.dropReason != nil } }

    /// The kinds of reply, by name in counters and JSON: `echo` (ICMP echo reply) and `too_big`.
    public static var replies: [(String, Outcome)] { [("echo", .replied), ("too_big", .repliedTooBig)] }
}

/// One counter per outcome, in a fixed-size tuple so counting never allocates.
public struct OutcomeCounters: Sendable {
    public static let count = Outcome.allCases.count
    /// One word per outcome, written through a pointer at `rawValue`: its arity must equal the
    /// number of outcomes (`PipelineTests` checks it; a new outcome needs one more element here).
    @usableFromInline typealias Storage = (
        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
        UInt64, UInt64, UInt64
    )
    @usableFromInline var storage: Storage = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// Words in `storage`.
    static let capacity = MemoryLayout<Storage>.size / MemoryLayout<UInt64>.size

    public init() {}

    /// What a worker's block says now.
    public init(reading block: CounterBlock) {
        for o in Outcome.allCases { add(o, block.load(.outcomes, offset: Int(o.rawValue))) }
    }

    @inlinable @inline(__always)
    public mutating func add(_ o: Outcome, _ n: UInt64 = 1) {
        withUnsafeMutableBytes(of: &storage) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt64.self) + Int(o.rawValue)
            p.pointee &+= n
        }
    }

    public subscript(_ o: Outcome) -> UInt64 {
        withUnsafeBytes(of: storage) { $0.load(fromByteOffset: Int(o.rawValue) * 8, as: UInt64.self) }
    }

    /// Packets that reached a final outcome (every outcome but `held`).
    public var received: UInt64 { Outcome.allCases.reduce(0) { $1 == .held ? $0 : $0 + self[$1] } }
    /// Encapsulated toward backends, whole or in outer fragments.
    public var forwarded: UInt64 { self[.forwarded] + self[.forwardedInFragments] }
}
