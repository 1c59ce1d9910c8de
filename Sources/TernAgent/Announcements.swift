// Which VIP prefixes this node should announce, and the lines that tell an existing BGP speaker
// to do so: ExaBGP's process API, or an include file of static routes for BIRD. Tern speaks no
// BGP itself. A prefix (an address: /32 or /128) is announced while some VIP on it is up (enough
// live backends, `min_healthy`) and the node can forward (not shutting down, every learned next
// hop known: a restarted ternd announces only once it can reach the router); it is withdrawn
// otherwise, and all of them when ternd is gone.

import TernConfig
import TernWire

/// A prefix as a speaker should see it: whether to announce it, and with which attributes.
public struct Announcement: Equatable, Sendable {
    public var up: Bool
    public var attributes: BGPAttributes

    public init(up: Bool, attributes: BGPAttributes = BGPAttributes()) {
        self.up = up
        self.attributes = attributes
    }
}

public enum Announcements {
    /// Prefix (`192.0.2.10/32`) to what should be announced now. The attributes are those of the
    /// first VIP on the address that sets `[vip.bgp]` (the config check refuses two that differ).
    /// `withdrawAll`: the node cannot forward now (`DaemonInfo.withdrawing`).
    public static func wanted(_ desired: DesiredState, withdrawAll: Bool) -> [String: Announcement] {
        var out: [String: Announcement] = [:]
        for v in desired.config.vips {
            let prefix = v.prefix
            var a = out[prefix] ?? Announcement(up: false)
            a.up = a.up || (!withdrawAll && desired.isUp(v))
            if a.attributes == BGPAttributes() { a.attributes = v.bgp }
            out[prefix] = a
        }
        return out
    }
}

extension Announcement {
    /// What the feed takes from a control reply before anything reaches a speaker: a prefix must be
    /// one a VIP can have (an address, or a CIDR VIP of at most 256 addresses, host bits clear),
    /// communities `A:B` of 16-bit numbers; anything else (a squatter's `0.0.0.0/0`, a newline
    /// that would be a second ExaBGP command) is refused with the reason.
    public static func trusted(_ p: PrefixAnnouncement) -> Result<(String, Announcement), ControlFailure> {
        let parts = p.prefix.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let length = Int(parts[1]),
            parts[1].allSatisfy(\.isASCII), parts[1].allSatisfy(\.isNumber),
            (address.bitWidth - 8...address.bitWidth).contains(length), address.hasZeroHostBits(prefixLength: length),
            address.notUnicastReason == nil
        else { return .failure(ControlFailure("not a VIP prefix: \"\(escapedForMessage(p.prefix))\"")) }
        for c in p.communities {
            let ab = c.split(separator: ":", omittingEmptySubsequences: false)
            guard ab.count == 2, ab.allSatisfy({ $0.allSatisfy(\.isASCII) && UInt16($0) != nil }) else {
                return .failure(ControlFailure("not a community (A:B): \"\(escapedForMessage(c))\""))
            }
        }
        if let med = p.med, !(0...Int(UInt32.max)).contains(med) {
            return .failure(ControlFailure("not a MED: \(med)"))
        }
        let canonical = "\(address)/\(length)"
        return .success((canonical, Announcement(up: p.up, attributes: BGPAttributes(med: p.med, communities: p.communities))))
    }
}

/// The feed's memory of what it told ExaBGP, and the commands that bring ExaBGP to a new wanted
/// state (announce what became up or changed attributes, withdraw what went down or left).
public struct AnnouncementFeed: Sendable {
    public private(set) var announced: [String: BGPAttributes] = [:]
    let nextHop: String

    /// `nextHop`: ExaBGP's next-hop attribute (default `self`: the session's local address).
    public init(nextHop: String = "self") { self.nextHop = nextHop }

    public mutating func update(_ wanted: [String: Announcement]) -> [String] {
        var lines: [String] = []
        for prefix in announced.keys.sorted() where wanted[prefix]?.up != true {
            lines.append("withdraw route \(prefix) next-hop \(nextHop)")
            announced[prefix] = nil
        }
        for (prefix, a) in wanted.sorted(by: { $0.key < $1.key }) where a.up && announced[prefix] != a.attributes {
            lines.append("announce route \(prefix) next-hop \(nextHop)\(Self.exabgp(a.attributes))")
            announced[prefix] = a.attributes
        }
        return lines
    }

    /// ternd is gone or the feed stops: withdraw everything (fail closed).
    public mutating func withdrawAll() -> [String] { update([:]) }

    /// ` med 100 community [65000:100 65000:200]`, or "".
    static func exabgp(_ a: BGPAttributes) -> String {
        (a.med.map { " med \($0)" } ?? "") + (a.communities.isEmpty ? "" : " community [\(a.communities.joined(separator: " "))]")
    }
}

/// The BIRD variant: an include file with one static protocol per family holding a blackhole
/// route per prefix to announce (attributes set on the route); the operator's bird.conf includes
/// it and exports `where proto ~ "tern_vips*"` to its BGP sessions; `birdc configure` applies it.
public enum BIRDRoutes {
    public static func file(_ wanted: [String: Announcement]) -> String {
        var text = "# Written by ternctl bgp-feed --bird-include: the VIP prefixes this node announces now.\n"
        for (family, v6) in [("ipv4", false), ("ipv6", true)] {
            let routes = wanted.filter { $0.value.up && $0.key.contains(":") == v6 }.sorted { $0.key < $1.key }.map { prefix, a in
                var attrs = a.attributes.med.map { " bgp_med = \($0);" } ?? ""
                for c in a.attributes.communities {
                    let parts = c.split(separator: ":")
                    attrs += " bgp_community.add((\(parts[0]),\(parts[1])));"
                }
                return "  route \(prefix) blackhole" + (attrs.isEmpty ? ";\n" : " {\(attrs) };\n")
            }
            text += "protocol static tern_vips\(v6 ? 6 : 4) {\n  \(family);\n" + routes.joined() + "}\n"
        }
        return text
    }
}
