// A strict TOML 1.0 parser (https://toml.io/en/v1.0.0), written for a daemon that reads files it
// must not trust: every error is thrown with its line and column, nothing traps, and sizes are
// bounded so no file can exhaust the stack or memory:
// - input at most `maxBytes`; UTF-8 checked first, with the position of the first bad byte;
// - arrays and inline tables nest at most `maxNesting` deep, and tables (headers, dotted keys and
//   inline tables together) at most `maxTableDepth` deep: the only recursion is bounded by these.
// Checked against the TOML conformance suite (toml-test) in Tests/TernConfigTests.
//
// Table rules (the part of TOML that is easy to get wrong), as this parser enforces them:
// - `[a.b]` defines a.b once; a table created only as the parent of a header (`[a.b]` creates a)
//   may be defined later, once; a table made by dotted keys (`a.b = 1`) or inline may not.
// - Dotted keys may create tables and extend those created by dotted keys in the same section, but
//   never reach into a table defined by a header or into an array of tables.
// - Inline tables and arrays written as values are closed: no header or dotted key extends them.
// - `[[a]]` appends a table to the array of tables a; `[a.b]` after it refers to its last element.

/// A TOML syntax or structure error at a line and column (1-based; columns count characters).
public struct TOMLError: Error, Equatable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String
    public var description: String { "\(line):\(column): \(message)" }
}

public enum TOMLParser {
    public static let maxBytes = 64 << 20
    public static let maxNesting = 64
    public static let maxTableDepth = 128

    /// Parses a whole document into its root table.
    public static func parse(_ bytes: [UInt8]) throws(TOMLError) -> TOMLTable {
        var p = Parsing(bytes)
        return try p.document()
    }

    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable { try parse(Array(text.utf8)) }
}

/// A table while the document is read: how it was made decides what may extend it.
private final class Building {
    enum Origin { case implicitParent, header, dotted, arrayElement }
    var origin: Origin
    /// The header section a dotted table was made in (dotted keys may extend it only there).
    var section: Int
    let depth: Int
    var keys: [String] = []
    var items: [String: Item] = [:]

    init(_ origin: Origin, section: Int, depth: Int) {
        self.origin = origin
        self.section = section
        self.depth = depth
    }

    func add(_ key: String, _ item: Item) {
        keys.append(key)
        items[key] = item
    }

    /// The finished table. Recursion depth is bounded by `maxTableDepth`.
    func finish() -> TOMLTable {
        var t = TOMLTable()
        for key in keys {
            switch items[key]! {
            case .value(let v, let line): t.append(key, TOMLEntry(value: v, line: line))
            case .table(let b, let line): t.append(key, TOMLEntry(value: .table(b.finish()), line: line))
            case .tables(let list, let line):
                t.append(key, TOMLEntry(value: .array(list.tables.map { .table($0.finish()) }), line: line))
            }
        }
        return t
    }
}

private final class TableList {
    var tables: [Building] = []
}

private enum Item {
    /// A value written after `=`: scalars, arrays and inline tables, all closed.
    case value(TOMLValue, line: Int)
    case table(Building, line: Int)
    /// An array of tables made by `[[...]]`.
    case tables(TableList, line: Int)
}

private struct Parsing {
    let b: [UInt8]
    var i = 0
    var section = 0
    /// The line at `lineOffset`: keys ask for their line in document order, so counting on from the
    /// last answer keeps this linear.
    var lineOffset = 0
    var lineAtOffset = 1

    init(_ bytes: [UInt8]) { b = bytes }

    // MARK: Errors and positions

    func error(_ message: String, at offset: Int? = nil) -> TOMLError {
        let at = min(offset ?? i, b.count)
        // Line and column of `at`, counted from the start (errors are rare; this keeps the scan simple).
        var l = 1
        var start = 0
        for k in 0..<at where b[k] == 0x0A {
            l += 1
            start = k + 1
        }
        let column = b[start..<at].reduce(1) { $0 + (($1 & 0xC0) == 0x80 ? 0 : 1) }
        return TOMLError(line: l, column: column, message: message)
    }

    var atEnd: Bool { i >= b.count }
    func peek(_ k: Int = 0) -> UInt8? { i + k < b.count ? b[i + k] : nil }

    /// A readable name for the byte at `i`, for messages.
    var found: String {
        guard let c = peek() else { return "end of file" }
        switch c {
        case 0x0A: return "end of line"
        case 0x0D: return "carriage return"
        case 0x20...0x7E: return "'\(Character(Unicode.Scalar(c)))'"
        default: return c < 0x80 ? "control character U+\(hex(UInt32(c), 4))" : "a non-ASCII character"
        }
    }

    func expected(_ what: String) -> TOMLError { error("expected \(what), found \(found)") }

    // MARK: Document

    mutating func document() throws(TOMLError) -> TOMLTable {
        guard b.count <= TOMLParser.maxBytes else {
            throw TOMLError(line: 1, column: 1, message: "file larger than \(TOMLParser.maxBytes) bytes")
        }
        if let bad = firstInvalidUTF8(b) { throw error("not valid UTF-8 text", at: bad) }
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }  // a byte order mark
        let root = Building(.header, section: 0, depth: 0)
        var current = root
        while true {
            skipSpaces()
            guard let c = peek() else { break }
            if c == UInt8(ascii: "[") {
                section += 1
                current = try header(root)
            } else if c != UInt8(ascii: "#") && c != 0x0A && c != 0x0D {
                try keyValue(into: current, nesting: 0)
            }
            try endOfLine()
        }
        return root.finish()
    }

    mutating func skipSpaces() {
        while let c = peek(), c == 0x20 || c == 0x09 { i += 1 }
    }

    /// Optional spaces and comment, then a newline or the end of the file.
    mutating func endOfLine() throws(TOMLError) {
        skipSpaces()
        if peek() == UInt8(ascii: "#") { try comment() }
        guard let c = peek() else { return }
        if c == 0x0A {
            i += 1
        } else if c == 0x0D && peek(1) == 0x0A {
            i += 2
        } else {
            throw expected("end of line")
        }
    }

    /// `#` to the end of the line; control characters other than tab are not allowed in comments.
    mutating func comment() throws(TOMLError) {
        i += 1
        while let c = peek(), c != 0x0A {
            if c == 0x0D && peek(1) == 0x0A { return }
            if isControl(c) { throw error("control character U+\(hex(UInt32(c), 4)) in a comment") }
            i += 1
        }
    }

    /// Spaces, newlines and comments between array elements.
    mutating func skipBlank() throws(TOMLError) {
        while true {
            skipSpaces()
            guard let c = peek() else { return }
            if c == UInt8(ascii: "#") {
                try comment()
            } else if c == 0x0A {
                i += 1
            } else if c == 0x0D && peek(1) == 0x0A {
                i += 2
            } else {
                return
            }
        }
    }

    // MARK: Tables

    /// `[a.b]` or `[[a.b]]`; returns the table that the following keys go into.
    mutating func header(_ root: Building) throws(TOMLError) -> Building {
        let start = i
        let isArray = peek(1) == UInt8(ascii: "[")
        i += isArray ? 2 : 1
        skipSpaces()
        let path = try key()
        skipSpaces()
        guard peek() == UInt8(ascii: "]") && (!isArray || peek(1) == UInt8(ascii: "]")) else {
            throw expected(isArray ? "']]'" : "']'")
        }
        i += isArray ? 2 : 1
        let headerLine = lineNumber(at: start)
        var table = root
        for (n, k) in path.dropLast().enumerated() {
            table = try descend(table, k, path: path[...n], start: start, line: headerLine)
        }
        let last = path[path.count - 1]
        let name = path.map(quoteIfNeeded).joined(separator: ".")
        guard table.depth + 1 <= TOMLParser.maxTableDepth else { throw error("tables nested too deep", at: start) }
        switch table.items[last] {
        case nil:
            let made = Building(isArray ? .arrayElement : .header, section: section, depth: table.depth + 1)
            if isArray {
                let list = TableList()
                list.tables.append(made)
                table.add(last, .tables(list, line: headerLine))
            } else {
                table.add(last, .table(made, line: headerLine))
            }
            return made
        case .tables(let list, _) where isArray:
            let made = Building(.arrayElement, section: section, depth: table.depth + 1)
            list.tables.append(made)
            return made
        case .table(let t, _) where !isArray && t.origin == .implicitParent:
            t.origin = .header
            return t
        case .table(let t, let line):
            let how = t.origin == .dotted ? "by dotted keys" : "as a table"
            throw error(
                "[\(isArray ? "[" : "")\(name)\(isArray ? "]" : "")]: \(name) is already defined \(how) (line \(line))", at: start
            )
        case .tables(_, let line):
            throw error("[\(name)]: \(name) is already an array of tables (line \(line))", at: start)
        case .value(_, let line):
            throw error(
                "[\(isArray ? "[" : "")\(name)\(isArray ? "]" : "")]: \(name) is already defined as a value (line \(line))",
                at: start)
        }
    }

    /// A header's path step: into an existing table or the last table of an array of tables, or a
    /// new implicit table.
    func descend(_ table: Building, _ k: String, path: ArraySlice<String>, start: Int, line: Int) throws(TOMLError) -> Building {
        switch table.items[k] {
        case nil:
            guard table.depth + 1 <= TOMLParser.maxTableDepth else { throw error("tables nested too deep", at: start) }
            let made = Building(.implicitParent, section: section, depth: table.depth + 1)
            table.add(k, .table(made, line: line))
            return made
        case .table(let t, _): return t
        case .tables(let list, _): return list.tables[list.tables.count - 1]
        case .value(_, let line):
            let name = path.map(quoteIfNeeded).joined(separator: ".")
            throw error("\(name) is already defined as a value (line \(line)) and cannot be extended", at: start)
        }
    }

    mutating func lineNumber(at offset: Int) -> Int {
        if offset < lineOffset {
            lineOffset = 0
            lineAtOffset = 1
        }
        for k in lineOffset..<min(offset, b.count) where b[k] == 0x0A { lineAtOffset += 1 }
        lineOffset = offset
        return lineAtOffset
    }

    // MARK: Keys and values

    /// `key = value` (the key may be dotted) into `table`.
    mutating func keyValue(into table: Building, nesting: Int) throws(TOMLError) {
        let start = i
        let keyLine = lineNumber(at: start)
        let path = try key()
        skipSpaces()
        guard peek() == UInt8(ascii: "=") else { throw expected("'=' after the key") }
        i += 1
        skipSpaces()
        var target = table
        for (n, k) in path.dropLast().enumerated() {
            let name = path[...n].map(quoteIfNeeded).joined(separator: ".")
            switch target.items[k] {
            case nil:
                guard target.depth + 1 <= TOMLParser.maxTableDepth else { throw error("tables nested too deep", at: start) }
                let made = Building(.dotted, section: section, depth: target.depth + 1)
                target.add(k, .table(made, line: keyLine))
                target = made
            case .table(let t, _) where t.origin == .dotted && t.section == section:
                target = t
            case .table(_, let line), .tables(_, let line):
                throw error("\(name) is already defined as a table (line \(line)); dotted keys cannot extend it", at: start)
            case .value(_, let line):
                throw error("\(name) is already defined as a value (line \(line))", at: start)
            }
        }
        let last = path[path.count - 1]
        if let existing = target.items[last] {
            let line: Int
            switch existing {
            case .value(_, let l), .table(_, let l), .tables(_, let l): line = l
            }
            throw error(
                "duplicate key \(path.map(quoteIfNeeded).joined(separator: ".")) (first defined on line \(line))", at: start)
        }
        let v = try value(nesting: nesting, depth: target.depth)
        target.add(last, .value(v, line: keyLine))
    }

    /// A key: simple keys separated by dots, with optional spaces around the dots.
    mutating func key() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard let c = peek() else { throw expected("a key") }
            if c == UInt8(ascii: "\"") {
                if peek(1) == c && peek(2) == c { throw error("a key cannot be a multi-line string") }
                parts.append(try basicString())
            } else if c == UInt8(ascii: "'") {
                if peek(1) == c && peek(2) == c { throw error("a key cannot be a multi-line string") }
                parts.append(try literalString())
            } else {
                let start = i
                while let c = peek(), isBareKeyByte(c) { i += 1 }
                guard i > start else { throw expected("a key") }
                parts.append(String(decoding: b[start..<i], as: UTF8.self))
            }
            guard parts.count <= TOMLParser.maxTableDepth else { throw error("key has too many parts") }
            skipSpaces()
            guard peek() == UInt8(ascii: ".") else { return parts }
            i += 1
        }
    }

    mutating func value(nesting: Int, depth: Int) throws(TOMLError) -> TOMLValue {
        guard let c = peek() else { throw expected("a value") }
        switch c {
        case UInt8(ascii: "\""):
            if peek(1) == c && peek(2) == c { return .string(try multiLineBasicString()) }
            return .string(try basicString())
        case UInt8(ascii: "'"):
            if peek(1) == c && peek(2) == c { return .string(try multiLineLiteralString()) }
            return .string(try literalString())
        case UInt8(ascii: "["):
            return try array(nesting: nesting + 1, depth: depth)
        case UInt8(ascii: "{"):
            return try inlineTable(nesting: nesting + 1, depth: depth)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            for word in ["true", "false"] where b[i...].starts(with: word.utf8) {
                let end = i + word.utf8.count
                if end < b.count && isBareKeyByte(b[end]) { break }
                i = end
                return .boolean(word == "true")
            }
            throw error("not a value (strings need quotes; booleans are true and false)")
        default:
            return try numberOrDateTime()
        }
    }

    mutating func array(nesting: Int, depth: Int) throws(TOMLError) -> TOMLValue {
        guard nesting <= TOMLParser.maxNesting else { throw error("arrays and inline tables nested too deep") }
        i += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            if peek() == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            items.append(try value(nesting: nesting, depth: depth + 1))
            try skipBlank()
            guard let c = peek(), c == UInt8(ascii: ",") || c == UInt8(ascii: "]") else {
                throw expected("',' or ']' in an array")
            }
            if c == UInt8(ascii: ",") { i += 1 }
        }
    }

    /// `{ k = v, ... }` on one line, no trailing comma; closed once written.
    mutating func inlineTable(nesting: Int, depth: Int) throws(TOMLError) -> TOMLValue {
        guard nesting <= TOMLParser.maxNesting, depth + 1 <= TOMLParser.maxTableDepth else {
            throw error("arrays and inline tables nested too deep")
        }
        i += 1
        let saved = section
        section = -1 - nesting  // dotted keys inside may extend only this inline table's own tables
        defer { section = saved }
        let table = Building(.dotted, section: section, depth: depth + 1)
        skipSpaces()
        if peek() == UInt8(ascii: "}") {
            i += 1
            return .table(table.finish())
        }
        while true {
            try keyValue(into: table, nesting: nesting)
            skipSpaces()
            guard let c = peek(), c == UInt8(ascii: ",") || c == UInt8(ascii: "}") else {
                throw expected("',' or '}' in an inline table (inline tables stay on one line)")
            }
            i += 1
            if c == UInt8(ascii: "}") { return .table(table.finish()) }
            skipSpaces()
            if peek() == UInt8(ascii: "}") { throw error("trailing comma in an inline table") }
        }
    }

    // MARK: Strings

    mutating func basicString() throws(TOMLError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated string") }
            switch c {
            case UInt8(ascii: "\""):
                i += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try escape(into: &out)
            case 0x0A, 0x0D:
                throw error("unterminated string (a newline needs \"\"\" strings)")
            default:
                if isControl(c) { throw error("control character U+\(hex(UInt32(c), 4)) in a string") }
                out.append(c)
                i += 1
            }
        }
    }

    mutating func multiLineBasicString() throws(TOMLError) -> String {
        i += 3
        skipOneNewline()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated \"\"\" string") }
            if c == UInt8(ascii: "\"") {
                if let end = try closingQuotes(c, into: &out) { return end }
                continue
            }
            if c == UInt8(ascii: "\\") {
                // A backslash at the end of a line trims it and every space and newline after it.
                var k = i + 1
                while k < b.count && (b[k] == 0x20 || b[k] == 0x09) { k += 1 }
                if k < b.count && (b[k] == 0x0A || (b[k] == 0x0D && k + 1 < b.count && b[k + 1] == 0x0A)) {
                    i = k
                    while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || (c == 0x0D && peek(1) == 0x0A) { i += 1 }
                    continue
                }
                try escape(into: &out)
                continue
            }
            try multiLineByte(c, into: &out)
        }
    }

    mutating func literalString() throws(TOMLError) -> String {
        i += 1
        let start = i
        while true {
            guard let c = peek() else { throw error("unterminated string") }
            if c == UInt8(ascii: "'") { break }
            if c == 0x0A || c == 0x0D { throw error("unterminated string (a newline needs ''' strings)") }
            if isControl(c) { throw error("control character U+\(hex(UInt32(c), 4)) in a string") }
            i += 1
        }
        defer { i += 1 }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    mutating func multiLineLiteralString() throws(TOMLError) -> String {
        i += 3
        skipOneNewline()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated ''' string") }
            if c == UInt8(ascii: "'") {
                if let end = try closingQuotes(c, into: &out) { return end }
                continue
            }
            try multiLineByte(c, into: &out)
        }
    }

    /// A run of quotes inside a multi-line string: three or more close it (up to two more belong to
    /// the content); fewer are content.
    mutating func closingQuotes(_ q: UInt8, into out: inout [UInt8]) throws(TOMLError) -> String? {
        var n = 0
        while peek() == q {
            n += 1
            i += 1
        }
        if n < 3 {
            out.append(contentsOf: repeatElement(q, count: n))
            return nil
        }
        guard n <= 5 else { throw error("too many quotes at the end of a multi-line string") }
        out.append(contentsOf: repeatElement(q, count: n - 3))
        return String(decoding: out, as: UTF8.self)
    }

    /// A byte of a multi-line string's content: newlines (CRLF read as LF) and tabs allowed.
    mutating func multiLineByte(_ c: UInt8, into out: inout [UInt8]) throws(TOMLError) {
        if c == 0x0D && peek(1) == 0x0A {
            out.append(0x0A)
            i += 2
            return
        }
        if c != 0x0A && isControl(c) { throw error("control character U+\(hex(UInt32(c), 4)) in a string") }
        out.append(c)
        i += 1
    }

    mutating func skipOneNewline() {
        if peek() == 0x0A {
            i += 1
        } else if peek() == 0x0D && peek(1) == 0x0A {
            i += 2
        }
    }

    mutating func escape(into out: inout [UInt8]) throws(TOMLError) {
        let start = i
        i += 1
        guard let e = peek() else { throw error("unterminated string") }
        i += 1
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard i + n <= b.count, let v = UInt32(String(decoding: b[i..<i + n], as: UTF8.self), radix: 16),
                b[i..<i + n].allSatisfy(isHexDigit)
            else { throw error("\\\(Character(Unicode.Scalar(e))) needs \(n) hex digits", at: start) }
            guard let scalar = Unicode.Scalar(v) else {
                throw error("\\\(Character(Unicode.Scalar(e)))\(hex(v, n)) is not a Unicode scalar value", at: start)
            }
            out.append(contentsOf: String(Character(scalar)).utf8)
            i += n
        default:
            throw error(
                "invalid escape sequence \\\(e < 0x80 && !isControl(e) ? String(Character(Unicode.Scalar(e))) : "")", at: start)
        }
    }

    // MARK: Numbers and dates

    mutating func numberOrDateTime() throws(TOMLError) -> TOMLValue {
        let start = i
        while let c = peek(), isTokenByte(c) { i += 1 }
        // A date followed by a space and a time is one value (`1979-05-27 07:32:00Z`).
        if i - start == 10 && b[start + 4] == UInt8(ascii: "-") && peek() == 0x20, let d = peek(1), isDigit(d) {
            i += 1
            while let c = peek(), isTokenByte(c) { i += 1 }
        }
        let token = Array(b[start..<i])
        guard !token.isEmpty else { throw error("expected a value, found \(found)") }
        let looksLikeTime = token.count >= 3 && token[2] == UInt8(ascii: ":") && token[0..<2].allSatisfy(isDigit)
        let looksLikeDate = token.count >= 5 && token[4] == UInt8(ascii: "-") && token[0..<4].allSatisfy(isDigit)
        if looksLikeTime || looksLikeDate {
            guard let d = TOMLDateTimeParser.parse(token) else {
                throw error("not a valid date or time: \(String(decoding: token, as: UTF8.self))", at: start)
            }
            return .dateTime(d)
        }
        let text = String(decoding: token, as: UTF8.self)
        if let n = parseInteger(token) { return .integer(n) }
        if let f = parseFloat(token) { return .float(f) }
        if isIntegerSyntax(token) { throw error("integer out of range (64-bit signed): \(text)", at: start) }
        throw error("not a valid value: \(text)", at: start)
    }
}

// MARK: Scalars

/// Decimal (sign, no leading zeros), 0x / 0o / 0b (no sign), underscores only between digits.
private func parseInteger(_ t: [UInt8]) -> Int64? {
    guard isIntegerSyntax(t) else { return nil }
    var digits = t.filter { $0 != UInt8(ascii: "_") }
    var radix = 10
    if digits.count > 2 && digits[0] == UInt8(ascii: "0") {
        switch digits[1] {
        case UInt8(ascii: "x"): radix = 16
        case UInt8(ascii: "o"): radix = 8
        case UInt8(ascii: "b"): radix = 2
        default: break
        }
        if radix != 10 { digits.removeFirst(2) }
    }
    return Int64(String(decoding: digits, as: UTF8.self), radix: radix)
}

private func isIntegerSyntax(_ t: [UInt8]) -> Bool {
    if t.count > 2 && t[0] == UInt8(ascii: "0") {
        let body = t[2...]
        switch t[1] {
        case UInt8(ascii: "x"): return underscoresBetween(body, isHexDigit)
        case UInt8(ascii: "o"): return underscoresBetween(body) { $0 >= 0x30 && $0 <= 0x37 }
        case UInt8(ascii: "b"): return underscoresBetween(body) { $0 == 0x30 || $0 == 0x31 }
        default: break
        }
    }
    var body = t[...]
    if let s = body.first, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { body = body.dropFirst() }
    return noLeadingZero(body) && underscoresBetween(body, isDigit)
}

private func parseFloat(_ t: [UInt8]) -> Double? {
    var body = t[...]
    var negative = false
    if let s = body.first, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") {
        negative = s == UInt8(ascii: "-")
        body = body.dropFirst()
    }
    if body.elementsEqual("inf".utf8) { return negative ? -.infinity : .infinity }
    if body.elementsEqual("nan".utf8) { return .nan }
    // integer part, then a fraction and/or an exponent
    let exp = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
    let mantissa = body[..<(exp ?? body.endIndex)]
    let dot = mantissa.firstIndex(of: UInt8(ascii: "."))
    let intPart = mantissa[..<(dot ?? mantissa.endIndex)]
    guard noLeadingZero(intPart), underscoresBetween(intPart, isDigit) else { return nil }
    if let dot { guard underscoresBetween(mantissa[(dot + 1)...], isDigit) else { return nil } }
    if let exp {
        var e = body[(exp + 1)...]
        if let s = e.first, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { e = e.dropFirst() }
        guard underscoresBetween(e, isDigit) else { return nil }
    }
    guard dot != nil || exp != nil else { return nil }
    return Double(String(decoding: t.filter { $0 != UInt8(ascii: "_") }, as: UTF8.self))
}

/// Non-empty, every byte a digit of the kind or an underscore between two digits.
private func underscoresBetween(_ s: ArraySlice<UInt8>, _ digit: (UInt8) -> Bool) -> Bool {
    guard let first = s.first, let last = s.last, digit(first), digit(last) else { return false }
    var previousUnderscore = false
    for c in s {
        if c == UInt8(ascii: "_") {
            if previousUnderscore { return false }
            previousUnderscore = true
        } else {
            guard digit(c) else { return false }
            previousUnderscore = false
        }
    }
    return true
}

private func noLeadingZero(_ s: ArraySlice<UInt8>) -> Bool {
    !(s.count > 1 && s.first == UInt8(ascii: "0"))
}

/// RFC 3339 as TOML 1.0 takes it: seconds required, `T`, `t` or a space between date and time.
enum TOMLDateTimeParser {
    static func parse(_ t: [UInt8]) -> TOMLDateTime? {
        var k = 0
        func number(_ n: Int) -> Int? {
            guard k + n <= t.count, t[k..<k + n].allSatisfy(isDigit) else { return nil }
            defer { k += n }
            return t[k..<k + n].reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        func expect(_ c: UInt8) -> Bool {
            guard k < t.count, t[k] == c else { return false }
            k += 1
            return true
        }
        var text = ""
        var hasDate = false
        if t.count >= 10 && t[4] == UInt8(ascii: "-") {
            guard let y = number(4), expect(UInt8(ascii: "-")), let m = number(2), expect(UInt8(ascii: "-")),
                let d = number(2), (1...12).contains(m), d >= 1, d <= daysIn(month: m, year: y)
            else { return nil }
            text = String(decoding: t[0..<10], as: UTF8.self)
            hasDate = true
            if k == t.count { return TOMLDateTime(kind: .localDate, text: text) }
            guard let sep = t.count > k ? t[k] : nil, sep == UInt8(ascii: "T") || sep == UInt8(ascii: "t") || sep == 0x20
            else { return nil }
            k += 1
            text += "T"
        }
        let timeStart = k
        guard let h = number(2), expect(UInt8(ascii: ":")), let mi = number(2), expect(UInt8(ascii: ":")),
            let s = number(2), h < 24, mi < 60, s <= 60
        else { return nil }
        if expect(UInt8(ascii: ".")) {
            let f = k
            while k < t.count && isDigit(t[k]) { k += 1 }
            guard k > f else { return nil }
        }
        text += String(decoding: t[timeStart..<k], as: UTF8.self)
        if k == t.count { return TOMLDateTime(kind: hasDate ? .localDateTime : .localTime, text: text) }
        guard hasDate else { return nil }
        if t[k] == UInt8(ascii: "Z") || t[k] == UInt8(ascii: "z") {
            guard k + 1 == t.count else { return nil }
            return TOMLDateTime(kind: .offsetDateTime, text: text + "Z")
        }
        let offsetStart = k
        guard expect(UInt8(ascii: "+")) || expect(UInt8(ascii: "-")), let oh = number(2), expect(UInt8(ascii: ":")),
            let om = number(2), oh < 24, om < 60, k == t.count
        else { return nil }
        return TOMLDateTime(kind: .offsetDateTime, text: text + String(decoding: t[offsetStart...], as: UTF8.self))
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

// MARK: Bytes

private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
private func isHexDigit(_ c: UInt8) -> Bool {
    isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F"))
}
private func isBareKeyByte(_ c: UInt8) -> Bool {
    isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
        || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
}
/// Bytes a number or date token can hold.
private func isTokenByte(_ c: UInt8) -> Bool {
    isBareKeyByte(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: ":")
}
/// Control characters TOML forbids in strings and comments (tab is allowed).
private func isControl(_ c: UInt8) -> Bool { (c < 0x20 && c != 0x09) || c == 0x7F }

private func hex(_ v: UInt32, _ width: Int) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}

private func quoteIfNeeded(_ k: String) -> String {
    !k.isEmpty && k.utf8.allSatisfy(isBareKeyByte) ? k : "\"\(escapedForMessage(k))\""
}

/// The offset of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
/// surrogates, nothing above U+10FFFF), or nil.
func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
    var i = 0
    while i < b.count {
        let c = b[i]
        if c < 0x80 {
            i += 1
            continue
        }
        let n: Int
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: n = 1
        case 0xE0:
            n = 2
            lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: n = 2
        case 0xED:
            n = 2
            hi = 0x9F
        case 0xF0:
            n = 3
            lo = 0x90
        case 0xF1...0xF3: n = 3
        case 0xF4:
            n = 3
            hi = 0x8F
        default: return i
        }
        for k in 1...n {
            guard i + k < b.count else { return i }
            let limitLo = k == 1 ? lo : 0x80
            let limitHi = k == 1 ? hi : 0xBF
            guard b[i + k] >= limitLo && b[i + k] <= limitHi else { return i }
        }
        i += n + 1
    }
    return nil
}

/// How much of a value a message quotes.
public let messageQuoteLimit = 120

/// Text safe to put in a one-line message: control characters, quotes and backslashes escaped,
/// so a value cannot forge a log line; at most `limit` characters of it (then how long it was), so
/// a 20 MB key or a file's contents are never echoed whole.
public func escapedForMessage(_ s: String, limit: Int = messageQuoteLimit) -> String {
    var out = ""
    var taken = 0
    for u in s.unicodeScalars {
        if taken == limit {
            out += "... (\(s.utf8.count) bytes)"
            break
        }
        taken += 1
        switch u {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            let v: UInt32 = u.value
            if v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) || v == 0x2028 || v == 0x2029 {
                out += "\\u{\(String(v, radix: 16))}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out
}
