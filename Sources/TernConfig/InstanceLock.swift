// One ternd per DPDK file prefix: a lock file (`flock`) under /run/tern holding the pid. DPDK's
// own lock on /var/run/dpdk/PREFIX/config does not exist with --no-shconf, where two daemons
// would otherwise both start on the same devices.

#if canImport(Glibc)
    import Glibc
#endif

public final class InstanceLock {
    public let path: String
    var fd: Int32

    public enum Failure: Error, CustomStringConvertible {
        case held(path: String, pid: Int32?)
        case cannotOpen(path: String, reason: String)

        public var description: String {
            switch self {
            case .held(let path, let pid):
                "another ternd\(pid.map { " (pid \($0))" } ?? "") runs with this --file-prefix (lock \(path)); "
                    + "stop it or choose another --file-prefix"
            case .cannotOpen(let path, let reason): "cannot create the lock file \(path): \(reason)"
            }
        }
    }

    /// Takes the lock for `prefix` in `directory` (created if missing), writing this pid into it.
    public init(prefix: String, directory: String = "/run/tern") throws(Failure) {
        let safe = String(prefix.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        path = "\(directory)/ternd-\(safe).lock"
        _ = mkdir(directory, 0o755)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buffer, 31)
            close(fd)
            let text = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
            throw .held(path: path, pid: Int32(text.trimmingCharacters(in: " \n")))
        }
        _ = ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        self.fd = fd
    }

    /// Removes the lock file and lets go of the lock (also on deinit).
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }
}

extension String {
    /// Without Foundation: `set`'s characters dropped from both ends.
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
