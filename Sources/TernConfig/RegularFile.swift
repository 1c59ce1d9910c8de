// Reading a config or an imported file: regular files only, bounded. A FIFO, device or socket
// given as a config path or an `include` would block `open` or `read` forever (or read without
// end), so the file is opened without blocking and refused unless `fstat` says it is regular.

#if canImport(Glibc)
    import Glibc
#endif

public enum RegularFile {
    /// At most `limit + 1` bytes of the regular file at `path` (one more than allowed tells the
    /// caller it is too big), or why it cannot be read.
    public static func read(_ path: String, limit: Int) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return .failure(.cannotOpen(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.cannotOpen(String(cString: strerror(errno)))) }
        guard st.st_mode & S_IFMT == S_IFREG else { return .failure(.notRegular) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count <= limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(.cannotOpen(String(cString: strerror(errno)))) }
            if n == 0 { break }
            out += buffer[..<n]
        }
        return .success(out)
    }

    public enum ReadFailure: Error, Equatable, CustomStringConvertible {
        case cannotOpen(String)
        case notRegular

        public var description: String {
            switch self {
            case .cannotOpen(let reason): "cannot read the file: \(reason)"
            case .notRegular: "not a regular file (a FIFO, device or socket is not read)"
            }
        }
    }
}
