// Counters gathered from workers and snapshots, rendered as text or one JSON object. Shared by
// `ternctl simulate` and `ternd`, so both report the same keys.

import TernBalancing
import TernDataplane
import TernWire

/// Packets forwarded and flows placed per backend of each VIP, kept by the backend's stable
/// counter id (`BackendRecord.counterID`), so totals carry on across reloads: a snapshot's figures
/// are added here when it retires, and the running one's on top when asked.
public struct PacketTotals: Sendable {
    public struct Entry: Sendable {
        public var vip: String
        public var address: IPAddress
        public var packets: UInt64 = 0
        public var newFlows: UInt64 = 0
        /// IP bytes of the clients' packets (before encapsulation).
        public var bytes: UInt64 = 0
    }

    /// By counter id; `nil` for an id no snapshot added yet.
    public private(set) var entries: [Entry?] = []

    public init() {}

    /// Adds a snapshot's per-worker counters. Exact once no worker can still write them (after a
    /// grace period or after the workers stopped); a live read may lag by packets in flight.
    public mutating func add(_ snapshot: borrowing ForwardingSnapshot) {
        let (packets, newFlows, bytes) = snapshot.backendTotals()
        for v in 0..<snapshot.vips.count {
            let record = snapshot.vips[v]
            let name = record.name
            for b in record.firstBackend..<(record.firstBackend + record.backendCount) {
                let id = snapshot.backends[b].counterID
                if id >= entries.count { entries += Array(repeating: nil, count: id + 1 - entries.count) }
                var e = entries[id] ?? Entry(vip: name, address: snapshot.backends[b].address)
                e.packets += packets[b]
                e.newFlows += newFlows[b]
                e.bytes += bytes[b]
                entries[id] = e
            }
        }
    }

    /// Per VIP, in order of first appearance: packets, new flows and bytes over all its backends,
    /// past and present.
    public var vips: [(name: String, packets: UInt64, newFlows: UInt64, bytes: UInt64)] {
        var out: [(name: String, packets: UInt64, newFlows: UInt64, bytes: UInt64)] = []
        var index: [String: Int] = [:]
        for case let e? in entries {
            if let i = index[e.vip] {
                out[i].packets += e.packets
                out[i].newFlows += e.newFlows
                out[i].bytes += e.bytes
            } else {
                index[e.vip] = out.count
                out.append((e.vip, e.packets, e.newFlows, e.bytes))
            }
        }
        return out
    }

    /// Packets per VIP (the `per_vip` of stats).
    public var perVIP: [(String, UInt64)] { vips.map { ($0.name, $0.packets) } }

    /// Packets per backend address over every VIP that has it (the `per_backend` of stats).
    public var perBackend: [(String, UInt64)] {
        var out: [(String, UInt64)] = []
        var index: [IPAddress: Int] = [:]
        for case let e? in entries {
            if let i = index[e.address] {
                out[i].1 += e.packets
            } else {
                index[e.address] = out.count
                out.append((e.address.description, e.packets))
            }
        }
        return out
    }

    /// Per VIP, its backends' entries by address (one pass, for tables of every backend).
    public var byVIP: [String: [IPAddress: Entry]] {
        var out: [String: [IPAddress: Entry]] = [:]
        for case let e? in entries { out[e.vip, default: [:]][e.address] = e }
        return out
    }
}

public struct TrafficReport: Sendable {
    public var outcomes: OutcomeCounters
    public var totals: PacketTotals
    public var flows: FlowTableCounters
    /// Extra top-level numbers (`tx`, `mbufs_in_use`, ...), in order.
    public var extra: [(String, UInt64)]
    /// Extra top-level objects (`reloads`), in order.
    public var extraObjects: [(String, [(String, UInt64)])]

    public init(
        outcomes: OutcomeCounters, totals: PacketTotals, flows: FlowTableCounters, extra: [(String, UInt64)] = [],
        extraObjects: [(String, [(String, UInt64)])] = []
    ) {
        self.outcomes = outcomes
        self.totals = totals
        self.flows = flows
        self.extra = extra
        self.extraObjects = extraObjects
    }

    var dropped: [(String, UInt64)] { Outcome.dropReasons.map { ($0.dropReason!, outcomes[$0]) } }
    var replies: [(String, UInt64)] { Outcome.replies.map { ($0.0, outcomes[$0.1]) } }
    var replied: UInt64 { replies.reduce(0) { $0 + $1.1 } }

    public var text: String {
        var s = "rx \(outcomes.received)\n"
        s +=
            "forwarded \(outcomes.forwarded)\n  in_fragments \(outcomes[.forwardedInFragments])\nhost \(outcomes[.host])\nreplied \(replied)\n"
        for (kind, n) in replies where n > 0 { s += "  \(kind) \(n)\n" }
        s += "fragments_held \(outcomes[.held])\n"
        s += "dropped \(dropped.reduce(0) { $0 + $1.1 })\n"
        for (reason, n) in dropped where n > 0 { s += "  \(reason) \(n)\n" }
        for (name, n) in extra { s += "\(name) \(n)\n" }
        for (name, pairs) in extraObjects { s += "\(name) " + pairs.map { "\($0.0) \($0.1)" }.joined(separator: " ") + "\n" }
        for (name, n) in totals.perVIP { s += "vip \(name) \(n)\n" }
        for (name, n) in totals.perBackend { s += "backend \(name) \(n)\n" }
        s += "flows inserted \(flows.inserted) evicted \(flows.evicted)\n"
        return s
    }

    /// One JSON object on one line.
    public var json: String {
        func object(_ pairs: [(String, UInt64)]) -> String {
            "{" + pairs.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        var fields: [String] = [
            "\"rx\":\(outcomes.received)", "\"forwarded\":\(outcomes.forwarded)",
            "\"forwarded_in_fragments\":\(outcomes[.forwardedInFragments])", "\"host\":\(outcomes[.host])",
            "\"replied\":\(replied)", "\"replies\":\(object(replies))", "\"fragments_held\":\(outcomes[.held])",
            "\"dropped\":\(object(dropped))",
        ]
        fields += extra.map { "\"\($0.0)\":\($0.1)" }
        fields += extraObjects.map { "\"\($0.0)\":\(object($0.1))" }
        fields += [
            "\"per_vip\":\(object(totals.perVIP))", "\"per_backend\":\(object(totals.perBackend))",
            "\"flows\":\(object([("inserted", flows.inserted), ("evicted", flows.evicted)]))",
        ]
        return "{" + fields.joined(separator: ",") + "}"
    }
}

extension OutcomeCounters {
    /// Sums workers' counters.
    public static func + (a: OutcomeCounters, b: OutcomeCounters) -> OutcomeCounters {
        var c = a
        for o in Outcome.allCases { c.add(o, b[o]) }
        return c
    }
}

extension FlowTableCounters {
    public static func + (a: FlowTableCounters, b: FlowTableCounters) -> FlowTableCounters {
        var c = a
        c.inserted += b.inserted
        c.evicted += b.evicted
        c.expired += b.expired
        return c
    }
}
