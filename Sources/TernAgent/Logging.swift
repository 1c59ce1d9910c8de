// ternd's log: swift-log with one handler that writes each message as whole lines to stderr, every
// line prefixed `ternd: ` (and the level when it is not info or notice), with control characters of
// the message already escaped by whoever echoes config values. When stderr is systemd's journal
// (JOURNAL_STREAM names it), each line starts with its syslog priority (`<3>` error ... `<7>`
// debug), which the journal turns into the entry's priority; anywhere else (a terminal, a file, a
// container's log) each line starts with the UTC time to the millisecond (RFC 3339), as the
// journal's own entries carry theirs.

import Logging

#if canImport(Glibc)
    import Glibc
#endif

public struct TernLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let journal: Bool
    /// Wall-clock seconds since the epoch, for the time stamp (tests give their own).
    let clock: @Sendable () -> Double

    public init(
        level: Logger.Level, journal: Bool = TernLogHandler.stderrIsJournal(), clock: @escaping @Sendable () -> Double = wallClock
    ) {
        logLevel = level
        self.journal = journal
        self.clock = clock
    }

    public static func wallClock() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// `2026-12-06T06:20:01.123Z`.
    public static func timestamp(_ seconds: Double) -> String {
        let total = Int((seconds * 1000).rounded(.down))
        var t = time_t(total / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        let ms = total % 1000
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return
            "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):"
            + "\(two(parts.tm_sec)).\(millis)Z"
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The lines one message becomes (tests read these).
    public func lines(level: Logger.Level, message: String) -> String {
        let priority = journal ? "<\(TernLogHandler.syslogPriority(level))>" : "\(TernLogHandler.timestamp(clock())) "
        let tag: String
        switch level {
        case .info, .notice: tag = ""
        default: tag = "\(level.rawValue): "
        }
        return message.split(separator: "\n", omittingEmptySubsequences: false).map { "\(priority)ternd: \(tag)\($0)\n" }.joined()
    }

    public func log(event: LogEvent) {
        let text = lines(level: event.level, message: event.message.description)
        _ = text.withCString { write(2, $0, strlen($0)) }  // one write: a multi-line message stays whole
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    /// Whether fd 2 is the stream JOURNAL_STREAM ("DEVICE:INODE") names.
    public static func stderrIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        var st = stat()
        guard parts.count == 2, fstat(2, &st) == 0 else { return false }
        return UInt64(parts[0]) == UInt64(st.st_dev) && UInt64(parts[1]) == UInt64(st.st_ino)
    }
}
