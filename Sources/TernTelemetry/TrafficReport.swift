// Counters gathered from workers and snapshots, rendered as text or one JSON object. Shared by
// `ternctl simulate` and `ternd`, so both report the same keys.

import TernBalancing
import TernDataplane

/// Packets per VIP and per backend address, accumulated over snapshots (a reload retires one
/// snapshot and its counters; they are added here by name, so totals survive reindexing).
public struct PacketTotals: Sendable {
    public private(set) var perVIP: [(String, UInt64)] = []
    public private(set) var perBackend: [(String, UInt64)] = []
    var vipIndex: [String: Int] = [:]
    var backendIndex: [String: Int] = [:]

    public init() {}

    static func add(_ name: String, _ n: UInt64, to list: inout [(String, UInt64)], index: inout [String: Int]) {
        if let i = index[name] {
            list[i].1 += n
        } else {
            index[name] = list.count
            list.append((name, n))
        }
    }

    /// Adds a snapshot's per-worker counters. Call when no worker can still write them (after a
    /// grace period or after the workers stopped).
    public mutating func add(_ snapshot: borrowing ForwardingSnapshot) {
        let (vips, backends) = snapshot.packetTotals()
        for v in 0..<snapshot.vips.count {
            let record = snapshot.vips[v]
            Self.add(record.name, vips[v], to: &perVIP, index: &vipIndex)
            for b in record.firstBackend..<(record.firstBackend + record.backendCount) {
                Self.add(snapshot.backends[b].address.description, backends[b], to: &perBackend, index: &backendIndex)
            }
        }
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
        s += "forwarded \(outcomes[.forwarded])\nhost \(outcomes[.host])\nreplied \(replied)\n"
        for (kind, n) in replies where n > 0 { s += "  \(kind) \(n)\n" }
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
            "\"rx\":\(outcomes.received)", "\"forwarded\":\(outcomes[.forwarded])", "\"host\":\(outcomes[.host])",
            "\"replied\":\(replied)", "\"replies\":\(object(replies))", "\"dropped\":\(object(dropped))",
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
