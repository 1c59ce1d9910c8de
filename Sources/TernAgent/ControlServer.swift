// The control socket's server side: clients connect, send one request (a JSON object on one line)
// and get one reply (a JSON object on one line), then the connection closes (ControlProtocol.swift
// defines both). The control loop
// polls its descriptors; nothing here blocks. A client that says nothing is dropped after
// `requestTimeout`, one that sends more than `maxRequest` bytes at once, and a bad request gets an
// error reply: no client can stall reloads or other clients.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

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
    func service(now: Double, handle: (ControlCommand) -> ControlResponse) {
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
                let reply: ControlResponse
                do {
                    reply = handle(try ControlCommand(line: Array(c.buffer[..<end])))
                } catch {
                    reply = .failure(error.message)
                }
                UnixSocket.writeAll(c.fd, reply.line)
                Glibc.close(c.fd)
            } else if c.buffer.count > ControlServer.maxRequest {
                UnixSocket.writeAll(c.fd, ControlResponse.failure("request longer than \(ControlServer.maxRequest) bytes").line)
                Glibc.close(c.fd)
            } else if now >= c.deadline {
                UnixSocket.writeAll(c.fd, ControlResponse.failure("no request within \(ControlServer.requestTimeout) s").line)
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

/// The client side: sends one command and returns the reply line as it came.
public enum ControlClient {
    /// How long a whole exchange (connect, send, receive) may take by default: a frozen or stalled
    /// ternd is reported as unreachable instead of holding the client.
    public static let defaultTimeout = 5.0

    /// Fails when the exchange (connect included) takes longer than `timeoutSeconds`, and when the socket is served
    /// by a process that is neither root nor this user (someone else bound the path).
    public static func exchange(_ command: ControlCommand, socket path: String, timeoutSeconds: Double = defaultTimeout)
        throws(SocketError) -> [UInt8]
    {
        let deadline = UnixSocket.monotonicSeconds() + timeoutSeconds
        let fd = try UnixSocket.connect(path, timeoutSeconds: timeoutSeconds)
        guard fd >= 0 else { throw SocketError("cannot connect to \(path)") }
        defer { Glibc.close(fd) }
        let owner = UnixSocket.peerUser(fd)
        guard let owner, owner == 0 || owner == geteuid() else {
            throw SocketError(
                message: "\(path) is served by user \(owner.map(String.init) ?? "?"), not root or this user: not trusted")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let millis = Int32(max(1, min(timeoutSeconds, 60) * 1000))
        guard UnixSocket.writeAll(fd, command.line, timeoutMilliseconds: millis) else { throw SocketError("write to \(path)") }
        guard let reply = UnixSocket.readToEnd(fd, deadline: deadline) else {
            throw SocketError(message: "\(path): no reply within \(timeoutSeconds) s")
        }
        guard (try? ControlWire.decode(ReplyHeader.self, from: reply)) != nil else {
            throw SocketError(message: "\(path): no reply, or not JSON (\(reply.count) bytes)")
        }
        return reply
    }
}
