import ArgumentParser
import TernBalancing
import TernConfig

struct Table: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a VIP's Maglev table: one backend address per slot, or slots per backend (--summary).")

    @Option(help: "The TOML config file.")
    var config: String

    @Option(help: "The VIP as ADDR:PORT/PROTO, e.g. 192.0.2.10:80/tcp or [2001:db8::1]:443/udp.")
    var vip: String

    @Flag(help: "Print slots and share per backend instead of every slot.")
    var summary = false

    func run() throws {
        let c = try loadConfig(config)
        guard let selector = VIPSelector(vip) else {
            throw ValidationError("--vip must look like ADDR:PORT/PROTO (192.0.2.10:80/tcp, [2001:db8::1]:443/udp)")
        }
        guard let v = c.vip(matching: selector) else {
            printError("\(config): no VIP \(vip); configured: \(c.vips.map(\.name).joined(separator: ", "))")
            throw ExitCode(1)
        }
        let table = Maglev.build(backends: v.backends.map { ($0.address, $0.weight) }, tableSize: c.tableSize)
        if summary {
            var slots = [Int](repeating: 0, count: v.backends.count)
            for s in table where s != Maglev.emptySlot { slots[Int(s)] += 1 }
            print("# \(v.name): \(c.tableSize) slots, \(v.backends.count) backends")
            for (b, n) in zip(v.backends, slots) {
                let share = Double(n) * 100 / Double(c.tableSize)
                print("\(b.address) weight=\(b.weight) slots=\(n) share=\(formatPercent(share))")
            }
        } else {
            var out = ""
            out.reserveCapacity(table.count * 16)
            for s in table {
                out += s == Maglev.emptySlot ? "-" : v.backends[Int(s)].address.description
                out += "\n"
            }
            print(out, terminator: "")
        }
    }
}

func formatPercent(_ x: Double) -> String {
    let hundredths = Int((x * 100).rounded())
    let frac = hundredths % 100
    return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)%"
}
