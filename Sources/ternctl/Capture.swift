// `ternctl capture`: asks ternd to write the frames its workers handle to a pcap file, waits for
// the capture to end and says what it holds.

import ArgumentParser
import TernAgent
import TernConfig

#if canImport(Glibc)
    import Glibc
#endif

struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture frames a running ternd handles into a pcap file (nanosecond timestamps), then say what it holds.",
        discussion: """
            The filter (libpcap's syntax, as tcpdump's) is matched against each frame as it was received; the frame is \
            written as the worker left it: encapsulated toward its backend (the client's packet inside), answered, or as \
            received when dropped or meant for the host. Bounded: --count frames or --seconds, whichever comes first. \
            ternd creates the file (mode 0600) and never overwrites one. While no capture runs it costs the workers one \
            load per burst; during one, frames its rings cannot take are counted, never delayed. \
            --stop ends a running capture. Exit 0, or 1 when ternd refused (the reason on stderr).
            """)
    @OptionGroup var options: SocketOptions
    @Option(name: .short, help: "The pcap file to create (an existing file is refused).") var w: String?
    @Option(help: "libpcap filter, e.g. \"tcp port 80\" or \"host 198.51.100.7\".") var filter: String = ""
    @Option(help: "Only frames received on this DPDK port (its index; default: every port).") var port: Int?
    @Option(name: [.short, .customLong("count")], help: "Stop after this many frames (1-10000000).") var count: Int = 1000
    @Option(help: "Stop after this many seconds (1-86400).") var seconds: Int = 60
    @Option(help: "Bytes kept of each frame (64-65535).") var snaplen: Int = 65_535
    @Flag(help: "Stop the running capture.") var stop = false

    func run() throws {
        if stop {
            try options.finish(try options.send(.captureStop), as: CaptureStatus.self) { Capture.summary($0) }
            return
        }
        guard let w else { throw ValidationError("-w FILE is needed (or --stop)") }
        var path = w
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&buffer, buffer.count) != nil else { throw ValidationError("cannot tell the current directory") }
            path = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
        }
        var arguments = [
            "file": path, "filter": filter, "count": String(count), "seconds": String(seconds), "snaplen": String(snaplen),
        ]
        if let port { arguments["port"] = String(port) }
        let request: CaptureRequest
        do {
            request = try CaptureRequest(arguments: arguments)
        } catch {
            throw ValidationError(error.message)
        }
        var status = try options.decode(try options.send(.capture(request)), as: CaptureStatus.self)
        while status.running && status.file == path {
            usleep(100_000)
            status = try options.decode(try options.send(.captureStatus), as: CaptureStatus.self)
        }
        try options.finish(ControlWire.encode(status), as: CaptureStatus.self) { Capture.summary($0) }
    }

    static func summary(_ s: CaptureStatus) -> String {
        let why =
            ["count": "the count reached", "time": "time up", "stopped": "stopped", "shutdown": "ternd stopped"][s.ended]
            ?? s.ended
        return "\(s.running ? "capturing" : "captured") \(s.packets) frames to \(s.file) in \(format2(s.seconds)) s"
            + (s.ended.isEmpty ? "" : " (\(why))")
            + (s.dropped > 0 ? "; \(s.dropped) more selected but not captured (a worker's ring was full)" : "") + "\n"
    }

    static func format2(_ x: Double) -> String {
        let hundredths = Int((x * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }
}
