// `ternctl bgp-feed`: keeps an existing BGP speaker's announcements equal to what ternd says this
// node should announce (`announcements` on the control socket, asked every --interval seconds).
//   ExaBGP (default): run as an ExaBGP process (`process tern { run /usr/bin/ternctl bgp-feed;
//     encoder text; }`); writes `announce route 192.0.2.10/32 next-hop self [med N] [community
//     [...]]` and `withdraw route ...` on stdout; what ExaBGP writes back (acknowledgements, when
//     exabgp.api.ack is on) is read and ignored; end of input means ExaBGP is gone.
//   BIRD (--bird-include FILE): rewrites FILE (static routes, see `BIRDRoutes`) and runs `birdc
//     configure` whenever the wanted set changes.
// When ternd cannot be reached, does not answer within an interval (frozen, stalled, restarting)
// or the socket is served by another user than root or this one, it withdraws everything (fail
// closed), says so once, keeps asking every interval and announces again once ternd answers: it
// outlives ternd's restarts, so ExaBGP never gives up on it. It ends only when its input closes
// (ExaBGP gone) or on SIGTERM/SIGINT (withdrawing first). Every field it passes on is checked first
// (`Announcement.trusted`).

import ArgumentParser
import TernAgent
import TernConfig

#if canImport(Glibc)
    import Glibc
#endif

/// The stop signal received (0: none); set by the handler, read by the loop.
nonisolated(unsafe) var feedStop: Int32 = 0

struct BGPFeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bgp-feed",
        abstract:
            "Keep ExaBGP (process API) or BIRD (--bird-include) announcing the VIP prefixes this node should; withdraw all while ternd is away, announce again when it is back."
    )

    @OptionGroup var options: SocketOptions

    @Option(help: "Seconds between questions to ternd.")
    var interval: Double = 1

    @Option(help: "ExaBGP: the next-hop of each announce (self: the session's local address).")
    var nextHop = "self"

    @Option(help: "BIRD: write static routes to this file (included by bird.conf) instead of talking to ExaBGP.")
    var birdInclude: String?

    @Option(help: "BIRD: birdc's control socket (birdc's default when not given).")
    var birdSocket: String?

    func run() throws {
        var exabgp = AnnouncementFeed(nextHop: nextHop)
        var birdText: String?  // what BIRD was last told successfully
        signal(SIGPIPE, SIG_IGN)  // the speaker gone: writes fail instead of killing the feed
        if birdInclude == nil { _ = fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) }
        /// Brings the speaker to `wanted`; false when ExaBGP has gone.
        func tell(_ wanted: [String: Announcement]) -> Bool {
            guard let file = birdInclude else {
                emit(exabgp.update(wanted))
                return exabgpStillThere()
            }
            let text = BIRDRoutes.file(wanted)
            if text != birdText, configureBIRD(file: file, text: text) { birdText = text }
            return true
        }
        Self.catchStopSignals()
        var away: String?  // why ternd is unreachable, while it is
        while feedStop == 0 {
            let wanted: [String: Announcement]
            do {
                // A frozen or stalled ternd is as good as gone: no reply within an interval withdraws.
                let reply = try ControlClient.exchange(
                    .announcements, socket: options.socket, timeoutSeconds: max(0.5, interval))
                if away != nil { printError("ternctl bgp-feed: ternd answers again: announcing what it says") }
                away = nil
                wanted = Self.announcements(reply)
            } catch {
                if away != error.description {
                    printError(
                        "ternctl bgp-feed: \(error.description): withdrew every prefix; asking again every \(interval) s")
                }
                away = error.description
                wanted = [:]
            }
            if !tell(wanted) {
                emit(exabgp.withdrawAll())
                return
            }
            usleep(UInt32(max(0.05, interval) * 1_000_000))  // a stop signal cuts it short
        }
        _ = tell([:])
        printError("ternctl bgp-feed: signal \(feedStop): withdrew every prefix; exiting")
    }

    /// SIGTERM and SIGINT end the loop (after withdrawing), not the process mid-write.
    static func catchStopSignals() {
        for s in [SIGTERM, SIGINT] { signal(s) { feedStop = $0 } }
    }

    /// The control reply's prefixes (none from a reply that is not an announcements reply); a
    /// field that is not what ternd writes is refused and logged, never passed on.
    static func announcements(_ line: [UInt8]) -> [String: Announcement] {
        var wanted: [String: Announcement] = [:]
        for p in (try? ControlWire.decode(AnnouncementsReply.self, from: line))?.prefixes ?? [] {
            switch Announcement.trusted(p) {
            case .success(let (prefix, a)): wanted[prefix] = a
            case .failure(let f): printError("ternctl bgp-feed: refused from the control socket: \(f.message)")
            }
        }
        return wanted
    }

    /// Whole lines, at once, unbuffered.
    func emit(_ lines: [String]) {
        let text = lines.map { $0 + "\n" }.joined()
        _ = text.withCString { write(1, $0, strlen($0)) }
    }

    /// Reads and drops ExaBGP's acknowledgements; false at end of input (ExaBGP is gone).
    func exabgpStillThere() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(0, &buffer, buffer.count)
            if n == 0 { return false }
            if n < 0 { return true }
        }
    }

    /// Replaces `file` (write beside it, rename) and has BIRD re-read its config.
    func configureBIRD(file: String, text: String) -> Bool {
        let temporary = file + ".tmp"
        guard let f = fopen(temporary, "w") else {
            printError("ternctl bgp-feed: cannot write \(temporary): \(String(cString: strerror(errno)))")
            return false
        }
        let written = fputs(text, f) >= 0
        guard fclose(f) == 0, written, rename(temporary, file) == 0 else {
            printError("ternctl bgp-feed: cannot write \(file): \(String(cString: strerror(errno)))")
            return false
        }
        var arguments = ["birdc"]
        if let s = birdSocket { arguments += ["-s", s] }
        arguments.append("configure")
        let (status, output) = Self.runCommand(arguments)
        // birdc exits 0 even when BIRD refuses the config; its answer says.
        guard status == 0, output.contains("Reconfigur") else {
            printError("ternctl bgp-feed: \(arguments.joined(separator: " ")) failed (exit \(status)): \(output)")
            return false
        }
        return true
    }

    /// Runs a program found on PATH; its exit status and what it wrote (stdout and stderr).
    static func runCommand(_ arguments: [String]) -> (Int32, String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return (-1, "pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, environ)
        close(fds[1])
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(fds[0])
        guard spawned == 0 else { return (-1, "\(arguments[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return ((status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1, text)
    }
}
