import Foundation
import Logging
import Synchronization
import Testing

@testable import TernAgent
@testable import TernBalancing
@testable import TernConfig
@testable import TernDataplane
@testable import TernTelemetry
@testable import TernTestSupport
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

let base = """
    [node]
    name = "agent"
    tunnel_source_v4 = "10.0.0.10"
    [[port]]
    device = "net_ring0"
    gateway_mac = "02:00:00:00:00:fe"
    [maglev]
    table_size = 1009
    [[vip]]
    address = "192.0.2.10"
    port = 80
    protocol = "tcp"
    [[vip.backend]]
    address = "10.1.0.1"
    [[vip.backend]]
    address = "10.1.0.2"
    [[vip]]
    address = "192.0.2.11"
    port = 53
    protocol = "udp"
    [[vip.backend]]
    address = "10.1.0.1"

    """

let web = "192.0.2.10:80/tcp"
let dns = "192.0.2.11:53/udp"

func parse(_ text: String) throws -> TernConfig { try ConfigLoader.parse(text, file: "agent.toml") }

/// A config file the reloader reads, rewritten by the test.
final class ConfigFile {
    let path = "/tmp/tern-agent-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).toml"
    init(_ text: String) { write(text) }
    func write(_ text: String) {
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }
    deinit { unlink(path) }
}

func makeReloader(_ file: ConfigFile, memory: Int? = nil) throws -> Reloader {
    let config = try ConfigLoader.load(path: file.path)
    let desired = DesiredState(config: config)
    let publisher = Publisher(spec: desired.snapshotSpec, workers: 1)
    return Reloader(
        configPath: file.path, desired: desired, publisher: publisher, availableMemory: { memory }, clock: { 0 }, wallClock: { 0 }
    )
}

/// The weight each backend of a VIP has in the running snapshot.
func publishedWeights(_ r: Reloader, vip: String) -> [IPAddress: Int] {
    let s = r.publisher.cell.current
    var out: [IPAddress: Int] = [:]
    for v in 0..<s.pointee.vips.count where s.pointee.vips[v].name == vip {
        let record = s.pointee.vips[v]
        for b in record.firstBackend..<(record.firstBackend + record.backendCount) {
            out[s.pointee.backends[b].address] = s.pointee.backends[b].weight
        }
    }
    return out
}

@Suite struct DesiredStateTests {
    @Test func aDrainSetsTheWeightToZeroForThatVIPOnly() throws {
        var d = DesiredState(config: try parse(base))
        d.set(d.backends(IPAddress("10.1.0.1")!, vip: web), to: .draining)
        let spec = d.snapshotSpec
        #expect(spec.services[0].backends.map(\.weight) == [0, 100])
        #expect(spec.services[1].backends.map(\.weight) == [100])
        #expect(d.backends(IPAddress("10.1.0.1")!).count == 2 && d.backends(IPAddress("10.9.9.9")!).isEmpty)
    }

    @Test func overridesSurviveAReloadUnlessTheirBackendLeft() throws {
        var d = DesiredState(config: try parse(base))
        d.set(d.backends(IPAddress("10.1.0.1")!), to: .draining)
        // 10.1.0.1 leaves the DNS VIP (replaced by 10.1.0.3), stays in the web VIP.
        let next = try parse(
            base.replacingOccurrences(
                of: "port = 53\nprotocol = \"udp\"\n[[vip.backend]]\naddress = \"10.1.0.1\"",
                with: "port = 53\nprotocol = \"udp\"\n[[vip.backend]]\naddress = \"10.1.0.3\""))
        let dropped = d.replaceConfig(next)
        #expect(dropped == [BackendKey(vip: dns, address: IPAddress("10.1.0.1")!)])
        #expect(d.state(of: BackendKey(vip: web, address: IPAddress("10.1.0.1")!)) == .draining)
        #expect(d.snapshotSpec.services[0].backends.map(\.weight) == [0, 100])
    }

    @Test func vipsWhoseEveryBackendIsDrainedAreNamed() throws {
        var d = DesiredState(config: try parse(base))
        #expect(d.vipsWithoutBackends.isEmpty)
        d.set(d.backends(IPAddress("10.1.0.1")!), to: .draining)
        #expect(d.vipsWithoutBackends == [dns])
        d.set(d.backends(IPAddress("10.1.0.1")!), to: .active)
        #expect(d.vipsWithoutBackends.isEmpty && d.overrides.isEmpty)
    }
}

@Suite struct ReloaderTests {
    @Test func aGoodReloadPublishesTheNextGeneration() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        file.write(base + "[[vip.backend]]\naddress = \"10.1.0.4\"\n")
        let result = r.reload()
        #expect(result.ok && result.message.hasPrefix("reload ok: 2 VIPs, 4 backends"))
        #expect(r.publisher.generation == 2 && r.succeeded == 1 && r.failed == 0)
        #expect(publishedWeights(r, vip: dns).count == 2)
        #expect(result.message.contains("(1 Maglev table built, the rest unchanged)"))  // web's table is the running one
    }

    /// A health verdict or a drain rebuilds the table of the VIP it touches, not the others.
    @Test func aRuntimeChangeBuildsOnlyTheTableOfTheVIPItTouches() throws {
        let r = try makeReloader(ConfigFile(base))
        let webTable = r.publisher.cell.current.pointee.vips[0].table
        let result = r.setHealth([(BackendKey(vip: dns, address: IPAddress("10.1.0.1")!), false)])
        #expect(result.ok && result.message.contains("1 Maglev table built"))
        #expect(r.publisher.cell.current.pointee.vips[0].table == webTable)
        let drained = r.setState([BackendKey(vip: web, address: IPAddress("10.1.0.2")!)], to: .draining)
        #expect(drained.message.contains("1 Maglev table built") && r.publisher.cell.current.pointee.vips[0].table != webTable)
    }

    @Test func aBrokenFileKeepsTheRunningConfigAndSaysWhy() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        for broken in [base + "[é]\n", base.replacingOccurrences(of: "port = 80", with: "port = 99999")] {
            file.write(broken)
            let result = r.reload()
            #expect(!result.ok && result.message.hasPrefix("reload failed, keeping the running config:\n"))
        }
        let original = try parse(base)
        #expect(r.publisher.generation == 1 && r.failed == 2 && r.desired.config == original)
    }

    @Test func restartOnlyChangesAndMemoryBeyondTheMachineAreRefused() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        file.write(
            base.replacingOccurrences(of: "gateway_mac = \"02:00:00:00:00:fe\"", with: "gateway_mac = \"02:00:00:00:00:fd\""))
        #expect(r.reload().message.contains("restart-only keys changed: port[0].gateway_mac"))
        file.write(base)
        let tight = try makeReloader(file, memory: 270 << 20)  // 14 MiB usable; the tables need 38 MiB
        file.write(base.replacingOccurrences(of: "table_size = 1009", with: "table_size = 10000019"))
        let result = tight.reload()
        #expect(!result.ok && result.message.contains("maglev.table_size"))
        #expect(tight.publisher.generation == 1)
    }

    @Test func aStopSignalAbandonsTheBuildAndChangesNothing() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        file.write(base.replacingOccurrences(of: "table_size = 1009", with: "table_size = 1000003"))
        let result = r.reload(shouldStop: { true })
        #expect(!result.ok && result.message.hasPrefix("reload abandoned"))
        #expect(r.publisher.generation == 1 && r.desired.config.tableSize == 1009)
    }

    @Test func drainsReachTheDataPlaneAndSurviveReloads() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        let key = r.desired.backends(IPAddress("10.1.0.2")!, vip: web)
        #expect(r.setState(key, to: .draining).ok)
        #expect(publishedWeights(r, vip: web) == [IPAddress("10.1.0.1")!: 100, IPAddress("10.1.0.2")!: 0])
        file.write(base + "[[vip.backend]]\naddress = \"10.1.0.5\"\n")
        #expect(r.reload().ok)
        #expect(publishedWeights(r, vip: web)[IPAddress("10.1.0.2")!] == 0)
        #expect(r.setState(key, to: .active).ok)
        #expect(publishedWeights(r, vip: web)[IPAddress("10.1.0.2")!] == 100)
    }

    @Test func aChangeThatLeavesAVIPNoBackendSaysSo() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        let result = r.setState(r.desired.backends(IPAddress("10.1.0.1")!), to: .draining)
        #expect(result.message.contains("WARNING: no backend takes new flows for \(dns)"))
        file.write(base)
        #expect(r.reload().message.contains("WARNING: no backend takes new flows for \(dns)"))
    }
}

/// Signals from a script: each poll returns the next one (nil: none this time).
final class ScriptedSignals: SignalSource {
    var script: [Int32?]
    init(_ script: [Int32?]) { self.script = script }
    var descriptor: Int32 { -1 }
    func next(timeoutMilliseconds: Int32) -> Int32? { script.isEmpty ? SIGTERM : script.removeFirst() }
    var stopPending: Bool { false }
}

@Suite struct ControlLoopTests {
    @Test func sighupReloadsAndSigtermStops() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        var lines: [String] = []
        let loop = ControlLoop(
            signals: ScriptedSignals([nil, SIGHUP, SIGUSR1, SIGHUP, SIGTERM]), reloader: r, log: { lines.append($1) },
            clock: { 0 })
        #expect(loop.run(pollMilliseconds: 0) == "signal \(SIGTERM)")
        #expect(r.succeeded == 2 && lines.filter { $0.hasPrefix("reload ok") }.count == 2)
        #expect(lines.contains("signal \(SIGUSR1) ignored"))
    }

    /// With shutdown_drain_s, SIGTERM first marks the node stopping (VIPs reported down for
    /// withdrawal) and the loop goes on until the drain is over; a second SIGTERM stops at once.
    @Test func sigtermWithAShutdownDrainWithdrawsFirstAndStopsWhenTheDrainIsOver() throws {
        let file = ConfigFile("[control]\nshutdown_drain_s = 5\n" + base)
        let r = try makeReloader(file)
        var now = 0.0
        var stoppingAt: Double?
        let lifecycle = Lifecycle()
        let loop = ControlLoop(
            signals: ScriptedSignals([SIGTERM] + Array(repeating: nil, count: 100)), reloader: r, log: { _, _ in },
            clock: {
                now += 0.1
                return now
            }, periodic: [(0, { if lifecycle.stopping && stoppingAt == nil { stoppingAt = now } })], lifecycle: lifecycle)
        #expect(loop.run(pollMilliseconds: 0) == "shutdown drain over")
        #expect(Announcements.wanted(r.desired, withdrawAll: lifecycle.stopping).values.allSatisfy { !$0.up })
        #expect(stoppingAt != nil && now - stoppingAt! >= 4.9)
        let again = ControlLoop(
            signals: ScriptedSignals([SIGTERM, nil, SIGTERM]), reloader: r, log: { _, _ in }, clock: { 0 }, lifecycle: Lifecycle()
        )
        #expect(again.run(pollMilliseconds: 0) == "signal \(SIGTERM)")
    }

    @Test func theIdleTimerStopsWhenNoPacketArrives() throws {
        let file = ConfigFile(base)
        var now = 0.0
        var packets: UInt64 = 0
        let loop = ControlLoop(
            signals: ScriptedSignals(Array(repeating: nil, count: 100)), reloader: try makeReloader(file), log: { _, _ in },
            clock: {
                now += 0.25
                return now
            }, stopWhenIdleSeconds: 1,
            progress: {
                packets += now < 3 ? 1 : 0
                return packets
            })
        #expect(loop.run(pollMilliseconds: 0) == "no packet for 1.0 s")
        #expect(now >= 4)
    }
}

@Suite(.serialized) struct ControlServerTests {
    /// In a directory only root writes (a socket in /tmp is refused: anyone could bind it first).
    static let directory: String = {
        let d = "/tmp/tern-ctl-test-\(getpid())"
        mkdir(d, 0o700)
        return d
    }()
    let path = ControlServerTests.directory + "/ternd.sock"

    /// Serves on a background thread until `done`; requests go through the real socket.
    func withServer(_ body: (ControlServer) throws -> Void) throws {
        let server = try ControlServer(path: path)
        defer { server.close() }
        try body(server)
    }

    /// Runs the server's loop step a few times while `client` talks to it on another thread.
    func serve(_ server: ControlServer, now: @escaping () -> Double = { 0 }, while client: @escaping @Sendable () -> Void) {
        let done = Mutex(false)
        let thread = Thread {
            client()
            done.withLock { $0 = true }
        }
        thread.start()
        while !done.withLock({ $0 }) {
            server.service(now: now()) { command in
                // Echoes what it was asked, so the client can tell its own reply.
                .message(MessageReply("\(command.name) \(command.arguments.sorted { $0.key < $1.key })"))
            }
            usleep(1000)
        }
    }

    @Test func aRequestGetsItsReplyAndBadRequestsGetErrors() throws {
        try withServer { server in
            let path = self.path
            serve(server) {
                let line = try? ControlClient.exchange(
                    .drain(backend: IPAddress("10.1.0.1")!, vip: "192.0.2.10:80/tcp"), socket: path)
                let reply = line.flatMap { try? ControlWire.decode(MessageReply.self, from: $0) }
                #expect(
                    reply?.message
                        == "drain [(key: \"backend\", value: \"10.1.0.1\"), (key: \"vip\", value: \"192.0.2.10:80/tcp\")]")
                let fd = try! UnixSocket.connect(path)
                UnixSocket.writeAll(fd, Array("not json\n".utf8))
                let text = String(decoding: UnixSocket.readToEnd(fd) ?? [], as: UTF8.self)
                close(fd)
                #expect(text.contains("\"ok\":false") && text.contains("not a JSON object"))
            }
        }
    }

    @Test func theSocketIsRootOnlyAndALiveOneRefusesASecondServer() throws {
        try withServer { _ in
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
            #expect(throws: SocketError.self) { _ = try ControlServer(path: path) }
        }
        // Left behind by a process that is gone: replaced.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var a = try UnixSocket.address(path)
        _ = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        #expect(access(path, F_OK) == 0)
        let server = try ControlServer(path: path)
        server.close()
        #expect(access(path, F_OK) != 0)
    }

    @Test func aSilentClientIsDroppedAfterTheTimeoutWithoutHoldingOthers() throws {
        try withServer { server in
            let path = self.path
            let fd = try UnixSocket.connect(path)
            defer { close(fd) }
            server.service(now: 0) { _ in .message(MessageReply("")) }
            #expect(server.clients.count == 1)
            serve(server, now: { 1 }) {
                let line = try? ControlClient.exchange(.status, socket: path)
                #expect(line.flatMap { try? ControlWire.decode(ReplyHeader.self, from: $0) }?.ok == true)
            }
            #expect(server.clients.count == 1)
            server.service(now: ControlServer.requestTimeout + 0.1) { _ in .message(MessageReply("")) }
            #expect(server.clients.isEmpty)
            #expect(String(decoding: UnixSocket.readToEnd(fd) ?? [], as: UTF8.self).contains("no request within"))
        }
    }
    @Test func aSocketInADirectoryOthersCanWriteIsRefused() throws {
        let open = ControlServerTests.directory + "/open"
        mkdir(open, 0o700)
        chmod(open, 0o1777)
        defer { rmdir(open) }
        do {
            _ = try ControlServer(path: open + "/ternd.sock")
            Issue.record("a socket in a world-writable directory was accepted")
        } catch {
            #expect(error.isConfigProblem && error.description.contains("is writable by others (mode 1777)"))
        }
        #expect(ControlServer.placeProblem(path) == nil)
    }

    @Test func aClientThatNeverReadsItsReplyHoldsNoOneAndIsDroppedAfterTheReplyTimeout() throws {
        try withServer { server in
            let path = self.path
            let fd = try UnixSocket.connect(path)
            defer { close(fd) }
            UnixSocket.writeAll(fd, ControlCommand.showVIPs.line)
            let big = String(repeating: "x", count: 4 << 20)  // far more than a socket buffer holds
            server.service(now: 0) { _ in .message(MessageReply(big)) }
            #expect(server.clients.count == 1 && server.clients[0].reply != nil)
            serve(server, now: { 1 }) {
                let line = try? ControlClient.exchange(.status, socket: path)
                #expect(line.flatMap { try? ControlWire.decode(ReplyHeader.self, from: $0) }?.ok == true)
            }
            #expect(server.clients.count == 1)
            server.service(now: ControlServer.replyTimeout + 0.1) { _ in .message(MessageReply("")) }
            #expect(server.clients.isEmpty && server.dropped.slowReader == 1)
        }
    }

    @Test func clientsAskingTheSameReadOnlyQuestionInOneTurnShareOneReply() throws {
        try withServer { server in
            let fds = try (0..<3).map { _ in try UnixSocket.connect(path) }
            defer { for fd in fds { close(fd) } }
            for fd in fds { UnixSocket.writeAll(fd, ControlCommand.showVIPs.line) }
            usleep(10_000)
            var built = 0
            server.service(now: 0) { _ in
                built += 1
                return .message(MessageReply("once"))
            }
            #expect(built == 1)
            for fd in fds { #expect(String(decoding: UnixSocket.readToEnd(fd) ?? [], as: UTF8.self).contains("once")) }
        }
    }
}

/// One worker that sends `n` TCP flows (the same n each time) to 192.0.2.10:80 through the
/// reloader's running snapshot.
final class FlowSender {
    let reloader: Reloader
    var worker = Worker(
        index: 0, port: PortContext(mac: MACAddress(value: 2), gatewayMAC: MACAddress(value: 1), mtu: 1500),
        settings: WorkerSettings(flowTableEntries: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)

    init(_ reloader: Reloader) { self.reloader = reloader }
    deinit { buffer.deallocate() }

    func send(_ n: Int) {
        for i in 0..<n {
            let frame = Frames.flow(
                source: IPAddress(v4: 0xC633_6400 + UInt32(i)), destination: IPAddress("192.0.2.10")!,
                sourcePort: UInt16(1000 + i), destinationPort: 80)
            frame.withUnsafeBytes { (buffer + 128).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            var packet = Packet(data: buffer + 128, length: frame.count, headroom: 128)
            var outcome = Outcome.forwarded
            worker.processBurst(&packet, count: 1, outcomes: &outcome, snapshot: reloader.publisher.cell.current.pointee, now: 1)
        }
    }
}

@Suite struct LiveStatsTests {
    @Test func theReportAddsUpWorkersAndKeepsPerVIPCountsAcrossAReload() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        let sender = FlowSender(r)
        let stats = LiveStats(blocks: [sender.worker.stats], publisher: r.publisher)
        let send = sender.send
        send(10)
        file.write(base + "[[vip.backend]]\naddress = \"10.1.0.9\"\n")
        #expect(r.reload().ok)
        send(5)
        let report = stats.report()
        #expect(report.outcomes.received == 15 && report.outcomes[.forwarded] == 15)
        #expect(report.totals.perVIP.first { $0.0 == web }?.1 == 15)
        #expect(report.json.contains("\"rx\":15"))
    }

    /// A backend's packets and new flows are kept under its stable id: a reload that shifts every
    /// backend's position in the snapshot, or one that removes a backend and brings it back, does
    /// not move or reset them.
    @Test func backendCountersFollowTheBackendAcrossReloadsThatReorderIt() throws {
        let file = ConfigFile(base)
        let r = try makeReloader(file)
        let send = FlowSender(r).send
        func counts() -> [IPAddress: PacketTotals.Entry] { r.publisher.totals().byVIP[web] ?? [:] }
        send(20)
        let first = counts()
        #expect(first.values.reduce(0) { $0 + $1.packets } == 20 && first.values.reduce(0) { $0 + $1.newFlows } == 20)
        #expect(first.count == 2 && first.values.allSatisfy { $0.packets > 0 })
        // 10.0.0.5 sorts first: every old backend moves up one place in the new snapshot.
        file.write(
            base.replacingOccurrences(
                of: "port = 80\nprotocol = \"tcp\"\n",
                with: "port = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"10.0.0.5\"\n"))
        #expect(r.reload().ok)
        send(20)  // the same flows: the flow table keeps each on its backend
        let second = counts()
        for (address, e) in first {
            #expect(second[address]?.packets == 2 * e.packets && second[address]?.newFlows == e.newFlows, "\(address)")
        }
        #expect(second[IPAddress("10.0.0.5")!]?.packets ?? 0 == 0)
        let ids = r.publisher.counterIDs.keys.count
        file.write(base.replacingOccurrences(of: "[[vip.backend]]\naddress = \"10.1.0.2\"\n", with: ""))
        #expect(r.reload().ok)
        file.write(base)
        #expect(r.reload().ok)
        #expect(r.publisher.counterIDs.keys.count == ids)
        #expect(counts()[IPAddress("10.1.0.2")!]?.packets == second[IPAddress("10.1.0.2")!]?.packets)
    }
}

@Suite struct LoggingTests {
    @Test func everyLineIsPrefixedWithItsTimeOrForTheJournalItsPriority() {
        // 2026-12-06 06:20:01.042 UTC.
        let plain = TernLogHandler(level: .info, journal: false, clock: { 1_796_538_001.042 })
        #expect(plain.lines(level: .info, message: "reload ok") == "2026-12-06T06:20:01.042Z ternd: reload ok\n")
        #expect(
            plain.lines(level: .error, message: "reload failed:\nt.toml:3: x")
                == "2026-12-06T06:20:01.042Z ternd: error: reload failed:\n2026-12-06T06:20:01.042Z ternd: error: t.toml:3: x\n")
        #expect(TernLogHandler.timestamp(0) == "1970-01-01T00:00:00.000Z")
        let journal = TernLogHandler(level: .info, journal: true)
        #expect(journal.lines(level: .warning, message: "signal 10 ignored") == "<4>ternd: warning: signal 10 ignored\n")
        #expect(journal.lines(level: .info, message: "started") == "<6>ternd: started\n")
    }
}
