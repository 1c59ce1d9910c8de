// Whether this machine can hold what a config asks for, checked before anything is allocated:
// at start, the flow tables of every worker and one snapshot's Maglev tables; at a reload, a
// second snapshot beside the running one. A refusal names the key to change (the documented caps
// in `Validator` apply whatever the machine).

#if canImport(Glibc)
    import Glibc
#endif

public enum MemoryBudget {
    /// Left free for everything else (mbufs come from their own pool; the rest of the process,
    /// the kernel's page cache).
    public static let reserveBytes = 256 << 20

    /// `MemAvailable` from /proc/meminfo, in bytes; nil when it cannot be read.
    public static func availableBytes(meminfo: String = "/proc/meminfo") -> Int? {
        guard let f = fopen(meminfo, "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("MemAvailable:") else { continue }
            let digits = text.dropFirst("MemAvailable:".count).filter(\.isNumber)
            return Int(digits).map { $0 * 1024 }
        }
        return nil
    }

    /// Problems starting `config` with `available` bytes free.
    public static func startProblems(_ config: TernConfig, available: Int) -> [ConfigProblem] {
        let usable = available - reserveBytes
        let flows = config.flowTableBytes
        let maglev = config.maglevTableBytes
        if flows > usable {
            return [
                ConfigProblem(
                    ConfigSchema.flowTableEntries.path,
                    "\(config.dataplane.workers) worker(s) x \(config.dataplane.flowTableEntries) entries need \(mib(flows)) MiB of "
                        + "flow tables; this machine has \(mib(max(0, usable))) MiB available (MemAvailable less \(mib(reserveBytes)) MiB)"
                )
            ]
        }
        if flows + maglev > usable {
            return [
                ConfigProblem(
                    ConfigSchema.tableSize.path,
                    "\(config.vips.count) VIPs x \(config.tableSize) slots need \(mib(maglev)) MiB of Maglev tables beside "
                        + "\(mib(flows)) MiB of flow tables; this machine has \(mib(max(0, usable))) MiB available")
            ]
        }
        return []
    }

    /// Problems building `next`'s snapshot beside the running one with `available` bytes free.
    public static func reloadProblems(_ next: TernConfig, available: Int) -> [ConfigProblem] {
        let usable = available - reserveBytes
        guard next.maglevTableBytes > usable else { return [] }
        return [
            ConfigProblem(
                ConfigSchema.tableSize.path,
                "\(next.vips.count) VIPs x \(next.tableSize) slots need \(mib(next.maglevTableBytes)) MiB of Maglev tables "
                    + "beside the running ones; this machine has \(mib(max(0, usable))) MiB available")
        ]
    }

    static func mib(_ bytes: Int) -> Int { (bytes + (1 << 20) - 1) >> 20 }
}
