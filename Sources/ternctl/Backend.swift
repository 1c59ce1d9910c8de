// ternctl backend: Tern's side on each backend. Attaches Tern's backend XDP program
// (ebpf/tern_backend.c), which strips Tern's encapsulations from packets for local addresses and
// sends second-chance packets on; detaches it; shows where it runs and what it counted; checks what
// a backend needs for direct server return.

import ArgumentParser
import TernConfig
import TernWire
import TernXDP

#if canImport(Glibc)
    import Glibc
#endif

struct Backend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "On a backend: attach, detach or show Tern's decapsulating XDP program; check the host's settings.",
        discussion: """
            A backend answers clients directly (DSR): it needs the VIPs on lo, ARP kept off them (arp_ignore 1, \
            arp_announce 2), reverse-path filtering off or loose, and Tern's program on the interface that \
            receives the tunnels. docs/backend-guide.md has the whole list; `ternctl backend check` tells what is missing.
            """,
        subcommands: [Attach.self, Detach.self, Status.self, Check.self])

    struct Attach: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load Tern's backend program and attach it to an interface (replacing Tern's own if attached).",
            discussion: """
                The program takes IP in IP (4in4, 6in6, 4in6, 6in4) and GUE on the given UDP ports, addressed to one of \
                this host's addresses, whose inner destination is a local address too (the VIPs on lo): every \
                address of every interface here when it is attached. Attach again after adding addresses. In the \
                driver where it has XDP, else generic XDP; interfaces with an MTU over 3498 get the multi-buffer variant.
                """)

        @Option(help: "The interface the tunnels arrive on.")
        var interface: String

        @Option(name: .customLong("gue-port"), help: "A UDP port GUE arrives on (the VIPs' gue_port); up to 4, repeatable.")
        var guePorts: [Int] = []

        @Option(help: "The program object (default: lib/tern/tern_backend.o beside ternctl's bin directory).")
        var program: String?

        func validate() throws {
            guard guePorts.allSatisfy({ (1...65535).contains($0) }) else { throw ValidationError("--gue-port: 1-65535") }
            guard guePorts.count <= BackendProgram.maxGUEPorts else { throw ValidationError("at most 4 --gue-port") }
        }

        func run() throws {
            let object = program ?? Installed.libFile("tern_backend.o", executable: Installed.executablePath())
            do {
                print(
                    try BackendProgram.attach(
                        interface: interface, object: object, guePorts: guePorts.map(UInt16.init),
                        addresses: BackendProgram.localAddresses()))
            } catch {
                printError("ternctl backend attach: \(error)")
                throw ExitCode.failure
            }
        }
    }

    struct Detach: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Detach Tern's backend program from an interface.")

        @Option(help: "The interface.")
        var interface: String

        func run() throws {
            do {
                print(
                    try BackendProgram.detach(interface: interface)
                        ? "detached from \(interface)" : "nothing attached to \(interface)")
            } catch {
                printError("ternctl backend detach: \(error)")
                throw ExitCode.failure
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Interfaces with Tern's backend program, and its counters.",
            discussion: """
                decapsulated: delivered here; passed: not a tunnel for this host; not_local: a tunnel for this host whose \
                inner destination is not local (passed); hop_local: a second-chance packet whose connection is here; \
                hop_forwarded / hop_reflected: sent on to the second hop (by the FIB / back to the router's MAC); \
                hop_unusable: a second hop that could not be used (delivered here).
                """)

        func run() throws {
            let attached = BackendProgram.status()
            if attached.isEmpty { print("Tern's backend program is attached to no interface") }
            for (interface, counters) in attached {
                print("\(interface): " + counters.map { "\($0.name) \($0.value)" }.joined(separator: ", "))
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tell what this host lacks to be a Tern backend; exit 1 when something is missing.")

        @Option(name: .customLong("vip"), help: "A VIP this backend serves (must be on lo); repeatable.")
        var vips: [String] = []

        func run() throws {
            var missing = 0
            func report(_ ok: Bool, _ what: String, fix: String) {
                print(ok ? "ok: \(what)" : "MISSING: \(what): \(fix)")
                if !ok { missing += 1 }
            }
            let attached = BackendProgram.status().map(\.interface)
            report(
                !attached.isEmpty,
                "Tern's backend program attached" + (attached.isEmpty ? "" : " (\(attached.joined(separator: ", ")))"),
                fix: "ternctl backend attach --interface IF [--gue-port N]")
            let local = Set(BackendProgram.localAddresses())
            for text in vips {
                guard let a = IPAddress(text) else { throw ValidationError("--vip \(text): not an address") }
                report(
                    local.contains(a), "VIP \(a) on this host",
                    fix: "ip addr add \(a)/\(a.isV6 ? 128 : 32) dev lo")
            }
            let arpIgnore = sysctl("net/ipv4/conf/all/arp_ignore")
            report(
                (arpIgnore ?? 0) >= 1, "arp_ignore >= 1 (no ARP answers for the VIPs on lo)",
                fix: "sysctl -w net.ipv4.conf.all.arp_ignore=1")
            let arpAnnounce = sysctl("net/ipv4/conf/all/arp_announce")
            report(arpAnnounce == 2, "arp_announce = 2", fix: "sysctl -w net.ipv4.conf.all.arp_announce=2")
            for interface in ["all"] + attached {
                let rp = sysctl("net/ipv4/conf/\(interface)/rp_filter") ?? 0
                report(
                    rp != 1, "rp_filter on \(interface) not strict (the inner packets' sources are clients)",
                    fix: "sysctl -w net.ipv4.conf.\(interface).rp_filter=2")
            }
            if missing > 0 { throw ExitCode.failure }
        }

        func sysctl(_ path: String) -> Int? {
            guard let f = fopen("/proc/sys/\(path)", "r") else { return nil }
            defer { fclose(f) }
            var line = [UInt8](repeating: 0, count: 16)
            let n = fread(&line, 1, 15, f)
            return Int(String(decoding: line[..<n], as: UTF8.self).filter(\.isNumber))
        }
    }
}
