import Foundation
import Synchronization
import TernBalancing
import Testing

@testable import TernAgent
@testable import TernConfig
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// A loopback listener on a free port: TCP that answers each connection with `reply` (nothing:
/// accept and close), or UDP that echoes DNS ids with the answer bit. Stopped by `stop()`.
final class LoopbackServer: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    let stopped = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    init(udp: Bool = false, reply: [UInt8] = [], delayMicroseconds: UInt32 = 0) {
        let sock = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        var (storage, length) = Netlink.socketAddress(IPAddress("127.0.0.1")!, port: 0)
        _ = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, length) } }
        var bound = sockaddr_in()
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &size) }
        }
        if !udp { listen(sock, 16) }
        var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        fd = sock
        port = UInt16(bigEndian: bound.sin_port)
        let fd = self.fd
        Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                if udp {
                    var buffer = [UInt8](repeating: 0, count: 512)
                    var peer = sockaddr_storage()
                    var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let n = withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(fd, &buffer, buffer.count, 0, $0, &peerLength)
                        }
                    }
                    guard n >= 12 else { continue }
                    var answer = Array(buffer[0..<n])
                    answer[2] |= 0x80
                    _ = withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, answer, answer.count, 0, $0, peerLength)
                        }
                    }
                } else {
                    let c = accept(fd, nil, nil)
                    guard c >= 0 else { continue }
                    if !reply.isEmpty {
                        var request = [UInt8](repeating: 0, count: 1024)
                        _ = recv(c, &request, request.count, 0)
                        usleep(delayMicroseconds)
                        _ = send(c, reply, reply.count, 0)
                    }
                    close(c)
                }
            }
            finished.signal()
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        finished.wait()
        close(fd)
    }
}

/// The node and port every config of these tests starts with.
let nodeAndPort = """
    [node]
    name = "h"
    tunnel_source_v4 = "10.0.0.10"
    [[port]]
    device = "d"
    gateway_mac = "02:00:00:00:00:fe"

    """

func healthConfig(_ check: HealthConfig.Check, port: UInt16, rise: Int = 1, fall: Int = 1) -> HealthConfig {
    HealthConfig(check: check, port: port, intervalMilliseconds: 100, timeoutMilliseconds: 300, rise: rise, fall: fall)
}

/// One VIP (192.0.2.N:80/tcp) per target, whose one backend is the target's address with its check
/// (set after validation: the config refuses loopback backends, and the tests have no others).
func proberConfig(_ targets: [(String, HealthConfig)]) -> TernConfig {
    var text = nodeAndPort
    for i in targets.indices {
        text +=
            "[[vip]]\naddress = \"192.0.2.\(i + 1)\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"10.1.0.1\"\n"
    }
    var config = try! ConfigLoader.parse(text, file: "h.toml")
    for (i, t) in targets.enumerated() {
        config.vips[i].backends[0].address = IPAddress(t.0)!
        config.vips[i].backends[0].health = t.1
    }
    return config
}

/// Runs the prober's passes (as the control loop does) for `seconds`; returns the changes reported.
func runProber(_ targets: [(String, HealthConfig)], seconds: Double) -> (
    HealthProber, [(key: BackendKey, up: Bool, detail: String)]
) {
    var changes: [(key: BackendKey, up: Bool, detail: String)] = []
    let prober = HealthProber { changes += $0 }
    prober.configure(proberConfig(targets))
    let start = Date()
    while Date().timeIntervalSince(start) < seconds {
        prober.step(now: Date().timeIntervalSince1970)
        usleep(5_000)
    }
    return (prober, changes)
}

@Suite struct HealthStateTests {
    @Test func aBackendGoesDownAfterFallFailuresInARowAndUpAfterRiseSuccesses() {
        var s = HealthState()
        #expect(s.up)
        var changed: [Bool] = []
        for ok in [false, true, false, false, false] {
            changed.append(s.record(ok: ok, detail: ok ? "ok" : "refused", rise: 2, fall: 3))
        }
        // A success resets the count: down only after three failures in a row.
        #expect(changed == [false, false, false, false, true] && !s.up && s.transitions == 1)
        changed = []
        for ok in [true, true] { changed.append(s.record(ok: ok, detail: "ok", rise: 2, fall: 3)) }
        #expect(changed == [false, true] && s.up && s.transitions == 2 && s.lastResult == "ok")
    }
}

@Suite(.serialized) struct HealthProberTests {
    @Test func tcpChecksPassAnAcceptingPortAndFailAClosedOne() {
        let open = LoopbackServer()
        defer { open.stop() }
        let closed = LoopbackServer()
        let closedPort = closed.port
        closed.stop()  // nothing listens there any more
        let (prober, changes) = runProber(
            [("127.0.0.1", healthConfig(.tcp, port: open.port)), ("127.0.0.1", healthConfig(.tcp, port: closedPort))],
            seconds: 0.5)
        #expect(changes.map { "\($0.key.vip) \($0.up)" } == ["192.0.2.2:80/tcp false"])
        #expect(prober.states.values.contains { $0.lastResult == "connected" })
        #expect(prober.states.values.contains { $0.lastResult.hasPrefix("connect: Connection refused") })
    }

    @Test func httpChecksWantTheExpectedStatus() {
        let good = LoopbackServer(reply: Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8))
        let bad = LoopbackServer(reply: Array("HTTP/1.1 503 Service Unavailable\r\n\r\n".utf8))
        defer {
            good.stop()
            bad.stop()
        }
        let (prober, changes) = runProber(
            [("127.0.0.1", healthConfig(.http, port: good.port)), ("127.0.0.1", healthConfig(.http, port: bad.port))],
            seconds: 0.5)
        #expect(changes.map { "\($0.key.vip) \($0.up) \($0.detail)" } == ["192.0.2.2:80/tcp false HTTP 503"])
        #expect(prober.states.values.contains { $0.lastResult == "HTTP 200" })
    }

    @Test func dnsChecksWantAnAnswerWithTheQuerysId() {
        let server = LoopbackServer(udp: true)
        defer { server.stop() }
        let (prober, changes) = runProber([("127.0.0.1", healthConfig(.dns, port: server.port))], seconds: 0.4)
        #expect(changes.isEmpty && prober.states.values.first?.lastResult == "answered")
        let silent = LoopbackServer(udp: true)
        let port = silent.port
        silent.stop()
        let (_, down) = runProber([("127.0.0.1", healthConfig(.dns, port: port))], seconds: 0.5)
        #expect(down.count == 1 && down.first?.up == false)
    }

    /// A thousand backends, none answering: one pass starts every check without waiting on any
    /// (so the control loop's reloads and stats are never held up by them), and the first pass
    /// after the timeout fails them all, together.
    @Test func aThousandSilentBackendsAreAllCheckedAtOnce() throws {
        let sink = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)  // on every loopback address; never reads
        defer { close(sink) }
        var (storage, length) = Netlink.socketAddress(IPAddress("0.0.0.0")!, port: 0)
        _ = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sink, $0, length) } }
        var bound = sockaddr_in()
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sink, $0, &size) }
        }
        var text =
            nodeAndPort + """
                [maglev]
                table_size = 65537
                [[vip]]
                address = "192.0.2.53"
                port = 53
                protocol = "udp"
                [vip.health]
                check = "dns"
                interval_ms = 1000
                timeout_ms = 500
                fall = 1

                """
        for i in 0..<1000 { text += "[[vip.backend]]\naddress = \"10.1.\(i / 250).\(i % 250 + 1)\"\n" }
        var config = try ConfigLoader.parse(text, file: "k.toml")
        for i in config.vips[0].backends.indices {  // the config refuses loopback backends; the test has no others
            config.vips[0].backends[i].address = IPAddress("127.0.\(i / 250 + 1).\(i % 250 + 1)")!
            config.vips[0].backends[i].health?.port = UInt16(bigEndian: bound.sin_port)
        }
        var changes: [(key: BackendKey, up: Bool, detail: String)] = []
        let prober = HealthProber { changes += $0 }
        prober.configure(config)
        prober.step(now: 1000)
        #expect(prober.inFlight.count == 1000 && changes.isEmpty)
        prober.step(now: 1000.6)
        #expect(changes.count == 1000 && changes.allSatisfy { !$0.up && $0.detail == "no answer within 500 ms" })
        #expect(prober.inFlight.isEmpty)
    }

    /// The loop stalls (1 s) after the requests went out: a backend that answered late (600 ms,
    /// timeout 300 ms) is down, one that answered at once is up, whenever the loop reads them.
    @Test func aLateAnswerIsJudgedByWhenItCameNotWhenTheLoopReadIt() {
        let ok = Array("HTTP/1.1 200 OK\r\n\r\n".utf8)
        let slow = LoopbackServer(reply: ok, delayMicroseconds: 600_000)
        let fast = LoopbackServer(reply: ok)
        defer {
            slow.stop()
            fast.stop()
        }
        var changes: [(key: BackendKey, up: Bool, detail: String)] = []
        let prober = HealthProber { changes += $0 }
        prober.configure(
            proberConfig(
                [slow, fast].map { server in
                    (
                        "127.0.0.1",
                        HealthConfig(
                            check: .http, port: server.port, intervalMilliseconds: 10_000, timeoutMilliseconds: 300, rise: 1,
                            fall: 1)
                    )
                }))
        let now = UnixSocket.monotonicSeconds
        prober.step(now: now())  // connects
        let start = now()
        while prober.inFlight.values.contains(where: { !$0.connected }) && now() - start < 2 {  // requests sent
            usleep(1000)
            prober.step(now: now())
        }
        usleep(1_000_000)  // the stall: the slow answer comes 600 ms in, past its 300 ms timeout
        prober.step(now: now())
        let verdicts = Dictionary(changes.map { ($0.key.vip, ($0.up, $0.detail)) }, uniquingKeysWith: { a, _ in a })
        #expect(
            verdicts["192.0.2.1:80/tcp"]?.0 == false && verdicts["192.0.2.1:80/tcp"]?.1 == "answered after the 300 ms timeout")
        // fall = rise = 1 and the state starts up: the fast one reports no change.
        #expect(verdicts["192.0.2.2:80/tcp"] == nil && prober.states.values.filter(\.up).count == 1, "\(changes)")
    }

    @Test func parsesStatusLines() {
        #expect(HealthProber.statusCode(Array("HTTP/1.0 204 No Content\r\n".utf8)) == 204)
        #expect(HealthProber.statusCode(Array("HTTP/1.1 200".utf8)) == nil)  // not complete yet
        #expect(HealthProber.statusCode(Array("SSH-2.0-OpenSSH\r\n".utf8)) == 0)
    }
}

@Suite struct HealthStateInDesiredStateTests {
    let text =
        nodeAndPort + """
            [[vip]]
            address = "192.0.2.10"
            port = 80
            protocol = "tcp"
            [vip.health]
            check = "tcp"
            all_down = "ALLDOWN"
            [[vip.backend]]
            address = "10.1.0.1"
            [[vip.backend]]
            address = "10.1.0.2"
            state = "draining"

            """

    @Test func downBackendsLeaveTheSnapshotUnlessAllAreDownAndTheVIPKeepsThem() throws {
        for policy in ["withdraw", "keep"] {
            var d = DesiredState(
                config: try ConfigLoader.parse(text.replacingOccurrences(of: "ALLDOWN", with: policy), file: "h.toml"))
            let one = BackendKey(vip: "192.0.2.10:80/tcp", address: IPAddress("10.1.0.1")!)
            let two = BackendKey(vip: "192.0.2.10:80/tcp", address: IPAddress("10.1.0.2")!)
            #expect(d.state(of: two) == .draining && d.snapshotSpec.services[0].backends.map(\.weight) == [100, 0])
            d.setHealth(one, up: false)
            #expect(d.state(of: one) == .down && d.snapshotSpec.services[0].backends.map(\.address) == [two.address])
            d.setHealth(two, up: false)
            #expect(d.snapshotSpec.services[0].backends.count == (policy == "keep" ? 2 : 0))
            #expect(d.vipsWithoutBackends == ["192.0.2.10:80/tcp"] || policy == "keep")
            d.setHealth(one, up: true)
            #expect(d.snapshotSpec.services[0].backends.map(\.address) == [one.address])
        }
    }

    @Test func healthTablesAreCheckedLikeEveryOtherKey() {
        let base = text.replacingOccurrences(of: "ALLDOWN", with: "withdraw")
        #expect(
            problems(base.replacingOccurrences(of: "check = \"tcp\"", with: "check = \"icmp\"")).first?.contains(
                "vip[0].health.check") == true)
        #expect(
            problems(base.replacingOccurrences(of: "check = \"tcp\"", with: "check = \"tcp\"\ntimeout_ms = 2000")).first?
                .contains("longer than interval_ms") == true)
        #expect(
            problems(base.replacingOccurrences(of: "state = \"draining\"", with: "state = \"sleepy\"")).first?.contains(
                "vip[0].backend[1].state") == true)
        #expect(
            problems(base.replacingOccurrences(of: "port = 80", with: "port = 0")).first?.contains("vip[0].health.port: required")
                == true)
    }
}

func problems(_ text: String) -> [String] {
    do {
        _ = try ConfigLoader.parse(text, file: "h.toml")
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

@Suite struct AnnouncementTests {
    let text =
        nodeAndPort + """
            [[vip]]
            address = "192.0.2.10"
            port = 80
            protocol = "tcp"
            min_healthy = 2
            [[vip.backend]]
            address = "10.1.0.1"
            [[vip.backend]]
            address = "10.1.0.2"
            [[vip]]
            address = "192.0.2.10"
            port = 443
            protocol = "tcp"
            [[vip.backend]]
            address = "10.1.0.1"
            [[vip]]
            address = "2001:db8::10"
            port = 53
            protocol = "udp"
            [[vip.backend]]
            address = "10.1.0.3"
            weight = 0

            """

    /// An address is announced while some VIP on it has min_healthy backends taking new flows; a
    /// shutdown drain reports everything down.
    @Test func prefixesFollowLiveBackendsAndTheShutdownDrain() throws {
        var d = DesiredState(config: try ConfigLoader.parse(text, file: "a.toml"))
        func up(_ stopping: Bool = false) -> [String: Bool] { Announcements.wanted(d, withdrawAll: stopping).mapValues(\.up) }
        #expect(up() == ["192.0.2.10/32": true, "2001:db8::10/128": false])
        d.setHealth(BackendKey(vip: "192.0.2.10:80/tcp", address: IPAddress("10.1.0.2")!), up: false)
        #expect(up()["192.0.2.10/32"] == true)  // :443 still has its one
        d.setHealth(BackendKey(vip: "192.0.2.10:443/tcp", address: IPAddress("10.1.0.1")!), up: false)
        #expect(up()["192.0.2.10/32"] == false)
        d.setHealth(BackendKey(vip: "192.0.2.10:443/tcp", address: IPAddress("10.1.0.1")!), up: true)
        #expect(up(true).values.allSatisfy { !$0 })
    }

    /// The data plane answers pings to an address only while the same rule calls it up.
    @Test func theSnapshotMarksAddressesUpAsTheAnnouncementsDo() throws {
        var d = DesiredState(config: try ConfigLoader.parse(text, file: "a.toml"))
        #expect(d.snapshotSpec.services.map(\.isUp) == [true, true, false])
        d.setHealth(BackendKey(vip: "192.0.2.10:443/tcp", address: IPAddress("10.1.0.1")!), up: false)
        #expect(d.snapshotSpec.services.map(\.isUp) == [true, false, false])
        let snapshot = ForwardingSnapshot(d.snapshotSpec, generation: 1)
        let upV4 = snapshot.isUpVIPAddress(IPAddress("192.0.2.10")!)
        let upV6 = snapshot.isUpVIPAddress(IPAddress("2001:db8::10")!)
        let known = snapshot.isVIPAddress(IPAddress("2001:db8::10")!)
        #expect(upV4 && !upV6 && known)
    }

    @Test func theFeedAnnouncesAndWithdrawsOnlyChangesAndWithdrawsAllAtTheEnd() {
        var feed = AnnouncementFeed()
        let up = Announcement(up: true)
        let down = Announcement(up: false)
        #expect(feed.update(["192.0.2.10/32": up, "2001:db8::10/128": down]) == ["announce route 192.0.2.10/32 next-hop self"])
        #expect(feed.update(["192.0.2.10/32": up]).isEmpty)
        #expect(
            feed.update(["192.0.2.10/32": down, "2001:db8::10/128": up]) == [
                "withdraw route 192.0.2.10/32 next-hop self", "announce route 2001:db8::10/128 next-hop self",
            ])
        #expect(feed.withdrawAll() == ["withdraw route 2001:db8::10/128 next-hop self"] && feed.announced.isEmpty)
    }

    /// `[vip.bgp]` attributes reach ExaBGP's announce line; a change of them is announced again.
    @Test func theFeedCarriesMEDAndCommunitiesAndAnnouncesTheirChanges() throws {
        let config = try ConfigLoader.parse(
            text.replacingOccurrences(
                of: "port = 443\nprotocol = \"tcp\"\n",
                with: "port = 443\nprotocol = \"tcp\"\n[vip.bgp]\nmed = 50\ncommunities = \"65000:100 65000:7\"\n"),
            file: "a.toml")
        let wanted = Announcements.wanted(DesiredState(config: config), withdrawAll: false)
        #expect(wanted["192.0.2.10/32"]?.attributes == BGPAttributes(med: 50, communities: ["65000:100", "65000:7"]))
        var feed = AnnouncementFeed(nextHop: "10.0.0.1")
        #expect(feed.update(wanted) == ["announce route 192.0.2.10/32 next-hop 10.0.0.1 med 50 community [65000:100 65000:7]"])
        var changed = wanted
        changed["192.0.2.10/32"]?.attributes.med = 60
        #expect(feed.update(changed) == ["announce route 192.0.2.10/32 next-hop 10.0.0.1 med 60 community [65000:100 65000:7]"])
    }

    /// A CIDR VIP is announced as its prefix, not as one /32 per address.
    @Test func aCIDRVIPIsAnnouncedAsItsPrefix() throws {
        let config = try ConfigLoader.parse(
            text.replacingOccurrences(of: "address = \"192.0.2.10\"", with: "address = \"192.0.2.16/28\""), file: "a.toml")
        let wanted = Announcements.wanted(DesiredState(config: config), withdrawAll: false)
        #expect(wanted.mapValues(\.up) == ["192.0.2.16/28": true, "2001:db8::10/128": false])
        var feed = AnnouncementFeed(nextHop: "self")
        #expect(feed.update(wanted).contains("announce route 192.0.2.16/28 next-hop self"))
    }

    /// The BIRD variant: one static protocol per family, a blackhole route per prefix that is up.
    @Test func theBIRDIncludeFileHoldsTheUpPrefixesWithTheirAttributes() {
        let file = BIRDRoutes.file([
            "192.0.2.10/32": Announcement(up: true, attributes: BGPAttributes(med: 5, communities: ["65000:1"])),
            "192.0.2.11/32": Announcement(up: false), "2001:db8::10/128": Announcement(up: true),
        ])
        #expect(
            file.hasSuffix(
                """
                protocol static tern_vips4 {
                  ipv4;
                  route 192.0.2.10/32 blackhole { bgp_med = 5; bgp_community.add((65000,1)); };
                }
                protocol static tern_vips6 {
                  ipv6;
                  route 2001:db8::10/128 blackhole;
                }

                """))
    }

    @Test func bgpAttributesAreCheckedAndOneAddressHasOneSet() {
        let at443 = "port = 443\nprotocol = \"tcp\"\n"
        let at80 = "protocol = \"tcp\"\nmin_healthy = 2\n"
        let bgp = at443 + "[vip.bgp]\nmed = 50\ncommunities = \"COMMUNITY\"\n"
        for bad in ["65000", "65536:1", "a:b", "1:2:3"] {
            let found = problems(text.replacingOccurrences(of: at443, with: bgp.replacingOccurrences(of: "COMMUNITY", with: bad)))
            #expect(found.first?.contains("vip[1].bgp.communities") == true, "\(bad): \(found)")
        }
        let twice = text.replacingOccurrences(of: at443, with: bgp.replacingOccurrences(of: "COMMUNITY", with: "1:1"))
            .replacingOccurrences(of: at80, with: at80 + "[vip.bgp]\nmed = 10\n")
        #expect(problems(twice).first?.contains("vip[1].bgp: differs from vip[0].bgp") == true)
        #expect(
            problems(text.replacingOccurrences(of: at80, with: at80 + "[vip.bgp]\nmed = -1\n")).first?.contains("vip[0].bgp.med")
                == true)
    }
}

/// `[vip.backend.health]`: one backend's check differs from its VIP's (another port or path, or none).
@Suite struct BackendHealthOverrideTests {
    let text =
        nodeAndPort + """
            [[vip]]
            address = "192.0.2.10"
            port = 80
            protocol = "tcp"
            [vip.health]
            check = "http"
            path = "/health"
            interval_ms = 600
            [[vip.backend]]
            address = "10.1.0.1"
            [[vip.backend]]
            address = "10.1.0.2"
            [vip.backend.health]
            port = 8080
            path = "/ready"
            [[vip.backend]]
            address = "10.1.0.3"
            [vip.backend.health]
            check = "none"
            [[vip]]
            address = "192.0.2.10"
            port = 443
            protocol = "tcp"
            [[vip.backend]]
            address = "10.1.0.1"
            [vip.backend.health]
            check = "tcp"

            """

    @Test func aBackendsKeysOverrideItsVIPsAndTheRestIsInherited() throws {
        let c = try ConfigLoader.parse(text, file: "b.toml")
        let b = c.vips[0].backends
        #expect(b[0].health == c.vips[0].health && b[0].health?.port == 80)
        #expect(b[1].health?.port == 8080 && b[1].health?.path == "/ready" && b[1].health?.check == .http)
        #expect(b[1].health?.intervalMilliseconds == 600)
        #expect(b[2].health == nil)
        // No [vip.health]: the backend's own check with the defaults and the VIP's port.
        let lone = c.vips[1].backends[0].health
        #expect(lone?.check == .tcp && lone?.port == 443 && lone?.intervalMilliseconds == 1000 && c.vips[1].health == nil)
    }

    @Test func theProberChecksEachBackendWithItsOwnCheckAndSkipsThoseWithNone() throws {
        let prober = HealthProber(report: { _ in })
        prober.configure(try ConfigLoader.parse(text, file: "b.toml"))
        #expect(prober.targets.map { "\($0.key.address):\($0.check.port)" } == ["10.1.0.1:80", "10.1.0.2:8080", "10.1.0.1:443"])
    }

    @Test func aBackendsHealthKeysAreCheckedAndNamed() {
        #expect(
            problems(text.replacingOccurrences(of: "port = 8080", with: "port = 0")).first?.contains(
                "vip[0].backend[1].health.port") == true)
        #expect(
            problems(text.replacingOccurrences(of: "port = 8080", with: "all_down = \"keep\"")).first?.contains(
                "vip[0].backend[1].health.all_down: unknown key") == true)
        #expect(
            problems(text.replacingOccurrences(of: "check = \"none\"", with: "check = \"ping\"")).first?.contains(
                "vip[0].backend[2].health.check") == true)
        // A VIP-level mistake is reported once, not again for every backend.
        #expect(problems(text.replacingOccurrences(of: "interval_ms = 600", with: "interval_ms = 5")).count == 1)
    }
}
