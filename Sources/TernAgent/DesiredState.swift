// What the data plane should do: the running config plus the operator's runtime overrides. The
// snapshot spec is derived from it, never edited directly, so a reload and a drain go the same way.
//
// Backend states: `active` (the config's weight), `draining` (weight 0, by the config's `state` or
// `ternctl drain`: established flows stay, new flows go elsewhere), `down` (failed its health
// check: left out of the snapshot, so it gets no packets at all and its flows move to live
// backends, Maglev moving as few as it can).

import TernBalancing
import TernConfig
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
    /// Failed its health check: no packets at all.
    case down
}

public struct DesiredState: Sendable {
    public private(set) var config: TernConfig
    /// Runtime overrides; a backend absent here is `active`.
    public private(set) var overrides: [BackendKey: BackendState] = [:]
    /// Backends their health checks found down.
    public private(set) var down: Set<BackendKey> = []

    public init(config: TernConfig) { self.config = config }

    /// A reload: the new config; overrides stay for backends still in it and are dropped for those
    /// that left. Returns the overrides dropped.
    @discardableResult
    public mutating func replaceConfig(_ next: TernConfig) -> [BackendKey] {
        config = next
        let present = Set(next.vips.flatMap { v in v.backends.map { BackendKey(vip: v.name, address: $0.address) } })
        let gone = overrides.keys.filter { !present.contains($0) }.sorted { $0.description < $1.description }
        for key in gone { overrides[key] = nil }
        down = down.filter { present.contains($0) }
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

    /// Marks backends up or down (their health checks' verdict).
    public mutating func setHealth(_ key: BackendKey, up: Bool) {
        if up { down.remove(key) } else { down.insert(key) }
    }

    /// Down beats draining beats active; the config's `state = "draining"` counts as a drain.
    public func state(of backend: BackendConfig, of vip: VIPConfig) -> BackendState {
        let key = BackendKey(vip: vip.name, address: backend.address)
        if down.contains(key) { return .down }
        if let o = overrides[key] { return o }
        return backend.draining ? .draining : .active
    }

    /// The same by key (looks the backend up in the config; `.active` when it is not there).
    public func state(of key: BackendKey) -> BackendState {
        guard let v = config.vips.first(where: { $0.name == key.vip }),
            let b = v.backends.first(where: { $0.address == key.address })
        else { return overrides[key] ?? .active }
        return state(of: b, of: v)
    }

    /// The weight the data plane uses: 0 while draining (by the config or an override), else the config's.
    public func effectiveWeight(_ backend: BackendConfig, of vip: VIPConfig) -> Int {
        backend.draining || overrides[BackendKey(vip: vip.name, address: backend.address)] == .draining ? 0 : backend.weight
    }

    /// The backends of a VIP the snapshot holds: all but those down, unless every one is down
    /// and the VIP says `all_down = "keep"` (then all, as if up).
    public func liveBackends(of v: VIPConfig) -> [BackendConfig] {
        let up = v.backends.filter { !down.contains(BackendKey(vip: v.name, address: $0.address)) }
        return up.isEmpty && v.health?.keepWhenAllDown == true ? v.backends : up
    }

    /// Up: `min_healthy` live backends taking new flows. Only then is its prefix announced
    /// (`Announcements`) and does its address answer pings.
    public func isUp(_ v: VIPConfig) -> Bool {
        liveBackends(of: v).filter { effectiveWeight($0, of: v) > 0 }.count >= v.minHealthy
    }

    /// What the forwarding snapshot is built from.
    public var snapshotSpec: SnapshotSpec {
        var spec = config.snapshotSpec
        for (i, v) in config.vips.enumerated() {
            spec.services[i].backends = liveBackends(of: v).map { ($0.address, effectiveWeight($0, of: v)) }
            spec.services[i].isUp = isUp(v)
        }
        return spec
    }

    /// VIPs whose every backend has weight 0 (by the config or by drains): they drop new flows
    /// (`no_backend`), which a reload or a drain must say.
    public var vipsWithoutBackends: [String] {
        config.vips.filter { v in liveBackends(of: v).allSatisfy { effectiveWeight($0, of: v) == 0 } }.map(\.name)
    }
}
