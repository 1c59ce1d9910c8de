// What a reload may change: everything but `[dataplane]` and `[[port]]`, which shape queues,
// mempools and flow tables at start-up, and `[control]` and `[metrics]`, where ternd listens.

extension TernConfig {
    /// Key paths of restart-only settings that differ in `next` (empty: the reload may proceed).
    public func restartOnlyChanges(to next: TernConfig) -> [String] {
        var keys: [String] = []
        if control.socket != next.control.socket { keys.append("control.socket") }
        if metrics != next.metrics { keys.append("metrics.listen") }
        let a = dataplane
        let b = next.dataplane
        if a.workers != b.workers { keys.append("dataplane.workers") }
        if a.burstSize != b.burstSize { keys.append("dataplane.burst_size") }
        if a.flowTableEntries != b.flowTableEntries { keys.append("dataplane.flow_table_entries") }
        if a.tcpIdleTimeoutSeconds != b.tcpIdleTimeoutSeconds { keys.append("dataplane.tcp_idle_timeout_s") }
        if a.udpIdleTimeoutSeconds != b.udpIdleTimeoutSeconds { keys.append("dataplane.udp_idle_timeout_s") }
        if ports.count != next.ports.count { return keys + ["port (\(ports.count) ports, now \(next.ports.count))"] }
        for (i, (p, q)) in zip(ports, next.ports).enumerated() {
            if p.device != q.device { keys.append("port[\(i)].device") }
            if p.gatewayMAC != q.gatewayMAC { keys.append("port[\(i)].gateway_mac") }
            if p.mac != q.mac { keys.append("port[\(i)].mac") }
            if p.mtu != q.mtu { keys.append("port[\(i)].mtu") }
            if p.backendDevice != q.backendDevice { keys.append("port[\(i)].backend_device") }
        }
        return keys
    }
}
