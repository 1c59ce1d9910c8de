// `ternctl bgp-feed`: an ExaBGP process (`process tern { run /usr/bin/ternctl bgp-feed; encoder
// text; }`). It asks ternd once a second which VIP prefixes this node should announce and writes
// ExaBGP's API commands (`announce route 192.0.2.10/32 next-hop self`, `withdraw route ...`) on
// stdout; what ExaBGP writes back (acknowledgements, when exabgp.api.ack is on) is read and
// ignored. When ternd cannot be reached it withdraws everything and exits (fail closed).

import ArgumentParser
import TernAgent

#if canImport(Glibc)
import Glibc
#endif

struct BGPFeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bgp-feed",
        abstract: "Feed ExaBGP (process API) the VIP prefixes this node should announce; withdraw all if ternd goes away.")

    @OptionGroup var options: SocketOptions

    @Option(help: "Seconds between questions to ternd.")
    var interval: Double = 1

    @Option(help: "What follows the prefix in each announce and withdraw (ExaBGP route attributes).")
    var attributes = "next-hop self"

    func run() throws {
        var feed = AnnouncementFeed(attributes: attributes)
        _ = fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK)
        signal(SIGPIPE, SIG_IGN)  // ExaBGP gone: writes fail instead of killing the feed
        func emit(_ lines: [String]) {
            let text = lines.map { $0 + "\n" }.joined()
            _ = text.withCString { write(1, $0, strlen($0)) }  // whole lines, at once, unbuffered
        }
        while true {
            let reply: [String: Any]
            do {
                reply = try ControlClient.send(ControlRequest(command: "announcements", arguments: [:]), socket: options.socket)
            } catch {
                emit(feed.withdrawAll())
                printError("ternctl bgp-feed: \(error.description): withdrew every prefix; exiting")
                throw ExitCode(69)
            }
            var wanted: [String: Bool] = [:]
            for p in reply["prefixes"] as? [[String: Any]] ?? [] {
                if let prefix = p["prefix"] as? String { wanted[prefix] = p["up"] as? Bool == true }
            }
            emit(feed.update(wanted))
            // ExaBGP's acknowledgements: read and drop; end of input means ExaBGP is gone.
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(0, &buffer, buffer.count)
                if n == 0 {
                    emit(feed.withdrawAll())
                    return
                }
                if n < 0 { break }
            }
            usleep(UInt32(max(0.05, interval) * 1_000_000))
        }
    }
}
