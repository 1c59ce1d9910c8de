// The parsed TOML document read against the schema, with no knowledge of any particular key: each
// table's keys must be in `ConfigSchema` for that table (else "unknown key"), each value must have
// the schema's type (else "wrong type"), required keys must be there. What it reads is a tree of
// `ConfigTable`s that the validator queries by `ConfigKey`, so a key's name, type and the path a
// message names it by all come from the schema. Every key path's line is recorded, so later
// problems can name it too.

/// A table of the config as read: its values by key name, each already of its schema type.
struct ConfigTable {
    /// The key path naming this table in messages (`vip[2].backend[0]`; an imported VIP's origin).
    var path: String
    var values: [String: ConfigValue] = [:]

    /// The path a message names `key` of this table by (`vip[2].backend[0].weight`).
    func path(_ key: ConfigKey) -> String { key.at(path) }

    func string(_ key: ConfigKey) -> String? { if case .string(let s)? = values[key.name] { s } else { nil } }
    func int(_ key: ConfigKey) -> Int? { if case .integer(let n)? = values[key.name] { n } else { nil } }
    func bool(_ key: ConfigKey) -> Bool? { if case .boolean(let b)? = values[key.name] { b } else { nil } }
    func strings(_ key: ConfigKey) -> [String]? { if case .strings(let s)? = values[key.name] { s } else { nil } }
    func table(_ key: ConfigKey) -> ConfigTable? { if case .table(let t)? = values[key.name] { t } else { nil } }
    func tables(_ key: ConfigKey) -> [ConfigTable] { if case .tables(let t)? = values[key.name] { t } else { [] } }
    func has(_ key: ConfigKey) -> Bool { values[key.name] != nil }

    /// These values, with `other`'s where it has them (a backend's own health keys over its VIP's),
    /// named by `other`'s path.
    func overridden(by other: ConfigTable) -> ConfigTable {
        ConfigTable(path: other.path, values: values.merging(other.values) { _, own in own })
    }
}

indirect enum ConfigValue {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case strings([String])
    case table(ConfigTable)
    case tables([ConfigTable])
}

struct DocumentReader {
    var problems: [ConfigProblem] = []
    private var lines: [String: Int] = [:]

    /// The line of a key path, or of the nearest table around it that has one.
    func line(of keyPath: String) -> Int? {
        var path = Substring(keyPath)
        while !path.isEmpty {
            if let l = lines[String(path)] { return l }
            guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            path = path[..<cut]
        }
        return nil
    }

    /// Problems kept; past that they are only counted (a file of 2,000,000 unknown keys must not
    /// hold 2,000,000 messages).
    static let kept = 1000
    var omitted = 0

    mutating func fail(_ path: String, _ message: String, line: Int? = nil) {
        guard problems.count < DocumentReader.kept else {
            omitted += 1
            return
        }
        var p = ConfigProblem(path, message)
        p.line = line
        problems.append(p)
    }

    /// The whole document (the top-level table).
    mutating func read(_ document: TOMLTable) -> ConfigTable { read(document, path: "", schemaPath: "") }

    /// `t`, the table the schema calls `schemaPath` (`vip.backend`), named `path` in messages.
    mutating func read(_ t: TOMLTable, path: String, schemaPath: String) -> ConfigTable {
        let keys = ConfigSchema.keys(in: schemaPath)
        let known = Set(keys.map(\.name))
        for key in t.keys where !known.contains(key) {
            fail(ConfigTable(path: path).path(name: quotedKey(key)), "unknown key", line: t[key]?.line)
        }
        var out = ConfigTable(path: path)
        for key in keys {
            let keyPath = key.at(path)
            guard let e = t[key.name] else {
                if key.required { fail(keyPath, "required key is missing", line: line(of: path)) }
                continue
            }
            lines[keyPath] = e.line
            if let value = read(e, key, keyPath) { out.values[key.name] = value }
        }
        return out
    }

    /// One entry as the schema types it; nil (reported) when it has another type.
    mutating func read(_ e: TOMLEntry, _ key: ConfigKey, _ keyPath: String) -> ConfigValue? {
        switch (key.kind, e.value) {
        case (.string, .string(let s)): return .string(s)
        case (.integer, .integer(let n)): return .integer(Int(n))
        case (.boolean, .boolean(let b)): return .boolean(b)
        case (.strings, .array(let items)):
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item else { return wrongType(e, key, keyPath) }
                out.append(s)
            }
            return .strings(out)
        case (.table, .table(let inner)): return .table(read(inner, path: keyPath, schemaPath: key.path))
        case (.tables, .array(let items)):
            var out: [ConfigTable] = []
            for (i, item) in items.enumerated() {
                guard case .table(let inner) = item else { return wrongType(e, key, keyPath) }
                let path = "\(keyPath)[\(i)]"
                lines[path] = inner.keys.first.flatMap { inner[$0]?.line } ?? e.line
                out.append(read(inner, path: path, schemaPath: key.path))
            }
            return .tables(out)
        default: return wrongType(e, key, keyPath)
        }
    }

    mutating func wrongType(_ e: TOMLEntry, _ key: ConfigKey, _ keyPath: String) -> ConfigValue? {
        let expected =
            switch key.kind {
            case .string: "string"
            case .integer: "integer"
            case .boolean: "boolean"
            case .strings: "array of strings"
            case .table: "table ([\(keyPath)])"
            case .tables: "array of tables ([[\(keyPath)]])"
            }
        fail(keyPath, "wrong type: got \(e.value.typeName), expected \(expected)", line: e.line)
        return nil
    }

    /// A key as a message shows it: bare when TOML would take it bare (and it is short), else
    /// quoted, escaped and cut to its first characters.
    func quotedKey(_ key: String) -> String {
        key.utf8.count <= messageQuoteLimit
            && key.utf8.allSatisfy {
                $0 < 0x80
                    && ($0 == 0x5F || $0 == 0x2D || Character(Unicode.Scalar($0)).isLetter
                        || Character(Unicode.Scalar($0)).isNumber)
            } && !key.isEmpty
            ? key : "\"\(escapedForMessage(key))\""
    }
}

extension ConfigTable {
    /// A key of this table that the schema does not know, by its (quoted) name.
    func path(name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    /// Names this table `newPath` in messages, and the tables inside it accordingly (an imported
    /// VIP is named by its source: `keepalived.conf:12 (virtual_server ...)`).
    mutating func rename(_ newPath: String) {
        let old = path
        func moved(_ t: ConfigTable) -> ConfigTable {
            var t = t
            t.rename(t.path.hasPrefix(old) ? newPath + t.path.dropFirst(old.count) : t.path)
            return t
        }
        path = newPath
        for (k, v) in values {
            switch v {
            case .table(let t): values[k] = .table(moved(t))
            case .tables(let ts): values[k] = .tables(ts.map(moved))
            default: break
            }
        }
    }
}
