// What the data plane should do: the running config plus the operator's runtime overrides. The
// snapshot spec is derived from it, never edited directly, so a reload and a drain go the same way.
//
// Backend states: `active` (the config's weight), `draining` (weight 0: established flows stay, new
// flows go elsewhere). A later health checker adds `down` (no new flows, established flows move).

import TernBalancing
import TernControl
import TernWire

/// A backend of one VIP: overrides are per VIP, since one address may serve several VIPs.
public struct BackendKey: Hashable, Sendable, CustomStringConvertible {
    /// The VIP's name, `192.0.2.10:80/tcp`.
    public var vip: String
    public var address: IPAddress

    public init(vip: String, address: IPAddress) {
        self.vip = vip
        self.address = address
    }

    public var description: String { "\(address) of \(vip)" }
}

public enum BackendState: String, Sendable {
    case active
    /// Weight 0 by operator's request: established flows stay, new flows go elsewhere.
    case draining
}

public struct DesiredState: Sendable {
    public private(set) var config: TernConfig
    /// Runtime overrides; a backend absent here is `active`.
    public private(set) var overrides: [BackendKey: BackendState] = [:]

    public init(config: TernConfig) { self.config = config }

    /// A reload: the new config; overrides stay for backends still in it and are dropped for those
    /// that left. Returns the overrides dropped.
    @discardableResult
    public mutating func replaceConfig(_ next: TernConfig) -> [BackendKey] {
        config = next
        let present = Set(next.vips.flatMap { v in v.backends.map { BackendKey(vip: v.name, address: $0.address) } })
        let gone = overrides.keys.filter { !present.contains($0) }.sorted { $0.description < $1.description }
        for key in gone { overrides[key] = nil }
        return gone
    }

    /// The backends `address` names: of every VIP that has it, or of `vip` only. Empty when none.
    public func backends(_ address: IPAddress, vip: String? = nil) -> [BackendKey] {
        config.vips.filter { v in (vip == nil || v.name == vip) && v.backends.contains { $0.address == address } }
            .map { BackendKey(vip: $0.name, address: address) }
    }

    /// Sets the state of backends; `active` removes the override.
    public mutating func set(_ keys: [BackendKey], to state: BackendState) {
        for key in keys { overrides[key] = state == .active ? nil : state }
    }

    public func state(of key: BackendKey) -> BackendState { overrides[key] ?? .active }

    /// The weight the data plane uses: 0 while draining, else the config's.
    public func effectiveWeight(_ backend: BackendConfig, of vip: VIPConfig) -> Int {
        state(of: BackendKey(vip: vip.name, address: backend.address)) == .draining ? 0 : backend.weight
    }

    /// What the forwarding snapshot is built from.
    public var snapshotSpec: SnapshotSpec {
        var spec = config.snapshotSpec
        for (i, v) in config.vips.enumerated() {
            spec.services[i].backends = v.backends.map { ($0.address, effectiveWeight($0, of: v)) }
        }
        return spec
    }

    /// VIPs whose every backend has weight 0 (by the config or by drains): they drop new flows
    /// (`no_backend`), which a reload or a drain must say.
    public var vipsWithoutBackends: [String] {
        config.vips.filter { v in v.backends.allSatisfy { effectiveWeight($0, of: v) == 0 } }.map(\.name)
    }
}
