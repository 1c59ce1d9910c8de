// The control socket's server side: clients connect, send one request (a JSON object on one line)
// and get one reply (a JSON object on one line), then the connection closes. The control loop
// polls its descriptors; nothing here blocks. A client that says nothing is dropped after
// `requestTimeout`, one that sends more than `maxRequest` bytes at once, and a bad request gets an
// error reply: no client can stall reloads or other clients.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One request: `{"command": "drain", "backend": "10.1.0.1", "vip": "192.0.2.10:80/tcp"}`.
public struct ControlRequest: Sendable {
    public var command: String
    public var arguments: [String: String]

    public init(command: String, arguments: [String: String] = [:]) {
        self.command = command
        self.arguments = arguments
    }

    /// Parses a request line; nil with the reason when it is not a JSON object with a `command`.
    public static func parse(_ line: [UInt8]) -> Result<ControlRequest, ControlFailure> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
            return .failure(ControlFailure("the request is not a JSON object"))
        }
        guard let command = object["command"] as? String else {
            return .failure(ControlFailure("the request has no \"command\""))
        }
        var arguments: [String: String] = [:]
        for (k, v) in object where k != "command" {
            guard let s = v as? String else { return .failure(ControlFailure("argument \"\(k)\" must be a string")) }
            arguments[k] = s
        }
        return .success(ControlRequest(command: command, arguments: arguments))
    }

    /// The line a client sends.
    public var line: [UInt8] {
        var object: [String: Any] = arguments
        object["command"] = command
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return Array(data) + [0x0A]
    }
}

public struct ControlFailure: Error, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A reply: a JSON object with `"ok"`, and `"error"` when not ok.
public enum ControlReply {
    public static func ok(_ fields: [String: Any] = [:]) -> [String: Any] { fields.merging(["ok": true]) { a, _ in a } }
    public static func error(_ message: String) -> [String: Any] { ["ok": false, "error": message] }

    public static func line(_ reply: [String: Any]) -> [UInt8] {
        let data =
            (try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{\"ok\":false,\"error\":\"reply not encodable\"}".utf8)
        return Array(data) + [0x0A]
    }
}

public final class ControlServer {
    public let path: String
    let listenFD: Int32
    struct Client {
        var fd: Int32
        var buffer: [UInt8]
        var deadline: Double
    }
    var clients: [Client] = []
    public static let requestTimeout = 2.0
    public static let maxRequest = 64 * 1024
    public static let maxClients = 64

    /// Listens at `path` (mode 0600); refuses when another ternd answers there.
    public init(path: String) throws(SocketError) {
        self.path = path
        listenFD = try UnixSocket.listen(path)
    }

    /// Descriptors to poll for input.
    var descriptors: [Int32] { [listenFD] + clients.map(\.fd) }

    /// Accepts waiting clients, reads what they sent, answers complete requests, drops the silent
    /// and the oversized. `now` is monotonic seconds.
    func service(now: Double, handle: (ControlRequest) -> [String: Any]) {
        while clients.count < ControlServer.maxClients {
            let fd = UnixSocket.accept(listenFD)
            guard fd >= 0 else { break }
            clients.append(Client(fd: fd, buffer: [], deadline: now + ControlServer.requestTimeout))
        }
        var open: [Client] = []
        for var c in clients {
            if let bytes = UnixSocket.readAvailable(c.fd) {
                if bytes.isEmpty && !c.buffer.contains(0x0A) {
                    Glibc.close(c.fd)  // gone without a request
                    continue
                }
                c.buffer += bytes
            }
            if let end = c.buffer.firstIndex(of: 0x0A) {
                let reply: [String: Any]
                switch ControlRequest.parse(Array(c.buffer[..<end])) {
                case .success(let request): reply = handle(request)
                case .failure(let f): reply = ControlReply.error(f.message)
                }
                UnixSocket.writeAll(c.fd, ControlReply.line(reply))
                Glibc.close(c.fd)
            } else if c.buffer.count > ControlServer.maxRequest {
                UnixSocket.writeAll(
                    c.fd, ControlReply.line(ControlReply.error("request longer than \(ControlServer.maxRequest) bytes")))
                Glibc.close(c.fd)
            } else if now >= c.deadline {
                UnixSocket.writeAll(
                    c.fd, ControlReply.line(ControlReply.error("no request within \(ControlServer.requestTimeout) s")))
                Glibc.close(c.fd)
            } else {
                open.append(c)
            }
        }
        clients = open
    }

    /// Closes every connection and removes the socket file.
    public func close() {
        for c in clients { Glibc.close(c.fd) }
        clients = []
        Glibc.close(listenFD)
        unlink(path)
    }
}

/// The client side: sends one request and returns the reply object.
public enum ControlClient {
    public static func send(_ request: ControlRequest, socket path: String) throws(SocketError) -> [String: Any] {
        let fd = try UnixSocket.connect(path)
        guard fd >= 0 else { throw SocketError("cannot connect to \(path)") }
        defer { Glibc.close(fd) }
        guard UnixSocket.writeAll(fd, request.line, timeoutMilliseconds: 5000) else { throw SocketError("write to \(path)") }
        let reply = UnixSocket.readToEnd(fd)
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any] else {
            throw SocketError(message: "\(path): no reply, or not JSON (\(reply.count) bytes)")
        }
        return object
    }
}
