// A fleet of nodes run from etcd. Keys under the site's prefix:
//   PREFIX/config          the site document: TOML with only [[vip]] and [maglev] (one key, so a change
//                          of the whole site is one revision, validated whole, compared-and-swapped)
//   PREFIX/drains/B[/VIP]  one key per fleet drain (two operators' drains never conflict)
//   PREFIX/nodes/NAME      each node's report, on a lease: it goes when the node does
// Two halves: `FleetFollower` runs on its own thread (every etcd call blocks, with a deadline) and
// `FleetApplier` on the control thread (the only one that reloads). The follower polls the store
// every poll_ms, leaves what it read in a locked box, and asks the control thread ("fleet-sync",
// through ControlExchange) to apply it; the answer is this node's report, which the follower
// writes back. etcd away: nothing is applied or dropped, the node forwards with what it has.

import Foundation
import Logging
import NIOConcurrencyHelpers
import TernConfig
import TernWire

/// A drain written by `ternctl fleet drain`: a backend, in one VIP or all of them.
public struct FleetDrain: Codable, Sendable, Hashable {
    public var backend: String
    public var vip: String?
    public init(backend: String, vip: String?) {
        self.backend = backend
        self.vip = vip
    }

    /// Its key under the prefix.
    public func key(prefix: String) -> String { "\(prefix)/drains/\(backend)" + (vip.map { "/\($0)" } ?? "") }
}

/// What a node reports under `PREFIX/nodes/NAME` (JSON), and what `ternctl fleet status` shows.
public struct FleetNodeReport: Codable, Sendable, Equatable {
    public var node: String
    /// The site document's revision this node runs (0: none: its file's own VIPs).
    public var revision: Int64
    public var generation: Int
    /// Per VIP name, its table fingerprint.
    public var fingerprints: [String: String]
    public var announced: [String]
    /// Health verdicts by "VIP backend": true when up.
    public var health: [String: Bool]
    /// Fleet drains in force here.
    public var drains: [String]
    /// Why the newest site document was refused here ("" when it runs).
    public var refused: String
    public var time: Double
}

/// What the follower last read from etcd.
struct FleetSnapshot: Sendable {
    var revision: Int64 = 0
    var document: [UInt8]? = nil
    var drains: Set<FleetDrain> = []
    /// Every live node's report (this one's included): the health quorum counts them.
    var reports: [FleetNodeReport] = []
    var reachable = false
    var error = ""
}

/// The control thread's half: applies what the follower read through the same reload path as a
/// SIGHUP, keeps the last applied document on disk, and says what this node runs.
public final class FleetApplier {
    let config: FleetConfig
    let reloader: Reloader
    let commands: ControlCommands
    let log: (Logger.Level, String) -> Void
    let wallClock: () -> Double
    let inbox = NIOLockedValueBox(FleetSnapshot())
    /// The site revision running (0: none), and the last one refused (logged once).
    public private(set) var applied: Int64 = 0
    var refusedRevision: Int64 = 0
    var refusal = ""
    var appliedDrains: Set<FleetDrain> = []
    /// Whether the last poll reached etcd; a change is logged once.
    public private(set) var reachable = true
    public private(set) var lastError = ""

    public init(
        config: FleetConfig, reloader: Reloader, commands: ControlCommands, log: @escaping (Logger.Level, String) -> Void,
        wallClock: @escaping () -> Double, startedWith revision: Int64
    ) {
        self.config = config
        self.reloader = reloader
        self.commands = commands
        self.log = log
        self.wallClock = wallClock
        applied = revision
    }

    public var state: FleetState { FleetState(revision: applied, reachable: reachable, error: lastError, refused: refusal) }

    /// The key of the site document.
    public static func documentKey(_ prefix: String) -> String { "\(prefix)/config" }
    public static func siteName(_ prefix: String, revision: Int64) -> String {
        "etcd \(documentKey(prefix)) (revision \(revision))"
    }

    /// On the control thread: applies what the follower left, returns this node's report.
    public func sync(node: String) -> FleetNodeReport {
        let s = inbox.withLockedValue { $0 }
        if s.reachable != reachable {
            reachable = s.reachable
            log(
                s.reachable ? .notice : .error,
                s.reachable
                    ? "fleet: etcd reachable again; applying what changed meanwhile"
                    : "fleet: etcd unreachable (\(s.error)); forwarding with site revision \(applied) until it is back")
        }
        lastError = s.error
        if s.reachable, let document = s.document, s.revision != applied, s.revision != refusedRevision {
            apply(document, revision: s.revision)
        }
        if s.reachable {
            applyDrains(s.drains)
            applyQuorum(s.reports)
        }
        return report(node: node)
    }

    func apply(_ document: [UInt8], revision: Int64) {
        let previous = reloader.site
        reloader.site = (document, FleetApplier.siteName(config.prefix, revision: revision))
        let result = reloader.reload()
        if result.ok {
            applied = revision
            refusal = ""
            log(.info, "fleet: site revision \(revision): \(result.message)")
            // A drain whose backend left went with it; it is applied again if the backend returns.
            appliedDrains = appliedDrains.filter { d in
                IPAddress(d.backend).map { !reloader.desired.backends($0, vip: d.vip).isEmpty } ?? false
            }
            writeCache(document, revision: revision)
        } else {
            reloader.site = previous
            refusedRevision = revision
            refusal = result.message
            log(.error, "fleet: site revision \(revision) refused: \(result.message)")
        }
    }

    func applyDrains(_ drains: Set<FleetDrain>) {
        guard drains != appliedDrains else { return }
        for (set, state) in [
            (drains.subtracting(appliedDrains), BackendState.draining), (appliedDrains.subtracting(drains), .active),
        ] {
            for d in set.sorted(by: { $0.key(prefix: "") < $1.key(prefix: "") }) {
                guard let address = IPAddress(d.backend) else { continue }
                let keys = reloader.desired.backends(address, vip: d.vip)
                if keys.isEmpty { continue }
                let r = reloader.setState(keys, to: state)
                log(r.ok ? .info : .error, "fleet: \(r.message)")
            }
        }
        appliedDrains = drains
    }

    /// `quorum = "fleet"` VIPs: a backend is down when more than half of the live nodes' reports
    /// say so (a node that has not reported yet counts as neither).
    func applyQuorum(_ reports: [FleetNodeReport]) {
        guard !reports.isEmpty else { return }
        var changes: [(key: BackendKey, up: Bool)] = []
        for v in reloader.desired.config.vips where v.fleetHealthQuorum {
            for b in v.backends where b.health != nil {
                let key = BackendKey(vip: v.name, address: b.address)
                let downs = reports.filter { $0.health["\(v.name) \(b.address)"] == false }.count
                let up = downs * 2 <= reports.count
                if reloader.desired.down.contains(key) == up { changes.append((key, up)) }
            }
        }
        guard !changes.isEmpty else { return }
        let r = reloader.setHealth(changes)
        for c in changes {
            log(c.up ? .info : .warning, "fleet health quorum: \(c.key) is \(c.up ? "up" : "DOWN") (\(reports.count) live nodes)")
        }
        log(r.ok ? .info : .error, "fleet: \(r.message)")
    }

    /// The cache: the document with its revision in a first comment line, written whole and renamed.
    func writeCache(_ document: [UInt8], revision: Int64) {
        let text = Array(FleetApplier.cacheHeader(revision).utf8) + document
        let tmp = config.cache + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(text), attributes: [.posixPermissions: 0o600]),
            rename(tmp, config.cache) == 0
        else {
            log(.warning, "fleet: cannot write the cache \(config.cache): a start while etcd is away will use the file's VIPs")
            return
        }
    }

    static func cacheHeader(_ revision: Int64) -> String { "# tern fleet revision \(revision)\n" }

    /// A cache file's revision and document, if it is one.
    public static func readCache(_ path: String) -> (revision: Int64, document: [UInt8])? {
        guard case .success(let bytes) = RegularFile.read(path, limit: ConfigLoader.maxFileBytes),
            let newline = bytes.firstIndex(of: 0x0A)
        else { return nil }
        let first = String(decoding: bytes[..<newline], as: UTF8.self)
        guard first.hasPrefix("# tern fleet revision "), let revision = Int64(first.dropFirst("# tern fleet revision ".count))
        else { return nil }
        return (revision, Array(bytes[(newline + 1)...]))
    }

    func report(node: String) -> FleetNodeReport {
        let vips = commands.showVIPs()
        var health: [String: Bool] = [:]
        for v in reloader.desired.config.vips {
            for b in v.backends where b.health != nil {
                health["\(v.name) \(b.address)"] = commands.info.health(BackendKey(vip: v.name, address: b.address))?.up ?? true
            }
        }
        return FleetNodeReport(
            node: node, revision: applied, generation: vips.generation,
            fingerprints: Dictionary(vips.vips.map { ($0.vip, $0.fingerprint) }, uniquingKeysWith: { a, _ in a }),
            announced: vips.vips.filter(\.announced).map(\.vip),
            health: health, drains: appliedDrains.map { $0.backend + ($0.vip.map { " \($0)" } ?? "") }.sorted(),
            refused: refusal, time: wallClock())
    }
}

/// The fleet thread: polls etcd, hands what it read to the control thread, publishes the node's
/// report on a lease.
public final class FleetFollower: @unchecked Sendable {
    let config: FleetConfig
    let node: String
    let client: EtcdClient
    let applier: FleetApplier
    let exchange: ControlExchange
    let stop = NIOLockedValueBox(false)
    var lease: Int64 = 0
    /// The report last written (its time aside): an unchanged one only has its lease kept alive,
    /// so a quiet site adds no revisions to etcd's history.
    var published: FleetNodeReport?
    /// When the lease was last renewed.
    var renewed = Date.distantPast
    var thread: Thread?

    public init(config: FleetConfig, node: String, applier: FleetApplier, exchange: ControlExchange, client: EtcdClient) {
        self.config = config
        self.node = node
        self.applier = applier
        self.exchange = exchange
        self.client = client
    }

    public func start() {
        let t = Thread { [self] in run() }
        t.name = "tern-fleet"
        thread = t
        t.start()
    }

    /// Stops polling; the node's report is deleted so `fleet status` does not wait for its lease.
    public func stopAndWithdraw() {
        stop.withLockedValue { $0 = true }
        while thread?.isFinished == false { usleep(10_000) }
        _ = try? client.delete("\(config.prefix)/nodes/\(node)")
    }

    func run() {
        while !stop.withLockedValue({ $0 }) {
            let started = Date()
            let snapshot = poll()
            applier.inbox.withLockedValue { $0 = snapshot }
            // Short: at shutdown the control thread stops answering before it stops this thread.
            if let report = exchange.ask("fleet-sync", as: FleetNodeReport.self, timeoutSeconds: 1), snapshot.reachable {
                publish(report)
            }
            let left = Double(config.pollMilliseconds) / 1000 - Date().timeIntervalSince(started)
            if left > 0 { usleep(UInt32(left * 1_000_000)) }
        }
    }

    /// One read of the site: the document and the drains (the last good document stays when etcd
    /// cannot be reached).
    func poll() -> FleetSnapshot {
        var s = applier.inbox.withLockedValue { $0 }
        do {
            // One read of everything under the prefix: one request (and one TLS handshake) a poll.
            let (kvs, _) = try client.range("\(config.prefix)/", prefix: true)
            let decoder = JSONDecoder()
            let under = { (folder: String) in kvs.filter { $0.key.hasPrefix("\(self.config.prefix)/\(folder)/") } }
            s.reports = under("nodes").compactMap { try? decoder.decode(FleetNodeReport.self, from: Data($0.value)) }
            if let kv = kvs.first(where: { $0.key == FleetApplier.documentKey(config.prefix) }) {
                s.document = kv.value
                s.revision = kv.modRevision
            }
            s.drains = Set(under("drains").compactMap { try? decoder.decode(FleetDrain.self, from: Data($0.value)) })
            s.reachable = true
            s.error = ""
        } catch {
            s.reachable = false
            s.error = error.description
        }
        return s
    }

    func publish(_ report: FleetNodeReport) {
        var unchanged = published
        unchanged?.time = report.time
        do {
            // The lease is renewed three times per TTL, not every poll.
            let renew = Date().timeIntervalSince(renewed) >= Double(config.leaseSeconds) / 3
            if lease != 0 && !renew && unchanged == report { return }
            let alive = lease != 0 ? (renew ? try client.keepAlive(lease) : true) : false
            if renew { renewed = Date() }
            if alive && unchanged == report { return }
            if !alive { lease = try client.grantLease(ttl: config.leaseSeconds) }
            guard let json = try? JSONEncoder().encode(report) else { return }
            try client.put("\(config.prefix)/nodes/\(node)", Array(json), lease: lease)
            published = report
        } catch {
            lease = 0
            published = nil
        }
    }
}

/// What a fleet node starts with: the site document from etcd; if etcd cannot be reached, the
/// cached one; if there is none (or it no longer validates), the file's own VIPs. It says which.
public enum FleetStart {
    public struct Choice {
        public var config: TernConfig
        public var site: (document: [UInt8], name: String)?
        public var revision: Int64
        public var source: String
    }

    public static func choose(_ file: TernConfig, path: String, log: (Logger.Level, String) -> Void) -> Choice {
        guard let fleet = file.fleet else { return Choice(config: file, site: nil, revision: 0, source: "the file") }
        var candidates: [(document: [UInt8], revision: Int64, source: String)] = []
        do {
            let (kvs, _) = try EtcdClient(fleet).range(FleetApplier.documentKey(fleet.prefix))
            if let kv = kvs.first { candidates.append((kv.value, kv.modRevision, "etcd")) }
        } catch {
            log(.warning, "fleet: etcd unreachable at start (\(error.description))")
        }
        if let cached = FleetApplier.readCache(fleet.cache) {
            candidates.append((cached.document, cached.revision, "the cache \(fleet.cache)"))
        }
        for c in candidates {
            let name = FleetApplier.siteName(fleet.prefix, revision: c.revision)
            do {
                let config = try ConfigLoader.load(path: path, site: c.document, siteName: name)
                return Choice(
                    config: config, site: (c.document, name), revision: c.revision, source: "\(c.source), revision \(c.revision)")
            } catch {
                log(.error, "fleet: the site document from \(c.source) is refused:\n\(error.description)")
            }
        }
        return Choice(config: file, site: nil, revision: 0, source: "the file's own VIPs (no site document to use)")
    }

    /// This node's name in the fleet: `[fleet] node`, else the host name.
    public static func nodeName(_ fleet: FleetConfig) -> String {
        if let node = fleet.node { return node }
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
