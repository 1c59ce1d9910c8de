// Prometheus scrapes: an HTTP server (SwiftNIO's HTTP/1 pipeline, on its own event-loop thread)
// answers GET /metrics. The figures are copied on the control thread, the only one that may touch
// snapshots: a scrape wakes the control loop through a pipe (`ControlExchange`), waits for the
// copy and writes the text itself. DPDK's telemetry thread asks the same way. The packet path
// never sees any of it.
//
// Hostile clients: at most `maxConnections` at once (more are closed on accept, so descriptors
// stay for health checks and the control socket); a connection must start a request within
// `idleTimeout` and finish its head within `headTimeout` of its first byte; a request line that is
// not HTTP/1.x (HTTP/0.9 would wait forever) and a malformed request get 400 and are closed.

import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// GET /metrics over HTTP/1.1 on `host:port`.
public final class MetricsServer {
    let group: MultiThreadedEventLoopGroup
    let channel: Channel
    public let address: String
    public static let maxConnections = 32
    static let idleTimeout = TimeAmount.seconds(60)
    static let headTimeout = TimeAmount.seconds(10)
    let counts: Counts

    /// What the server refused, for `tern_metrics_*` (written on the event loop, read by scrapes).
    final class Counts: Sendable {
        let open = Atomic<Int>(0)
        let refused = Atomic<UInt64>(0)
        let timedOut = Atomic<UInt64>(0)
        let malformed = Atomic<UInt64>(0)
    }

    public init(host: String, port: Int, exchange: ControlExchange) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let counts = Counts()
        self.counts = counts
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // The address may be one that appears only later (the host interface's, made by ternd
            // itself): bind it anyway; connections arrive once it exists.
            .serverChannelOption(
                ChannelOptions.Types.SocketOption(level: .ip, name: .init(rawValue: IP_FREEBIND)), value: 1
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard counts.open.add(1, ordering: .relaxed).newValue <= MetricsServer.maxConnections else {
                        counts.open.subtract(1, ordering: .relaxed)
                        counts.refused.add(1, ordering: .relaxed)
                        throw ChannelError.ioOnClosedChannel  // NIO closes the connection
                    }
                    channel.closeFuture.whenComplete { _ in counts.open.subtract(1, ordering: .relaxed) }
                    try channel.pipeline.syncOperations.addHandler(RequestGuard(counts: counts))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(exchange: exchange, counts: counts))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        address = "\(host):\(channel.localAddress?.port ?? port)"
    }

    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// In front of the HTTP decoder, on raw bytes: the timeouts, and the first request line's version.
final class RequestGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let counts: MetricsServer.Counts
    var timer: Scheduled<Void>?
    /// Inside a request head (between its first byte and its blank line).
    var inHead = false
    /// The last four bytes seen, to find a head's end across reads.
    var recent: UInt32 = 0
    /// The connection's first line so far, until it is checked.
    var firstLine: [UInt8]? = []

    init(counts: MetricsServer.Counts) { self.counts = counts }

    func channelActive(context: ChannelHandlerContext) {
        arm(context, MetricsServer.idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            if !inHead {
                inHead = true
                arm(context, MetricsServer.headTimeout)
            }
            recent = recent << 8 | UInt32(byte)
            if recent == 0x0D0A_0D0A || recent & 0xFFFF == 0x0A0A {
                inHead = false
                recent = 0
                arm(context, MetricsServer.idleTimeout)
            }
            guard var line = firstLine else { continue }
            if byte == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                guard line.count > 9, line.suffix(9).starts(with: Array(" HTTP/1.".utf8)) else {
                    return refuse(context, "request line is not HTTP/1.x")
                }
                firstLine = nil
            } else if line.count >= 8192 {
                return refuse(context, "request line longer than 8192 bytes")
            } else {
                line.append(byte)
                firstLine = line
            }
        }
        context.fireChannelRead(data)
    }

    /// 400 written straight to the socket (nothing behind this handler has seen the request).
    func refuse(_ context: ChannelHandlerContext, _ why: String) {
        counts.malformed.add(1, ordering: .relaxed)
        let body = why + "\n"
        var out = context.channel.allocator.buffer(capacity: 160)
        out.writeString(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        let channel = context.channel
        context.writeAndFlush(wrapInboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Closes the connection after `timeout` unless re-armed.
    func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount) {
        timer?.cancel()
        let channel = context.channel
        let counts = self.counts
        timer = context.eventLoop.scheduleTask(in: timeout) {
            counts.timedOut.add(1, ordering: .relaxed)
            channel.close(promise: nil)
        }
    }
}

extension MetricsServer.Counts {
    var figures: MetricsServerFigures {
        MetricsServerFigures(
            open: open.load(ordering: .relaxed), refused: refused.load(ordering: .relaxed),
            timedOut: timedOut.load(ordering: .relaxed), malformed: malformed.load(ordering: .relaxed))
    }
}

final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let exchange: ControlExchange
    let counts: MetricsServer.Counts
    var head: HTTPRequestHead?

    init(exchange: ControlExchange, counts: MetricsServer.Counts) {
        self.exchange = exchange
        self.counts = counts
    }

    /// A request NIO's parser refused: its error handler has written 400 with `Connection: close`;
    /// close as it says.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is HTTPParserError { counts.malformed.add(1, ordering: .relaxed) }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            let path = h.uri.split(separator: "?").first.map(String.init) ?? h.uri
            guard h.method == .GET || h.method == .HEAD, path == "/metrics" else {
                respond(
                    context, status: path == "/metrics" ? .methodNotAllowed : .notFound,
                    body: Array("not found; try GET /metrics\n".utf8),
                    keepAlive: h.isKeepAlive)
                return
            }
            // Wait for the control thread off the event loop, then answer on it.
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            let exchange = self.exchange
            let counts = self.counts
            let keepAlive = h.isKeepAlive
            let headOnly = h.method == .HEAD
            DispatchQueue.global().async {
                let text = exchange.ask("metrics", as: MetricsSample.self)?.text(server: counts.figures)
                loop.execute {
                    let (handler, context) = bound.value
                    if let text {
                        handler.respond(
                            context, status: .ok, body: text, keepAlive: keepAlive,
                            contentType: "text/plain; version=0.0.4; charset=utf-8", headOnly: headOnly)
                    } else {
                        handler.respond(
                            context, status: .serviceUnavailable, body: Array("ternd's control thread is busy\n".utf8),
                            keepAlive: keepAlive, headOnly: headOnly)
                    }
                }
            }
        }
    }

    func respond(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, body: [UInt8], keepAlive: Bool,
        contentType: String = "text/plain; charset=utf-8", headOnly: Bool = false
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        // HEAD: the headers GET would have (Content-Length included), no body (RFC 9110 9.3.2).
        if !headOnly {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
