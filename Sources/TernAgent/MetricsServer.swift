// Prometheus scrapes: an HTTP server (SwiftNIO's HTTP/1 pipeline, on its own event-loop thread)
// answers GET /metrics. The text is rendered on the control thread, the only one that may touch
// snapshots: a scrape wakes the control loop through a pipe (`ControlExchange`) and waits for the
// rendered bytes. DPDK's telemetry thread asks the same way. The packet path never sees any of it.

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

    public init(host: String, port: Int, exchange: ControlExchange) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(exchange: exchange))
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

final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let exchange: ControlExchange
    var head: HTTPRequestHead?

    init(exchange: ControlExchange) { self.exchange = exchange }

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
            let keepAlive = h.isKeepAlive
            let headOnly = h.method == .HEAD
            DispatchQueue.global().async {
                let text = exchange.ask("metrics")
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
