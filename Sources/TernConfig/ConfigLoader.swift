// TOML text → validated `TernConfig`, in three steps: `TOMLParser` reads the document (strict TOML
// 1.0, errors with line and column); `DocumentReader` reads it against `ConfigSchema`, reporting
// unknown keys, wrong types and missing keys with their lines; `Validator` then checks every value
// (ranges, addresses, consistency). Follow mode's imported VIPs join before validation. Every
// problem is collected, so one run of `ternctl check` lists them all.

import TernBalancing
import TernWire

public enum ConfigLoader {
    /// The largest config file read (a 1000 VIP x 100 backend file is about 5 MB).
    public static let maxFileBytes = TOMLParser.maxBytes

    /// Reads and validates a config file.
    public static func load(path: String) throws(ConfigError) -> TernConfig {
        try parse(try read(path), file: path)
    }

    /// A fleet node's config: its file with the site document in place of its VIPs.
    public static func load(path: String, site: [UInt8], siteName: String) throws(ConfigError) -> TernConfig {
        try parse(node: try read(path), file: path, site: site, siteName: siteName)
    }

    /// A config file's bytes: a regular file of at most `maxFileBytes`, or the reason it is not.
    public static func read(_ path: String) throws(ConfigError) -> [UInt8] {
        let bytes: [UInt8]
        switch RegularFile.read(path, limit: maxFileBytes) {
        case .success(let b): bytes = b
        case .failure(.cannotOpen): throw ConfigError(file: path, problems: [ConfigProblem("", "cannot read the file")])
        case .failure(let f): throw ConfigError(file: path, problems: [ConfigProblem("", f.description)])
        }
        guard bytes.count <= maxFileBytes else {
            throw ConfigError(file: path, problems: [ConfigProblem("", "larger than \(maxFileBytes) bytes")])
        }
        return bytes
    }

    /// Only `[control] socket` of the file at `path` (the default when it has none), without
    /// validating the rest: ternctl finds the ternd a config file belongs to even when the file it
    /// is about to reload is broken (ternd then says what is wrong).
    public static func controlSocket(path: String) throws(ConfigError) -> String {
        guard let document = try? TOMLParser.parse(try read(path)),
            case .table(let control)? = document[ConfigSchema.control.path]?.value,
            case .string(let socket)? = control[ConfigSchema.controlSocket.name]?.value
        else { return ControlConfig.defaultSocket }
        return socket
    }

    /// The VIPs of a whole config, or of a file holding only `[[vip]]` tables (what `ternctl import`
    /// prints), validated over a stand-in node.
    public static func loadVIPs(path: String) throws(ConfigError) -> [VIPConfig] {
        let bytes = try read(path)
        guard let document = try? TOMLParser.parse(bytes), document[ConfigSchema.node.path] == nil,
            document[ConfigSchema.port.path] == nil
        else { return try parse(bytes, file: path).vips }
        return try parseVIPs(bytes, name: path).vips
    }

    /// Node-local tables of no node in particular (both tunnel families, a port, a fleet), so that
    /// VIPs alone can be validated as any node would take them.
    static let standInNode = Array(
        """
        [node]
        name = "stand-in"
        tunnel_source_v4 = "198.18.255.254"
        tunnel_source_v6 = "2001:2::fffe"
        [[port]]
        device = "net_null0"
        gateway_mac = "02:00:00:00:00:01"
        [fleet]
        endpoints = ["http://127.0.0.1:2379"]
        prefix = "/stand-in"

        """.utf8)

    /// A document of site tables alone (`[[vip]]`, `[maglev]`: a fleet's site document, an
    /// import's output), validated over the stand-in node; errors name `name` and its lines.
    public static func parseVIPs(_ bytes: [UInt8], name: String) throws(ConfigError) -> TernConfig {
        try parse(node: standInNode, file: "(stand-in node)", site: bytes, siteName: name)
    }

    /// Validates config text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> TernConfig {
        try parse(Array(text.utf8), file: file)
    }

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> TernConfig {
        try parse(document: try document(bytes, file: file), file: file)
    }

    /// The tables a fleet's site document holds (in etcd); every other table is node-local.
    public static let siteTables = [ConfigSchema.vip.path, ConfigSchema.maglev.path]

    /// A fleet node's config: its own file's node-local tables ([node], [[port]], [fleet], ...)
    /// with the site document's `[[vip]]` and `[maglev]` in place of the file's. Errors in the site
    /// document name `siteName` and its lines.
    public static func parse(node: [UInt8], file: String, site: [UInt8], siteName: String) throws(ConfigError) -> TernConfig {
        let own = try document(node, file: file)
        let shared = try siteDocument(site, name: siteName)
        var merged = TOMLTable()
        for key in own.keys where !siteTables.contains(key) { merged.append(key, own[key]!) }
        for key in shared.keys { merged.append(key, shared[key]!) }
        return try parse(document: merged, file: siteName)
    }

    /// A site document by itself: TOML with only site tables (what `ternctl fleet put` checks
    /// before the VIPs are validated against a node).
    public static func siteDocument(_ bytes: [UInt8], name: String) throws(ConfigError) -> TOMLTable {
        let shared = try document(bytes, file: name)
        let local = shared.keys.filter { !siteTables.contains($0) }
        guard local.isEmpty else {
            throw ConfigError(
                file: name,
                problems: local.map { key in
                    var p = ConfigProblem(
                        key, "is node-local: it belongs in each node's file; a site document holds only [[vip]] and [maglev]")
                    p.line = shared[key]?.line
                    return p
                })
        }
        return shared
    }

    static func document(_ bytes: [UInt8], file: String) throws(ConfigError) -> TOMLTable {
        do {
            return try TOMLParser.parse(bytes)
        } catch {
            throw ConfigError(file: file, line: error.line, column: error.column, problems: [ConfigProblem("", error.message)])
        }
    }

    static func parse(document: TOMLTable, file: String) throws(ConfigError) -> TernConfig {
        var reader = DocumentReader()
        let doc = reader.read(document)
        var vips = doc.tables(ConfigSchema.vip)
        var importWarnings: [String] = []
        let imports = doc.table(ConfigSchema.importTable)
        for (key, kind) in [(ConfigSchema.importKeepalived, ImportKind.keepalived), (ConfigSchema.importIPVSAdm, .ipvsadm)] {
            guard let path = imports?.string(key) else { continue }
            let resolved = path.hasPrefix("/") ? path : KeepalivedReader.directory(of: file) + path
            switch importedVIPs(kind, path: resolved, configDirectory: KeepalivedReader.directory(of: file)) {
            case .success(let (imported, warnings)):
                vips += imported
                importWarnings += warnings
            case .failure(let error):
                reader.fail(
                    key.path, "cannot import \(escapedForMessage(path)):\n" + error.description, line: reader.line(of: key.path))
            }
        }
        var v = Validator()
        let config = v.validate(doc, vips: vips)
        // A key the reader could not take is reported once, by the reader.
        let reported = Set(reader.problems.map(\.keyPath))
        let problems = (reader.problems + v.problems.filter { !reported.contains($0.keyPath) }).map { p in
            var p = p
            p.line = p.line ?? reader.line(of: p.keyPath)
            return p
        }
        guard var config, problems.isEmpty else {
            var error = ConfigError(file: file, problems: problems)
            error.omitted = reader.omitted
            throw error
        }
        config.importWarnings = importWarnings
        config.notes = v.notes
        return config
    }
}
