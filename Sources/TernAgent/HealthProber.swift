// Health checks of backends, run from the host's network stack on the control thread (never on a
// worker): each check is a non-blocking socket the control loop advances every pass (about every
// 50 ms or sooner), so a thousand backends checked every second never hold up a reload or stats.
// tcp: the connection is accepted. http: `GET path` is answered with `expect_status`. dns: a query
// (". NS", over UDP) gets an answer with its id. Verdicts go through `HealthState` (rise, fall);
// changes are reported together, once per pass.

import TernConfig
import TernWire

public final class HealthProber {
    public struct Target: Sendable {
        public var key: BackendKey
        public var check: HealthConfig
    }

    final class Probe {
        let fd: Int32
        /// When the answer must have come: `timeout_ms` after the connect started, then (HTTP)
        /// after the request was sent, so each step is timed from when it was made.
        var deadline: Double
        var connected: Bool
        var request: [UInt8]
        var response: [UInt8] = []
        init(fd: Int32, deadline: Double, connected: Bool, request: [UInt8]) {
            self.fd = fd
            self.deadline = deadline
            self.connected = connected
            self.request = request
        }
    }

    public private(set) var targets: [Target] = []
    public private(set) var states: [BackendKey: HealthState] = [:]
    var due: [BackendKey: Double] = [:]
    var inFlight: [BackendKey: Probe] = [:]
    var queryID: UInt16 = 0x5445
    /// Called with the backends whose state changed in a pass: (backend, up, what the last check saw).
    let report: ([(key: BackendKey, up: Bool, detail: String)]) -> Void

    public init(report: @escaping ([(key: BackendKey, up: Bool, detail: String)]) -> Void) {
        self.report = report
    }

    deinit { for p in inFlight.values { ProbeSocket.close(p.fd) } }

    /// Every backend with a check (a reload calls this again: backends that stay keep their
    /// state, others start up).
    public func configure(_ config: TernConfig) {
        targets = config.vips.flatMap { v in
            v.backends.compactMap { b in b.health.map { Target(key: BackendKey(vip: v.name, address: b.address), check: $0) } }
        }
        let keys = Set(targets.map(\.key))
        states = states.filter { keys.contains($0.key) }
        due = due.filter { keys.contains($0.key) }
        for (key, probe) in inFlight where !keys.contains(key) {
            ProbeSocket.close(probe.fd)
            inFlight[key] = nil
        }
    }

    /// One pass: start the checks that are due, advance those in flight, report changes.
    public func step(now: Double) {
        var changes: [(key: BackendKey, up: Bool, detail: String)] = []
        func finish(_ t: Target, ok: Bool, _ detail: String) {
            if let p = inFlight.removeValue(forKey: t.key) { ProbeSocket.close(p.fd) }
            var s = states[t.key] ?? HealthState()
            if s.record(ok: ok, detail: detail, rise: t.check.rise, fall: t.check.fall) {
                changes.append((t.key, s.up, detail))
            }
            states[t.key] = s
        }
        for t in targets where inFlight[t.key] == nil && (due[t.key] ?? 0) <= now {
            due[t.key] = now + Double(t.check.intervalMilliseconds) / 1000
            let udp = t.check.check == .dns
            let (fd, error) = ProbeSocket.open(t.key.address, port: t.check.port, udp: udp)
            guard let fd else {
                finish(t, ok: false, error)
                continue
            }
            let probe = Probe(
                fd: fd, deadline: now + Double(t.check.timeoutMilliseconds) / 1000, connected: udp, request: request(t))
            inFlight[t.key] = probe
            if udp && !ProbeSocket.send(fd, probe.request) { finish(t, ok: false, "send failed") }
        }
        let waiting = targets.filter { inFlight[$0.key] != nil }
        let ready = ProbeSocket.poll(waiting.map { (inFlight[$0.key]!.fd, !inFlight[$0.key]!.connected) })
        for (t, r) in zip(waiting, ready) {
            guard let p = inFlight[t.key] else { continue }
            if r.ready || r.failed { advance(t, p, now: now, failed: r.failed, finish: finish) }
            if inFlight[t.key] != nil && now >= p.deadline {
                finish(t, ok: false, p.connected ? "no answer within \(t.check.timeoutMilliseconds) ms" : "connect timed out")
            }
        }
        if !changes.isEmpty { report(changes) }
    }

    func advance(_ t: Target, _ p: Probe, now: Double, failed: Bool, finish: (Target, Bool, String) -> Void) {
        // A success counts only if its answer came by the deadline: a loop that ran late (a long
        // reload, a stall) must not turn a slow backend's late answer into "up".
        func succeed(_ detail: String, data: Bool) {
            let age = ProbeSocket.answerAge(p.fd, udp: t.check.check == .dns, dataReceived: data) ?? 0
            if now - age > p.deadline {
                finish(t, false, "answered after the \(t.check.timeoutMilliseconds) ms timeout")
            } else {
                finish(t, true, detail)
            }
        }
        if !p.connected {
            if let e = ProbeSocket.connectError(p.fd) { return finish(t, false, "connect: \(e)") }
            if failed { return finish(t, false, "connect failed") }
            if t.check.check == .tcp { return succeed("connected", data: false) }
            let connectAge = ProbeSocket.answerAge(p.fd, udp: false, dataReceived: false) ?? 0
            if now - connectAge > p.deadline {
                return finish(t, false, "connected after the \(t.check.timeoutMilliseconds) ms timeout")
            }
            p.connected = true
            p.deadline = now + Double(t.check.timeoutMilliseconds) / 1000
            if !ProbeSocket.send(p.fd, p.request) { finish(t, false, "send failed") }
            return
        }
        let (bytes, error) = ProbeSocket.receive(p.fd)
        if let error { return finish(t, false, "receive: \(error)") }
        guard let bytes else { return }
        switch t.check.check {
        case .dns:
            let id = p.request.count >= 2 ? UInt16(p.request[0]) << 8 | UInt16(p.request[1]) : 0
            let answered = bytes.count >= 12 && UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id && bytes[2] & 0x80 != 0
            if answered { succeed("answered", data: true) } else { finish(t, false, "bad answer") }
        case .http:
            p.response += bytes.prefix(4096 - p.response.count)
            if let status = HealthProber.statusCode(p.response) {
                if status == t.check.expectStatus {
                    succeed("HTTP \(status)", data: true)
                } else {
                    finish(t, false, "HTTP \(status)")
                }
            } else if bytes.isEmpty || p.response.count >= 4096 {
                finish(t, false, "no HTTP status line")
            }
        case .tcp:
            succeed("connected", data: false)
        }
    }

    /// What the check sends: an HTTP request, a DNS query, or nothing (tcp).
    func request(_ t: Target) -> [UInt8] {
        switch t.check.check {
        case .tcp: return []
        case .http:
            let host = t.key.address.isV6 ? "[\(t.key.address)]" : "\(t.key.address)"
            return Array(
                "GET \(t.check.path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: tern-health\r\nConnection: close\r\n\r\n".utf8)
        case .dns:
            queryID &+= 1
            // Header (id, recursion desired, one question), then ". NS IN".
            return [UInt8(queryID >> 8), UInt8(queryID & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]
        }
    }

    /// The status code of an HTTP response's first line, once it is complete.
    static func statusCode(_ bytes: [UInt8]) -> Int? {
        guard let end = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = String(decoding: bytes[..<end], as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]), (100...599).contains(code) else {
            return 0
        }
        return code
    }
}
