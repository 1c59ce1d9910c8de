// A reload, start to end: read and validate the file, refuse restart-only changes and what this
// machine cannot hold, carry the runtime overrides over, build and publish. Any failure keeps the
// running config. Also the way runtime overrides (drains) reach the data plane.

import TernConfig

/// How a reload (or an override) ended: one log line, or several for a config error.
public struct ReloadResult: Sendable {
    public var ok: Bool
    public var message: String
    /// Seconds since the epoch when it ended.
    public var time: Double
}

public final class Reloader {
    public let configPath: String
    public private(set) var desired: DesiredState
    public let publisher: Publisher
    /// Bytes this machine can still give (MemAvailable), nil when unknown.
    let availableMemory: () -> Int?
    let clock: () -> Double
    let wallClock: () -> Double
    public private(set) var succeeded: UInt64 = 0
    public private(set) var failed: UInt64 = 0
    public private(set) var last: ReloadResult?
    /// When a reload last succeeded (Unix time).
    public private(set) var lastSuccessTime: Double?
    /// Told the new config after each successful reload (the health checker follows it).
    public var didReload: ((TernConfig) -> Void)?
    /// A fleet node's site document (from etcd, or its cache) and the name errors give it: a
    /// reload then takes the file's node-local tables and the document's VIPs.
    public var site: (document: [UInt8], name: String)?

    public init(
        configPath: String, desired: DesiredState, publisher: Publisher, availableMemory: @escaping () -> Int?,
        clock: @escaping () -> Double, wallClock: @escaping () -> Double
    ) {
        self.configPath = configPath
        self.desired = desired
        self.publisher = publisher
        self.availableMemory = availableMemory
        self.clock = clock
        self.wallClock = wallClock
    }

    /// Re-reads the config file and publishes it; `shouldStop` may abandon the build.
    @discardableResult
    public func reload(shouldStop: () -> Bool = { false }) -> ReloadResult {
        let next: TernConfig
        do {
            if let site {
                next = try ConfigLoader.load(path: configPath, site: site.document, siteName: site.name)
            } else {
                next = try ConfigLoader.load(path: configPath)
            }
        } catch {
            return finish(false, "reload failed, keeping the running config:\n" + error.description)
        }
        let restartOnly = desired.config.restartOnlyChanges(to: next)
        guard restartOnly.isEmpty else {
            return finish(
                false,
                "reload refused, keeping the running config: restart-only keys changed: \(restartOnly.joined(separator: ", "))")
        }
        if let available = availableMemory() {
            let problems = MemoryBudget.reloadProblems(next, available: available)
            if !problems.isEmpty {
                return finish(
                    false,
                    "reload refused, keeping the running config:\n"
                        + ConfigError(file: configPath, problems: problems).description)
            }
        }
        var candidate = desired
        let dropped = candidate.replaceConfig(next)
        guard let timing = publisher.publish(candidate.snapshotSpec, shouldStop: shouldStop, clock: clock) else {
            return finish(
                false, "reload abandoned: a stop signal arrived while the tables were built; keeping the running config")
        }
        desired = candidate
        didReload?(next)
        var message =
            "reload ok: \(next.vips.count) VIPs, \(next.backendCount) backends; built in \(ms(timing.buildSeconds)) ms "
            + "(\(timing.tablesBuiltText), the rest unchanged), published in \(ms(timing.publishSeconds)) ms "
            + "(generation \(timing.generation))"
        if !next.importWarnings.isEmpty {
            message += "; \(next.importWarnings.count) import notes (ternctl check \(escapedForMessage(configPath)) lists them)"
        }
        if !dropped.isEmpty {
            message += "; overrides dropped with their backends: \(dropped.map(\.description).joined(separator: ", "))"
        }
        message += noBackendsNote
        return finish(true, message)
    }

    /// Sets backends' runtime state (drain, undrain) and publishes the result.
    @discardableResult
    public func setState(_ keys: [BackendKey], to state: BackendState) -> ReloadResult {
        let names = keys.map(\.description).joined(separator: ", ")
        return publishChange("\(state == .draining ? "drained" : "undrained") \(names)") { $0.set(keys, to: state) }
    }

    /// Health checks' verdicts: marks the backends up or down and publishes the result (a down
    /// backend leaves the snapshot: no packets, its flows move).
    @discardableResult
    public func setHealth(_ changes: [(key: BackendKey, up: Bool)]) -> ReloadResult {
        let names = changes.map { "\($0.key) \($0.up ? "up" : "DOWN")" }.joined(separator: ", ")
        return publishChange("health: \(names)") { d in
            for c in changes { d.setHealth(c.key, up: c.up) }
        }
    }

    /// A runtime change of the desired state (not a reload): applied to a copy, published, kept
    /// only once published.
    func publishChange(_ what: String, _ change: (inout DesiredState) -> Void) -> ReloadResult {
        var candidate = desired
        change(&candidate)
        guard let timing = publisher.publish(candidate.snapshotSpec, shouldStop: { false }, clock: clock) else {
            return ReloadResult(ok: false, message: "\(what): not published", time: wallClock())
        }
        desired = candidate
        return ReloadResult(
            ok: true, message: "\(what) (generation \(timing.generation), \(timing.tablesBuiltText))" + noBackendsNote,
            time: wallClock())
    }

    /// Said after every change that leaves a VIP no backend to offer new flows.
    var noBackendsNote: String {
        let empty = desired.vipsWithoutBackends
        return empty.isEmpty ? "" : "; WARNING: no backend takes new flows for \(empty.joined(separator: ", "))"
    }

    func finish(_ ok: Bool, _ message: String) -> ReloadResult {
        if ok { succeeded += 1 } else { failed += 1 }
        let result = ReloadResult(ok: ok, message: message, time: wallClock())
        last = result
        if ok { lastSuccessTime = result.time }
        return result
    }

    func ms(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }
}
