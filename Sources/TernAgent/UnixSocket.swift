// The control socket's system calls, fenced in one file: a Unix stream socket that listens at a
// path (mode 0600: root only), accepts without blocking, and a client that connects, sends one
// request line and reads one reply. Each wrapper names the call it makes.

#if canImport(Glibc)
    import Glibc
#endif

public struct SocketError: Error, CustomStringConvertible {
    public var description: String
    /// The config names an unsafe place for the socket, or someone else serves it: fixed by the
    /// operator, not by a restart (ternd exits 78 for these).
    public var isConfigProblem = false
    init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
    init(message: String, isConfigProblem: Bool = false) {
        description = message
        self.isConfigProblem = isConfigProblem
    }
}

/// systemd's readiness protocol (sd_notify(3)) for `Type=notify` units: nothing without $NOTIFY_SOCKET.
public enum SystemdNotify {
    @discardableResult
    public static func send(_ state: String) -> Bool { UnixSocket.notifySystemd(state) }
}

enum UnixSocket {
    /// A `sockaddr_un` for `path` (`sun_path` holds 107 bytes and a NUL).
    static func address(_ path: String) throws(SocketError) -> sockaddr_un {
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: a.sun_path) else {
            throw SocketError(message: "socket path too long (\(bytes.count) bytes; at most 107): \(path)")
        }
        withUnsafeMutableBytes(of: &a.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return a
    }

    /// `socket(AF_UNIX, SOCK_STREAM)` and `connect`; the (blocking) descriptor, or -1 with errno
    /// set. The connect itself does not block: a server that stopped accepting (frozen, its
    /// backlog full) answers EAGAIN, retried until `timeoutSeconds` have passed (then ETIMEDOUT).
    static func connect(_ path: String, timeoutSeconds: Double = 5) throws(SocketError) -> Int32 {
        var a = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        let deadline = monotonicSeconds() + timeoutSeconds
        while true {
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if rc == 0 { break }
            var saved = errno
            if saved == EAGAIN && monotonicSeconds() < deadline {
                usleep(10_000)
                continue
            }
            if saved == EAGAIN { saved = ETIMEDOUT }
            close(fd)
            errno = saved
            return -1
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// Why the directory of `path` is no place for a control socket, or nil: one that users
    /// other than root (and this user) can write lets them bind the name first, and ternctl and
    /// the BGP feed would talk to them. A directory that does not exist yet is created 0755.
    static func placeProblem(_ path: String) -> String? {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var st = stat()
        guard stat(directory, &st) == 0 else { return nil }
        if st.st_uid != 0 && st.st_uid != geteuid() {
            return "\(directory) belongs to user \(st.st_uid): that user could bind \(path) first; use a directory "
                + "only root can write (the default is /run/tern)"
        }
        if st.st_mode & 0o022 != 0 {
            return "\(directory) is writable by others (mode \(String(st.st_mode & 0o7777, radix: 8))): another user "
                + "could bind \(path) first; use a directory only root can write (the default is /run/tern)"
        }
        return nil
    }

    /// Listens at `path`, created 0600. A socket file left by a process that is gone is replaced;
    /// one that still answers is refused (another ternd is running), and so is one served by
    /// another user (squatted) or in a directory others can write.
    static func listen(_ path: String) throws(SocketError) -> Int32 {
        var a = try address(path)
        if let problem = placeProblem(path) { throw SocketError(message: problem, isConfigProblem: true) }
        if access(path, F_OK) == 0 {
            let probe = try connect(path, timeoutSeconds: 1)
            // Connected, or a listener whose backlog stays full (frozen): alive either way.
            if probe >= 0 || errno == ETIMEDOUT {
                let owner = probe >= 0 ? peerUser(probe) : nil
                if probe >= 0 { close(probe) }
                if let owner, owner != 0 && owner != geteuid() {
                    throw SocketError(
                        message: "\(path) is served by user \(owner), not by a ternd: someone else bound it first",
                        isConfigProblem: true)
                }
                throw SocketError(message: "\(path): another ternd answers on this control socket")
            }
            unlink(path)
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty { _ = mkdir(directory, 0o755) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        // No moment in which others may connect: the file is created 0600 (umask 0177).
        let oldMask = umask(0o177)
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(oldMask)
        guard rc == 0 else {
            let e = SocketError("bind \(path)")
            close(fd)
            throw e
        }
        guard Glibc.listen(fd, 16) == 0 else {
            let e = SocketError("listen \(path)")
            close(fd)
            throw e
        }
        return fd
    }

    /// `accept` (the listening socket does not block) and `fcntl(O_NONBLOCK)` on the client;
    /// -1 when no client waits.
    static func accept(_ fd: Int32) -> Int32 {
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return -1 }
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        return client
    }

    /// Reads what is there without blocking (`read`): bytes, empty at end of stream, nil when
    /// nothing is there yet.
    static func readAvailable(_ fd: Int32, max: Int = 4096) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, max) }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? nil : [] }
        return Array(buffer[..<n])
    }

    /// Writes all of `bytes`, waiting at most `timeoutMilliseconds` for room (`poll`, `write`).
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], timeoutMilliseconds: Int32 = 1000) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
                continue
            }
            guard n < 0 && (errno == EAGAIN || errno == EINTR) else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, timeoutMilliseconds) <= 0 { return false }
        }
        return true
    }

    /// Everything until the peer closes, at most `limit` bytes, waiting no later than `deadline`
    /// (monotonic seconds; nil: no limit); nil when the deadline passed first.
    static func readToEnd(_ fd: Int32, limit: Int = 16 << 20, deadline: Double? = nil) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            if let deadline {
                let left = deadline - monotonicSeconds()
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if left <= 0 || poll(&p, 1, Int32(min(left * 1000 + 1, 60_000))) == 0 { return nil }
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { break }
            out += buffer[..<n]
        }
        return out
    }

    /// The user id of the process at the other end (`SO_PEERCRED`), nil if the kernel will not say.
    static func peerUser(_ fd: Int32) -> uid_t? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc's module hides it behind _GNU_SOURCE).
        var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var size = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0, size == 12 else { return nil }
        return credentials.uid
    }

    /// Sends `state` to systemd's notification socket ($NOTIFY_SOCKET: a path, or `@name` for an
    /// abstract one) as one datagram; false when there is none or the send failed.
    static func notifySystemd(_ state: String) -> Bool {
        guard let name = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), name.count > 1,
            var a = try? address(name.hasPrefix("@") ? " " + name.dropFirst() : name)
        else { return false }
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        if name.hasPrefix("@") {  // abstract: a leading NUL, and the length covers only the name
            withUnsafeMutableBytes(of: &a.sun_path) { $0[0] = 0 }
            length = socklen_t(MemoryLayout<sa_family_t>.size + name.utf8.count)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(state.utf8)
        let sent = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), $0, length)
            }
        }
        return sent == bytes.count
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
