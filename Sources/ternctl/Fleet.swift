// `ternctl fleet`: the site's document, drains and agreement in etcd, for every node at once.

import ArgumentParser
import Foundation
import TernAgent
import TernConfig
import TernWire

/// Where the store is: a node's file (its `[fleet]` table) or the endpoints and prefix given.
struct StoreOptions: ParsableArguments {
    @Option(help: "A node's config file: the store is its [fleet] table.") var config: String?
    @Option(help: "etcd endpoints, comma-separated (http://HOST:PORT,...), with --prefix.") var endpoints: String?
    @Option(help: "The site's key prefix (/tern/SITE), with --endpoints.") var prefix: String?
    @Option(help: "With https endpoints: the CA of etcd's certificate (PEM).") var cacert: String?
    @Option(help: "With https endpoints: a client certificate (PEM), with --key.") var cert: String?
    @Option(help: "The client certificate's key (PEM).") var key: String?

    func store() throws -> (client: EtcdClient, prefix: String) {
        if let config {
            guard let fleet = try loadConfig(config).fleet else { throw ValidationError("\(config) has no [fleet] table") }
            return (try etcd { () throws(EtcdError) in try EtcdClient(fleet) }, fleet.prefix)
        }
        guard let endpoints, let prefix else { throw ValidationError("give --config NODE.toml, or --endpoints and --prefix") }
        let parsed = endpoints.split(separator: ",").map { FleetConfig.endpoint(String($0)) }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--endpoints: http(s)://HOST:PORT,... (got \(endpoints))")
        }
        guard prefix.hasPrefix("/"), !prefix.hasSuffix("/") else { throw ValidationError("--prefix: /tern/SITE") }
        let files = FleetConfig.TLSFiles(ca: cacert, certificate: cert, key: key)
        return (try etcd { () throws(EtcdError) in try EtcdClient(endpoints: parsed.map { $0! }, tls: files) }, prefix)
    }
}

func etcd<T>(_ body: () throws(EtcdError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        printError("ternctl: etcd: \(error.description)")
        throw ExitCode(69)
    }
}

struct Fleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a site of nodes from etcd: its VIPs (one site document), drains, and whether every node agrees.",
        discussion: """
            Keys under the prefix: config (the site document: TOML with only [[vip]] and [maglev]), drains/BACKEND[/VIP], \
            nodes/NAME (each node's report, on a lease). Nodes with [fleet] in their file apply changes within a poll \
            (250 ms by default) through the same checks as a reload.
            """,
        subcommands: [Get.self, Put.self, Drain.self, Undrain.self, Status.self])

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the site document, its revision in the first line (fleet put compares it).")
        @OptionGroup var store: StoreOptions

        func run() throws {
            let (client, prefix) = try store.store()
            let (kvs, _) = try etcd { () throws(EtcdError) in try client.range(FleetApplier.documentKey(prefix)) }
            guard let kv = kvs.first else {
                printError("ternctl: no site document at \(FleetApplier.documentKey(prefix)) (fleet put writes the first)")
                throw ExitCode(1)
            }
            print("# tern fleet revision \(kv.modRevision)\n" + String(decoding: kv.value, as: UTF8.self), terminator: "")
        }
    }

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a site document and write it, only if nobody wrote since the revision it came from.",
            discussion: """
                The revision compared is the file's first line as fleet get wrote it (# tern fleet revision N), or \
                --revision; without either the document must not exist yet. Another writer's change in between fails \
                the put (exit 1): get it again, merge, put. Exit 78 when the document does not validate (every problem \
                listed, as ternctl check does).
                """)
        @OptionGroup var store: StoreOptions
        @Argument(help: "The site document (TOML: [[vip]] tables and [maglev]).") var file: String
        @Option(help: "The revision the document was edited from (default: the file's first line).") var revision: Int64?

        func run() throws {
            guard case .success(let bytes) = RegularFile.read(file, limit: ConfigLoader.maxFileBytes) else {
                printError("ternctl: cannot read \(file)")
                throw ExitCode(66)
            }
            _ = try exitingOnConfigError { () throws(ConfigError) in try ConfigLoader.parseVIPs(bytes, name: file) }
            let (client, prefix) = try store.store()
            let expected = revision ?? Fleet.revision(in: bytes) ?? 0
            let written = try etcd { () throws(EtcdError) in
                try client.compareAndPut(FleetApplier.documentKey(prefix), bytes, expected: expected)
            }
            let (kvs, _) = try etcd { () throws(EtcdError) in try client.range(FleetApplier.documentKey(prefix)) }
            let now = kvs.first?.modRevision ?? 0
            guard written else {
                printError(
                    "ternctl: the site document changed since revision \(expected) (now \(now)): fleet get it again, merge, put"
                        + (expected == 0 ? " (or give --revision)" : ""))
                throw ExitCode(1)
            }
            print("put \(FleetApplier.documentKey(prefix)): revision \(now)")
        }
    }

    static func revision(in bytes: [UInt8]) -> Int64? {
        let first = String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
        guard first.hasPrefix("# tern fleet revision ") else { return nil }
        return Int64(first.dropFirst("# tern fleet revision ".count))
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain a backend on every node of the site (in one VIP with --vip): no new flows, established ones stay.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The backend's address.") var backend: String
        @Option(help: "Only in this VIP (192.0.2.10:80/tcp).") var vip: String?

        func run() throws {
            guard let address = IPAddress(backend) else { throw ValidationError("\(backend) is not an IP address") }
            let (client, prefix) = try store.store()
            let d = FleetDrain(backend: address.description, vip: vip)
            let value = try JSONEncoder().encode(d)
            try etcd { () throws(EtcdError) in try client.put(d.key(prefix: prefix), Array(value)) }
            print("drained \(d.backend)\(vip.map { " in \($0)" } ?? "") for the site (\(d.key(prefix: prefix)))")
        }
    }

    struct Undrain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a fleet drain on every node.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The backend's address.") var backend: String
        @Option(help: "The VIP the drain named, if it named one.") var vip: String?

        func run() throws {
            guard let address = IPAddress(backend) else { throw ValidationError("\(backend) is not an IP address") }
            let (client, prefix) = try store.store()
            let d = FleetDrain(backend: address.description, vip: vip)
            let deleted = try etcd { () throws(EtcdError) in try client.delete(d.key(prefix: prefix)) }
            print(
                deleted > 0
                    ? "undrained \(d.backend)\(vip.map { " in \($0)" } ?? "") for the site"
                    : "\(d.backend) was not drained\(vip.map { " in \($0)" } ?? "") by fleet drain: nothing changed")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Every live node side by side: the site revision it runs, its generation, its tables; exit 1 when they differ.")
        @OptionGroup var store: StoreOptions

        func run() throws {
            let (client, prefix) = try store.store()
            let (site, _) = try etcd { () throws(EtcdError) in try client.range(FleetApplier.documentKey(prefix)) }
            let (kvs, _) = try etcd { () throws(EtcdError) in try client.range("\(prefix)/nodes/", prefix: true) }
            let nodes = kvs.compactMap { try? JSONDecoder().decode(FleetNodeReport.self, from: Data($0.value)) }
                .sorted { $0.node < $1.node }
            let latest = site.first?.modRevision ?? 0
            print("site document revision \(latest); \(nodes.count) live node(s)")
            var problems: [String] = []
            for n in nodes {
                print(
                    "node \(n.node): revision \(n.revision)\(n.revision == latest ? "" : " (BEHIND)"), generation \(n.generation), "
                        + "announces \(n.announced.count) of \(n.fingerprints.count) VIPs"
                        + (n.drains.isEmpty ? "" : ", fleet drains: \(n.drains.joined(separator: "; "))")
                        + (n.refused.isEmpty
                            ? ""
                            : "\n  refused the newest document: \(n.refused.split(separator: "\n").joined(separator: " | "))"))
                if n.revision != latest { problems.append("\(n.node) runs revision \(n.revision), not \(latest)") }
            }
            let vips = Set(nodes.flatMap(\.fingerprints.keys)).sorted()
            for vip in vips {
                let seen = Dictionary(grouping: nodes, by: { $0.fingerprints[vip] ?? "absent" })
                if seen.count > 1 {
                    let sides = seen.sorted { $0.key < $1.key }.map {
                        "\($0.key): \($0.value.map(\.node).joined(separator: ", "))"
                    }
                    problems.append("\(vip) DIFFERS: \(sides.joined(separator: "; "))")
                } else {
                    print("vip \(vip): fingerprint \(seen.keys.first!) on every node")
                }
            }
            for p in problems { print(p) }
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}
