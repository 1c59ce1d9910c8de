// The DPDK environment: EAL start and stop, errors. Each wrapper names the rte_* call it makes.

import CDPDK

#if canImport(Glibc)
    import Glibc
#endif

public struct DPDKError: Error, CustomStringConvertible {
    public var description: String
    /// The errno value the call returned (positive), when it returned one.
    public var code: Int32?
    public init(_ what: String, code: Int32? = nil) {
        self.code = code.map { $0 < 0 ? -$0 : $0 }
        if let code {
            let errnum = code < 0 ? -code : code
            description = "\(what): \(String(cString: rte_strerror(errnum))) (\(errnum))"
        } else {
            description = what
        }
    }
}

public enum EAL {
    /// Starts the EAL with `arguments` (argv[0] first). Calls `rte_eal_init`; returns how many
    /// arguments it consumed.
    public static func initialize(_ arguments: [String]) throws(DPDKError) -> Int {
        // rte_eal_init permutes argv and writes argv[0] over another slot: free the originals.
        let owned = arguments.map { strdup($0) }
        defer { for p in owned { free(p) } }
        var argv = owned
        let rc = argv.withUnsafeMutableBufferPointer { rte_eal_init(Int32($0.count), $0.baseAddress) }
        guard rc >= 0 else {
            let code = tern_errno()
            // rte_errno is not always set: "Success" would hide the cause EAL logged above.
            if code == 0 { throw DPDKError("rte_eal_init failed; EAL's own messages above say why") }
            throw DPDKError("rte_eal_init", code: code)
        }
        return Int(rc)
    }

    /// Lets `dpdk-dumpcap` (a secondary process) capture this process's ports (`rte_pdump_init`).
    /// Needs a primary with shared config on hugepages: not --no-huge, --in-memory or --no-shconf.
    public static func enableCapture() -> Bool { rte_pdump_init() == 0 }

    /// Sets the time base of DPDK 22.11's pcapng before dpdk-dumpcap captures: without it, every
    /// capture of the process is stamped centuries ahead (`tern_pcapng_prime` says why).
    public static func primeCaptureClock(port: UInt16, pool: Mempool) -> Bool { tern_pcapng_prime(port, pool.pointer) == 0 }

    /// Calls `rte_pdump_uninit` and `rte_eal_cleanup`.
    public static func cleanup() {
        _ = rte_pdump_uninit()
        _ = rte_eal_cleanup()
    }

    /// Worker lcores (every enabled lcore but the main one), in order. Calls `rte_get_next_lcore`.
    public static var workerLcores: [UInt32] {
        var ids: [UInt32] = []
        var i = rte_get_next_lcore(UInt32.max, 1, 0)
        while i < UInt32(RTE_MAX_LCORE) {
            ids.append(i)
            i = rte_get_next_lcore(i, 1, 0)
        }
        return ids
    }

    /// The NUMA socket of the calling thread (`rte_socket_id`); threads that are not lcores get
    /// SOCKET_ID_ANY (-1), which DPDK's allocators accept.
    public static var socketID: Int32 { Int32(bitPattern: rte_socket_id()) }

    /// TSC ticks per second (`rte_get_tsc_hz`).
    public static var tscHz: UInt64 { tern_tsc_hz() }
}
