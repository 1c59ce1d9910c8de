// The control socket's server side: clients connect, send one request (a JSON object on one line)
// and get one reply (a JSON object on one line), then the connection closes (ControlProtocol.swift
// defines both). The control loop polls `pollRequests`; nothing here blocks. Each client has its
// own buffers: a request is read as it comes, a reply written as far as the socket takes it, the
// rest when the client reads (POLLOUT). Deadlines: `requestTimeout` to send a request,
// `replyTimeout` to take the reply; past either, or over `maxRequest` bytes, the client is dropped.
// At most `maxClients` at once (others wait in the listen backlog). Clients that ask the same
// read-only question in one turn share one reply, built once. No client can stall reloads, health
// checks or other clients.

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
        /// The reply, once the request was handled, and how much of it the socket took.
        var reply: [UInt8]?
        var written = 0
    }
    var clients: [Client] = []
    public static let requestTimeout = 2.0
    public static let replyTimeout = 5.0
    public static let maxRequest = 64 * 1024
    public static let maxClients = 64
    /// Clients dropped: no request in time, a reply not taken in time, a request too long.
    public private(set) var dropped: (silent: UInt64, slowReader: UInt64, oversized: UInt64) = (0, 0, 0)

    /// Why `path` is no safe place for the control socket (its directory writable by others), or
    /// nil; `ternctl check` and ternd's start both ask.
    public static func placeProblem(_ path: String) -> String? { UnixSocket.placeProblem(path) }

    /// Listens at `path` (mode 0600); refuses when another ternd answers there, when another user
    /// does, and when the directory lets others bind the name.
    public init(path: String) throws(SocketError) {
        self.path = path
        listenFD = try UnixSocket.listen(path)
    }

    /// What to poll: the listener (while there is room), readers for input, writers for room.
    var pollRequests: [pollfd] {
        (clients.count < ControlServer.maxClients ? [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)] : [])
            + clients.map { pollfd(fd: $0.fd, events: Int16($0.reply == nil ? POLLIN : POLLOUT), revents: 0) }
    }

    /// Accepts waiting clients, reads what they sent, answers complete requests, writes what the
    /// sockets take, drops the silent, the slow and the oversized. `now` is monotonic seconds.
    func service(now: Double, handle: (ControlCommand) -> ControlResponse) {
        while clients.count < ControlServer.maxClients {
            let fd = UnixSocket.accept(listenFD)
            guard fd >= 0 else { break }
            clients.append(Client(fd: fd, buffer: [], deadline: now + ControlServer.requestTimeout))
        }
        var shared: [[UInt8]: [UInt8]] = [:]  // this turn's replies to read-only requests
        var open: [Client] = []
        for var c in clients {
            if c.reply == nil { read(&c, now: now, handle: handle, shared: &shared) }
            guard c.fd >= 0 else { continue }  // gone without a request
            if c.reply == nil || write(&c, now: now) { open.append(c) }
        }
        clients = open
    }

    /// Takes what the client sent; once a line is complete (or the client misbehaved), sets its reply.
    private func read(
        _ c: inout Client, now: Double, handle: (ControlCommand) -> ControlResponse, shared: inout [[UInt8]: [UInt8]]
    ) {
        if let bytes = UnixSocket.readAvailable(c.fd) {
            if bytes.isEmpty && !c.buffer.contains(0x0A) {
                Glibc.close(c.fd)  // gone without a request
                c.fd = -1
                return
            }
            c.buffer += bytes
        }
        if let end = c.buffer.firstIndex(of: 0x0A) {
            let line = Array(c.buffer[..<end])
            if let known = shared[line] {
                c.reply = known
            } else {
                let reply: [UInt8]
                do throws(ControlFailure) {
                    let command = try ControlCommand(line: line)
                    reply = handle(command).line
                    if command.readOnly { shared[line] = reply }
                } catch {
                    reply = ControlResponse.failure(error.message).line
                }
                c.reply = reply
            }
        } else if c.buffer.count > ControlServer.maxRequest {
            dropped.oversized += 1
            c.reply = ControlResponse.failure("request longer than \(ControlServer.maxRequest) bytes").line
        } else if now >= c.deadline {
            dropped.silent += 1
            c.reply = ControlResponse.failure("no request within \(ControlServer.requestTimeout) s").line
        } else {
            return
        }
        c.buffer = []
        c.deadline = now + ControlServer.replyTimeout
    }

    /// Writes what the socket takes; false once the client is done with (reply sent, gone, or late).
    private func write(_ c: inout Client, now: Double) -> Bool {
        guard let reply = c.reply else { return true }
        while c.written < reply.count {
            let n = reply[c.written...].withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                c.written += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) && now < c.deadline { return true }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { dropped.slowReader += 1 }
            break
        }
        Glibc.close(c.fd)
        return false
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
