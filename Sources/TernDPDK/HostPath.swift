// The host path: a kernel interface (DPDK's net_tap) beside each data port that has
// `host_interface`, so the node's own traffic (ARP and ND, BGP, ssh, health checks) reaches its
// kernel although DPDK owns the NIC. Workers never make the TAP's system calls: they put
// host-bound frames on a single-producer ring per worker and port (a full ring drops and counts);
// one host-path thread moves them to the TAP, and passes what the kernel writes to the TAP on a
// ring to worker 0, which transmits it on the data port with its own frames (so no device needs
// a TX queue more than it has workers, and no queue has two threads).

import CDPDK
import Synchronization
import TernMetrics
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

public enum HostInterface {
    /// Whether the existing interface `name` is a persistent multi-queue TAP (`ip tuntap add dev
    /// NAME mode tap multi_queue`: tun_flags has IFF_TAP, IFF_MULTI_QUEUE and IFF_PERSIST), which
    /// ternd attaches to and leaves in place; nil when it is no tun device.
    public static func isPersistentTAP(_ name: String) -> Bool? {
        guard !name.contains("/"), let f = fopen("/sys/class/net/\(name)/tun_flags", "r") else { return nil }
        defer { fclose(f) }
        var line = [UInt8](repeating: 0, count: 32)
        let n = fread(&line, 1, 31, f)
        let text = String(decoding: line[..<n], as: UTF8.self).filter { !$0.isWhitespace }
        guard text.hasPrefix("0x"), let flags = UInt32(text.dropFirst(2), radix: 16) else { return nil }
        // IFF_TAP | IFF_MULTI_QUEUE | IFF_PERSIST (net_tap attaches without IFF_NO_PI, which clears it).
        let wanted: UInt32 = 0x0002 | 0x0100 | 0x0800
        return flags & wanted == wanted
    }

    /// Creates the kernel interface `name` with `mac` as a DPDK port
    /// (`rte_vdev_init("net_tap_NAME", "iface=NAME,mac=MAC")`) and returns it.
    public static func create(name: String, mac: MACAddress) throws(DPDKError) -> Port {
        let device = "net_tap_\(name)"
        let rc = rte_vdev_init(device, "iface=\(name),mac=\(mac)")
        guard rc == 0 else {
            throw DPDKError("cannot create TAP interface \(name) (rte_vdev_init \(device); EAL's lines above say why)", code: rc)
        }
        return try Port(named: device)
    }
}

/// A ring of mbufs from one producer to one consumer (`rte_ring_create` with SP/SC flags).
public final class MbufRing: @unchecked Sendable {
    public let pointer: OpaquePointer

    /// `count`: a power of two; the ring holds `count - 1` mbufs.
    public init(name: String, count: UInt32) throws(DPDKError) {
        guard let p = rte_ring_create(name, count, EAL.socketID, UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)) else {
            throw DPDKError("rte_ring_create(\(name), \(count))", code: tern_errno())
        }
        pointer = p
    }

    deinit { rte_ring_free(pointer) }
}

public final class HostPathLoop: @unchecked Sendable {
    /// One data port's host path.
    public struct Link: Sendable {
        public var tap: UInt16
        /// One per worker: frames that worker found host-bound on this link's data port.
        public var toKernel: [MbufRing]
        /// What the kernel sent, for worker 0 to transmit on the data port.
        public var fromKernel: MbufRing

        public init(tap: UInt16, toKernel: [MbufRing], fromKernel: MbufRing) {
            self.tap = tap
            self.toKernel = toKernel
            self.fromKernel = fromKernel
        }
    }

    public let links: [Link]
    public let stats: CounterBlock
    let stop = Atomic<Bool>(false)
    var thread = pthread_t()
    var started = false

    public init(links: [Link]) {
        self.links = links
        stats = CounterBlock.allocate()
    }

    deinit { stats.deallocate() }

    /// Starts the thread (`rte_ctrl_thread_create`, named tern-host).
    public func start() throws(DPDKError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = rte_ctrl_thread_create(
            &thread, "tern-host", nil,
            { raw in
                let loop = Unmanaged<HostPathLoop>.fromOpaque(raw!).takeRetainedValue()
                loop.run()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<HostPathLoop>.fromOpaque(context).release()
            throw DPDKError("rte_ctrl_thread_create(tern-host)", code: rc)
        }
        started = true
    }

    /// Stops the thread, waits for it, and frees what is still queued for the kernel. Call after
    /// the workers stopped (nothing enqueues any more) and before the ports close.
    public func stopAndJoin() {
        stop.store(true, ordering: .releasing)
        if started { pthread_join(thread, nil) }
        started = false
        let burst = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 64)
        defer { burst.deallocate() }
        for link in links {
            for ring in link.toKernel + [link.fromKernel] {
                while true {
                    let n = tern_ring_dequeue_burst(ring.pointer, burst, 64)
                    if n == 0 { break }
                    tern_mbuf_free_bulk(burst, n)
                }
            }
        }
    }

    func run() {
        let size = 32
        let burst = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: size)
        defer { burst.deallocate() }
        while !stop.load(ordering: .acquiring) {
            var moved = 0
            for link in links {
                for ring in link.toKernel {
                    let n = Int(tern_ring_dequeue_burst(ring.pointer, burst, UInt32(size)))
                    moved += n
                    toKernel(burst, n, tap: link.tap)
                }
                let n = Int(tern_rx_burst(link.tap, 0, burst, UInt16(size)))
                moved += n
                let queued = n == 0 ? 0 : Int(tern_ring_enqueue_burst(link.fromKernel.pointer, burst, UInt32(n)))
                if queued < n {
                    tern_mbuf_free_bulk(burst + queued, UInt32(n - queued))
                    stats.add(HostSlot.fromKernelDropped, UInt64(n - queued))
                }
            }
            // The host's traffic is light (ARP, BGP, ssh): a short nap when idle costs it at most
            // 100 us of latency and keeps this thread off the workers' cores.
            if moved == 0 { usleep(100) }
        }
    }

    func toKernel(_ list: UnsafeMutablePointer<OpaquePointer?>, _ count: Int, tap: UInt16) {
        guard count > 0 else { return }
        let n = Int(tern_tx_burst(tap, 0, list, UInt16(count)))
        stats.add(HostSlot.toKernel, UInt64(n))
        if n < count {
            tern_mbuf_free_bulk(list + n, UInt32(count - n))
            stats.add(HostSlot.toKernelFailed, UInt64(count - n))
        }
    }
}
