// The system calls of health probes, fenced here: non-blocking sockets toward a backend, their
// connection result, sends, receives and one poll over all of them.

import TernWire

#if canImport(Glibc)
    import Glibc
#endif

enum ProbeSocket {
    /// A non-blocking TCP (or UDP) socket connecting to `address`:`port`; nil and the reason when
    /// it cannot even start.
    static func open(_ address: IPAddress, port: UInt16, udp: Bool) -> (fd: Int32?, error: String) {
        let type =
            (udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)) | Int32(SOCK_NONBLOCK.rawValue)
            | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(address.isV6 ? AF_INET6 : AF_INET, type, 0)
        guard fd >= 0 else { return (nil, "socket: \(String(cString: strerror(errno)))") }
        var (storage, length) = Netlink.socketAddress(address, port: port)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let reason = String(cString: strerror(errno))
            close(fd)
            return (nil, "connect: \(reason)")
        }
        return (fd, "")
    }

    /// The outcome of a non-blocking connect once the socket is writable: nil, or the error.
    static func connectError(_ fd: Int32) -> String? {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return String(cString: strerror(errno)) }
        return error == 0 ? nil : String(cString: strerror(error))
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count
    }

    /// What is there to read: bytes, [] at end of stream, nil when nothing yet; or an error.
    static func receive(_ fd: Int32) -> (bytes: [UInt8]?, error: String?) {
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if n >= 0 { return (Array(buffer[0..<n]), nil) }
        if errno == EAGAIN || errno == EWOULDBLOCK { return (nil, nil) }
        return (nil, String(cString: strerror(errno)))
    }

    /// Readiness of each (fd, wants write) without waiting: (writable or readable, error or hang-up).
    static func poll(_ sockets: [(fd: Int32, write: Bool)]) -> [(ready: Bool, failed: Bool)] {
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16($0.write ? POLLOUT : POLLIN), revents: 0) }
        _ = Glibc.poll(&fds, nfds_t(fds.count), 0)
        return fds.map { f in
            (f.revents & Int16(POLLOUT | POLLIN) != 0, f.revents & Int16(POLLERR | POLLNVAL) != 0)
        }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// How long ago the kernel received what settled the probe, in seconds: for TCP the last
    /// data (`dataReceived`) or the last ACK, which for a connect is the SYN-ACK (`TCP_INFO`); for
    /// UDP the last datagram read (`SIOCGSTAMP`, wall clock). nil when the kernel will not say. A
    /// loop that ran late then still judges an answer by when it came, not when it was read.
    static func answerAge(_ fd: Int32, udp: Bool, dataReceived: Bool) -> Double? {
        if udp {
            var stamp = timeval()
            let siocgstamp: UInt = 0x8906  // SIOCGSTAMP (not exported by the Glibc module)
            guard ioctl(fd, siocgstamp, &stamp) == 0 else { return nil }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let age = Double(now.tv_sec - stamp.tv_sec) + Double(now.tv_nsec / 1000 - Int(stamp.tv_usec)) / 1e6
            return max(0, age)
        }
        var info = tcp_info()
        var size = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &size) == 0 else { return nil }
        return Double(dataReceived ? info.tcpi_last_data_recv : info.tcpi_last_ack_recv) / 1000
    }
}
