// etcd's v3 API through its JSON gateway: HTTP/1.1 POSTs of JSON, keys and values in base64,
// 64-bit numbers as strings (etcd 3.4: /v3/kv/range, /v3/kv/put, /v3/kv/txn, /v3/kv/deleterange,
// /v3/lease/grant, /v3/lease/keepalive). HTTP framing is SwiftNIO's HTTP/1 codec, TLS (https
// endpoints, with a client certificate for etcd's --client-cert-auth) swift-nio-ssl's; each call
// opens a connection, has a deadline, and moves to the next endpoint when one fails. Calls block:
// they run on the fleet thread and in ternctl, never on the control thread.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TernConfig
import TernWire

public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A key's value as etcd holds it.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var modRevision: Int64
    public var lease: Int64
}

public final class EtcdClient: @unchecked Sendable {
    let endpoints: [FleetConfig.Endpoint]
    let timeout: TimeAmount
    let group: MultiThreadedEventLoopGroup
    /// For https endpoints: the CA and client certificate, loaded once.
    let tls: NIOSSLContext?
    /// The endpoint that answered last (tried first next time).
    var preferred = 0

    /// Throws when the TLS files cannot be loaded (their problem named).
    public init(endpoints: [FleetConfig.Endpoint], tls files: FleetConfig.TLSFiles = .init(), timeoutSeconds: Double = 1.5)
        throws(EtcdError)
    {
        self.endpoints = endpoints
        timeout = .milliseconds(Int64(timeoutSeconds * 1000))
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        guard endpoints.contains(where: \.tls) else {
            tls = nil
            return
        }
        do {
            var c = TLSConfiguration.makeClientConfiguration()
            if let ca = files.ca { c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
            if let cert = files.certificate, let key = files.key {
                c.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                c.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
            tls = try NIOSSLContext(configuration: c)
        } catch {
            try? group.syncShutdownGracefully()
            throw EtcdError("TLS: \(error)")
        }
    }

    /// A client for a node's `[fleet]`.
    public convenience init(_ fleet: FleetConfig) throws(EtcdError) { try self.init(endpoints: fleet.endpoints, tls: fleet.tls) }

    deinit { try? group.syncShutdownGracefully() }

    // MARK: the calls Tern makes

    /// Keys from `key` (with `prefix`: every key that starts with it), and the store's revision.
    public func range(_ key: String, prefix: Bool = false) throws(EtcdError) -> (kvs: [EtcdKeyValue], revision: Int64) {
        var body: [String: Any] = ["key": Self.base64(key)]
        if prefix { body["range_end"] = Self.base64(Self.prefixEnd(key)) }
        let r = try call("/v3/kv/range", body)
        let kvs = (r["kvs"] as? [[String: Any]] ?? []).map { kv in
            EtcdKeyValue(
                key: String(decoding: Self.unbase64(kv["key"]), as: UTF8.self), value: Self.unbase64(kv["value"]),
                modRevision: Self.int(kv["mod_revision"]), lease: Self.int(kv["lease"]))
        }
        return (kvs, Self.int((r["header"] as? [String: Any])?["revision"]))
    }

    /// Writes `value` at `key` if its modification revision is still `expected` (0: the key must
    /// not exist). Returns false when another writer got there first.
    public func compareAndPut(_ key: String, _ value: [UInt8], expected: Int64) throws(EtcdError) -> Bool {
        let compare: [String: Any] = [
            "key": Self.base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": String(expected),
        ]
        let put: [String: Any] = ["request_put": ["key": Self.base64(key), "value": Data(value).base64EncodedString()]]
        let r = try call("/v3/kv/txn", ["compare": [compare], "success": [put]])
        return r["succeeded"] as? Bool ?? false
    }

    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) {
        var body: [String: Any] = ["key": Self.base64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { body["lease"] = String(lease) }
        _ = try call("/v3/kv/put", body)
    }

    /// Deletes `key`; returns how many keys went.
    public func delete(_ key: String) throws(EtcdError) -> Int64 {
        Self.int(try call("/v3/kv/deleterange", ["key": Self.base64(key)])["deleted"])
    }

    /// A lease of `ttl` seconds: keys put with it go when it is not kept alive.
    public func grantLease(ttl: Int) throws(EtcdError) -> Int64 {
        let id = Self.int(try call("/v3/lease/grant", ["TTL": String(ttl)])["ID"])
        guard id != 0 else { throw EtcdError("etcd granted no lease") }
        return id
    }

    /// Renews a lease; false when it is gone (expired): grant another. The gateway streams this
    /// call's replies, each wrapped in "result"; one request gets one.
    public func keepAlive(_ lease: Int64) throws(EtcdError) -> Bool {
        let r = try call("/v3/lease/keepalive", ["ID": String(lease)])
        return Self.int((r["result"] as? [String: Any])?["TTL"]) > 0
    }

    // MARK: transport

    func call(_ path: String, _ body: [String: Any]) throws(EtcdError) -> [String: Any] {
        guard let json = try? JSONSerialization.data(withJSONObject: body) else { throw EtcdError("cannot encode a request") }
        var failures: [String] = []
        for k in 0..<endpoints.count {
            let i = (preferred + k) % endpoints.count
            do {
                let (status, reply) = try post(endpoints[i], path, Array(json))
                guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any] else {
                    throw EtcdError("HTTP \(status), not JSON")
                }
                if status != 200 {
                    // An answer from etcd itself (a failed request, no quorum): another member may do better.
                    throw EtcdError("HTTP \(status): \(object["error"] ?? object["message"] ?? "")")
                }
                preferred = i
                return object
            } catch {
                failures.append("\(endpoints[i].description): \(error)")
            }
        }
        throw EtcdError(failures.joined(separator: "; "))
    }

    func post(_ e: FleetConfig.Endpoint, _ path: String, _ body: [UInt8]) throws(EtcdError) -> (Int, [UInt8]) {
        let loop = group.next()
        let promise = loop.makePromise(of: (Int, [UInt8]).self)
        let context = e.tls ? tls : nil
        // A name is checked against the certificate; an IP address against its IP SANs.
        let serverName = IPAddress(e.host) == nil ? e.host : nil
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ReplyCollector(promise: promise))
                }
            }
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(EtcdError("no answer within \(self.timeout.nanoseconds / 1_000_000) ms"))
        }
        defer { timer.cancel() }
        let channel: Channel
        do {
            channel = try bootstrap.connect(host: e.host, port: e.port).wait()
        } catch {
            promise.fail(error)
            throw EtcdError("cannot connect: \(error)")
        }
        defer { channel.close(promise: nil) }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: "\(e.host):\(e.port)")
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: String(body.count))
        head.headers.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            return try promise.futureResult.wait()
        } catch let error as EtcdError {
            throw error
        } catch {
            throw EtcdError("\(error)")
        }
    }

    // MARK: encoding

    static func base64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    static func unbase64(_ v: Any?) -> [UInt8] {
        guard let s = v as? String, let d = Data(base64Encoded: s) else { return [] }
        return Array(d)
    }

    /// etcd writes 64-bit numbers as strings.
    static func int(_ v: Any?) -> Int64 {
        if let s = v as? String { return Int64(s) ?? 0 }
        if let n = v as? NSNumber { return n.int64Value }
        return 0
    }

    /// The end of the key range holding every key that starts with `prefix`.
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }
}

/// Gathers one HTTP response (status and body) and completes the promise.
final class ReplyCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<(Int, [UInt8])>
    var status = 0
    var body: [UInt8] = []

    init(promise: EventLoopPromise<(Int, [UInt8])>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer):
            if body.count + buffer.readableBytes > 16 << 20 {
                promise.fail(EtcdError("reply over 16 MiB"))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end: promise.succeed((status, body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) { promise.fail(EtcdError("connection closed before the reply")) }
}
