// What a worker is built with: its flow table's size and timeouts and its ICMP budgets. One type
// for every place that builds workers (ternd, `ternctl simulate`, tests, fuzzing, benchmarks);
// TernAgent derives it from the config (`WorkerSettings(config:)`), the rest set what they test.

public struct WorkerSettings: Sendable, Equatable {
    public var flowTableEntries: Int
    /// Seconds a flow is remembered after its last packet (`[dataplane] *_timeout_s`).
    public var tcpIdleTimeout: UInt32
    public var udpIdleTimeout: UInt32
    public var tcpClosingTimeout: UInt32
    /// `[icmp] too_big_per_second` and `echo_per_second`, per worker.
    public var tooBigRepliesPerSecond: UInt32
    public var echoRepliesPerSecond: UInt32

    /// The config's defaults for everything but the flow table's size.
    public init(
        flowTableEntries: Int, tcpIdleTimeout: UInt32 = 300, udpIdleTimeout: UInt32 = 30, tcpClosingTimeout: UInt32 = 10,
        tooBigRepliesPerSecond: UInt32 = Worker.icmpRepliesPerSecond, echoRepliesPerSecond: UInt32 = Worker.echoRepliesPerSecond
    ) {
        self.flowTableEntries = flowTableEntries
        self.tcpIdleTimeout = tcpIdleTimeout
        self.udpIdleTimeout = udpIdleTimeout
        self.tcpClosingTimeout = tcpClosingTimeout
        self.tooBigRepliesPerSecond = tooBigRepliesPerSecond
        self.echoRepliesPerSecond = echoRepliesPerSecond
    }
}
