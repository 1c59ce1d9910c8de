// A frame in memory with room in front of it: the only thing the pipeline knows about a packet, so
// the same code runs on DPDK mbufs, pcap files, tests, fuzzers and benchmarks.

import CFastPath
import TernWire

/// `data` points at the first byte of the frame; `headroom` bytes before it may be written.
/// The pipeline moves `data` back (and changes `length`) when it adds or removes headers.
public struct Packet {
    public var data: UnsafeMutableRawPointer
    public var length: Int
    public var headroom: Int

    @inlinable
    public init(data: UnsafeMutableRawPointer, length: Int, headroom: Int) {
        self.data = data
        self.length = length
        self.headroom = headroom
    }

    /// Starts loading the frame's first cache line (headers to parse) and the line before it
    /// (where the outer headers will be written), as DPDK's l3fwd does a few packets ahead.
    @inlinable @inline(__always)
    func prefetch() {
        tern_prefetch(data)
        tern_prefetch_write(data - 1)
    }

    /// Makes the frame start `offset` bytes from the current start (negative: into the headroom)
    /// and be `length` bytes long.
    @inlinable @inline(__always)
    mutating func reframe(start offset: Int, length: Int) {
        data += offset
        headroom &+= offset
        self.length = length
    }
}

/// What the pipeline needs to know about the ports a packet leaves on: encapsulated packets go
/// toward the backends, replies back out of the port the request came in on (the same port in a
/// one-armed setup).
public struct PortContext: Sendable {
    /// Source MAC of encapsulated packets.
    public var mac: MACAddress { didSet { macWords = MACWords(destination: gatewayMAC, source: mac) } }
    /// Destination MAC of encapsulated packets (the next hop toward the backends);
    /// `PortContext.unknownMAC` while a learned next hop is not resolved (packets are dropped
    /// `no_neighbor`).
    public var gatewayMAC: MACAddress {
        didSet {
            macWords = MACWords(destination: gatewayMAC, source: mac)
            takesSlowForward = hasFeatures || gatewayMAC == PortContext.unknownMAC
        }
    }
    /// The two addresses as encapsulated frames start, in wire order (two stores per packet).
    public private(set) var macWords: MACWords
    /// Largest IP packet (outer headers included) the path to backends carries.
    public var mtu: Int
    /// Source and destination MAC of replies.
    public var replyMAC: MACAddress
    public var replyGatewayMAC: MACAddress
    /// Lower TCP SYNs' MSS option to what the tunnel carries (`[[port]] clamp_mss`).
    public let clampMSS: Bool
    /// 802.1Q VLAN id of encapsulated packets (the backend port's `vlan`); 0: untagged.
    public let vlan: UInt16
    /// The receiving port's VLAN id: replies carry it, and frames tagged with another id are the
    /// host's; 0: replies untagged, any tag accepted.
    public let replyVLAN: UInt16
    /// Some of the above is on.
    public let hasFeatures: Bool
    /// `hasFeatures`, or the next hop is not resolved yet: packets take `forwardWithPortFeatures`
    /// (one test per packet for all of them).
    public private(set) var takesSlowForward: Bool

    /// 00:00:00:00:00:00: a next hop not known yet (never a valid unicast MAC).
    public static let unknownMAC = MACAddress(value: 0)

    public init(
        mac: MACAddress, gatewayMAC: MACAddress, mtu: Int, replyMAC: MACAddress? = nil, replyGatewayMAC: MACAddress? = nil,
        clampMSS: Bool = false, vlan: UInt16 = 0, replyVLAN: UInt16 = 0
    ) {
        self.clampMSS = clampMSS
        self.vlan = vlan
        self.replyVLAN = replyVLAN
        hasFeatures = clampMSS || vlan != 0 || replyVLAN != 0
        takesSlowForward = hasFeatures || gatewayMAC == PortContext.unknownMAC
        self.mac = mac
        self.gatewayMAC = gatewayMAC
        macWords = MACWords(destination: gatewayMAC, source: mac)
        self.mtu = mtu
        self.replyMAC = replyMAC ?? mac
        self.replyGatewayMAC = replyGatewayMAC ?? gatewayMAC
    }
}

/// The first 12 bytes of an Ethernet header (destination, then source MAC) as an 8-byte and a
/// 4-byte word in memory order, so a frame gets them with two stores.
public struct MACWords: Sendable {
    public let first: UInt64
    public let second: UInt32

    public init(destination: MACAddress, source: MACAddress) {
        var bytes: (UInt64, UInt64) = (0, 0)
        (first, second) = withUnsafeMutableBytes(of: &bytes) { b in
            destination.store(to: b.baseAddress!, offset: 0)
            source.store(to: b.baseAddress!, offset: 6)
            return (b.load(as: UInt64.self), b.load(fromByteOffset: 8, as: UInt32.self))
        }
    }

    /// Writes the 12 bytes at `o`.
    @inlinable @inline(__always)
    public func store(to p: UnsafeMutableRawPointer, at o: Int) {
        p.storeBytes(of: first, toByteOffset: o, as: UInt64.self)
        p.storeBytes(of: second, toByteOffset: o &+ 8, as: UInt32.self)
    }
}

/// Answers left this second (per worker): refilled when the second changes.
public struct ICMPBudget: Sendable {
    public let perSecond: UInt32
    public var second: UInt32 = 0
    public var left: UInt32 = 0

    public init(perSecond: UInt32) { self.perSecond = perSecond }

    /// Called once per burst with flow-table time.
    @inlinable @inline(__always)
    public mutating func refill(now: UInt32) {
        if now != second {
            second = now
            left = perSecond
        }
    }

    /// Whether one more answer fits this second (and takes it).
    @inlinable @inline(__always)
    public mutating func take() -> Bool {
        guard left > 0 else { return false }
        left -= 1
        return true
    }
}
