// `show-vips` and `show-backends`: the running VIPs and their backends as the snapshot routes
// them (Maglev slots, share, fingerprint) with their packets and new flows since start.

import TernBalancing
import TernConfig
import TernTelemetry
import TernWire

extension ControlCommands {
    /// Each configured backend of a VIP (config order): its slots in the running Maglev table (0
    /// when it is down, and so not in the table), state, last health check, and the packets and
    /// new flows it has had since ternd started (across reloads).
    func backendRows(vip: VIPConfig, index v: Int, counts: [IPAddress: PacketTotals.Entry]) -> [BackendRow] {
        let snapshot = reloader.publisher.cell.current
        let record = snapshot.pointee.vips[v]
        var slots: [IPAddress: Int] = [:]
        var running: [IPAddress: Int] = [:]  // weight in the running table
        for slot in snapshot.pointee.table(vip: v) where slot != Maglev.emptySlot {
            slots[snapshot.pointee.backends[record.firstBackend + Int(slot)].address, default: 0] += 1
        }
        for i in 0..<record.backendCount {
            let b = snapshot.pointee.backends[record.firstBackend + i]
            running[b.address] = b.weight
        }
        let size = Double(snapshot.pointee.tableSize)
        return vip.backends.map { b in
            let key = BackendKey(vip: vip.name, address: b.address)
            let n = slots[b.address] ?? 0
            return BackendRow(
                address: b.address.description, weight: b.weight, effectiveWeight: running[b.address] ?? 0,
                state: reloader.desired.state(of: b, of: vip).rawValue, slots: n, share: Double(n) / size,
                packets: counts[b.address]?.packets ?? 0, newFlows: counts[b.address]?.newFlows ?? 0,
                bytes: counts[b.address]?.bytes ?? 0,
                health: info.health(key)?.lastResult ?? (b.health == nil ? "not checked" : ""))
        }
    }

    func showBackends(vip: String?) -> ControlResponse {
        let vips = reloader.desired.config.vips
        if let vip, !vips.contains(where: { $0.name == vip }) { return .failure("no VIP \(escapedForMessage(vip))") }
        let counts = info.stats.publisher.totals().byVIP
        let rows = vips.enumerated().filter { vip == nil || $0.element.name == vip }.map { i, v in
            VIPBackends(vip: v.name, backends: backendRows(vip: v, index: i, counts: counts[v.name] ?? [:]))
        }
        return .backends(BackendsReply(vips: rows))
    }

    /// Each running VIP's table fingerprint (`ForwardingSnapshot.fingerprint`), as 16 hex digits.
    public func tableFingerprints() -> [String: String] {
        let generation = reloader.publisher.generation
        if let f = fingerprints, f.generation == generation { return f.values }
        let snapshot = reloader.publisher.cell.current
        var values: [String: String] = [:]
        for v in 0..<snapshot.pointee.vips.count {
            let hex = String(snapshot.pointee.fingerprint(vip: v), radix: 16)
            values[snapshot.pointee.vips[v].name] = String(repeating: "0", count: 16 - hex.count) + hex
        }
        fingerprints = (generation, values)
        return values
    }

    func showVIPs() -> VIPsReply {
        let c = reloader.desired.config
        let fingerprints = tableFingerprints()
        let wanted = Announcements.wanted(reloader.desired, withdrawAll: info.withdrawing)
        let counts = Dictionary(info.stats.publisher.totals().vips.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = c.vips.map { v in
            VIPRow(
                vip: v.name, address: v.address.description, prefix: v.prefix, port: Int(v.port), protocol: v.protocolName,
                encap: v.encapsulation == .gue ? "gue" : "ipip", guePort: Int(v.guePort), backends: v.backends.count,
                hash: v.hashName, quic: v.quic, clampMSS: v.clampMSS,
                backendsTakingNewFlows: v.backends.filter { reloader.desired.effectiveWeight($0, of: v) > 0 }.count,
                tableSize: c.tableSize, fingerprint: fingerprints[v.name] ?? "", packets: counts[v.name]?.packets ?? 0,
                newFlows: counts[v.name]?.newFlows ?? 0, bytes: counts[v.name]?.bytes ?? 0,
                announced: wanted[v.prefix]?.up == true)
        }
        return VIPsReply(vips: rows, generation: Int(reloader.publisher.generation))
    }
}
