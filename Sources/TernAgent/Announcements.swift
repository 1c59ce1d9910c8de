// Which VIP prefixes this node should announce, and the lines that tell an existing BGP speaker
// (ExaBGP's process API) to do so. Tern speaks no BGP itself. A prefix (an address: /32 or /128)
// is announced while some VIP on it is up: enough live backends (`min_healthy`) and a data plane
// that is not shutting down; it is withdrawn otherwise, and all of them when ternd is gone.

import TernControl
import TernWire

public enum Announcements {
    /// Prefix (`192.0.2.10/32`) to whether it should be announced now.
    public static func wanted(_ desired: DesiredState, stopping: Bool) -> [String: Bool] {
        var out: [String: Bool] = [:]
        for v in desired.config.vips {
            let prefix = "\(v.address)/\(v.address.isV6 ? 128 : 32)"
            let live = desired.liveBackends(of: v).filter { desired.effectiveWeight($0, of: v) > 0 }.count
            let up = !stopping && live >= v.minHealthy
            out[prefix] = (out[prefix] ?? false) || up
        }
        return out
    }
}

/// The feed's memory of what it told the speaker, and the commands that bring the speaker to a
/// new wanted state (announce what became up, withdraw what went down or left the config).
public struct AnnouncementFeed: Sendable {
    public private(set) var announced: Set<String> = []
    let suffix: String

    /// `attributes`: what follows the prefix on each announce (default `next-hop self`).
    public init(attributes: String = "next-hop self") { suffix = attributes }

    public mutating func update(_ wanted: [String: Bool]) -> [String] {
        var lines: [String] = []
        for prefix in announced.sorted() where wanted[prefix] != true {
            lines.append("withdraw route \(prefix) \(suffix)")
            announced.remove(prefix)
        }
        for (prefix, up) in wanted.sorted(by: { $0.key < $1.key }) where up && !announced.contains(prefix) {
            lines.append("announce route \(prefix) \(suffix)")
            announced.insert(prefix)
        }
        return lines
    }

    /// ternd is gone or the feed stops: withdraw everything (fail closed).
    public mutating func withdrawAll() -> [String] { update([:]) }
}
