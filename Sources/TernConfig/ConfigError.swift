// Config errors name the file and either the line (TOML syntax) or the key path
// (`vip[1].backend[0].weight`), then say what is wrong. Exit status 78 (EX_CONFIG).

public struct ConfigProblem: Error, Equatable, Sendable, CustomStringConvertible {
    /// `vip[1].backend[0].weight`, or empty for the whole file.
    public var keyPath: String
    public var message: String
    /// The line of the key (or of the nearest enclosing key) when the document has it.
    public var line: Int?

    public init(_ keyPath: String, _ message: String, line: Int? = nil) {
        self.keyPath = keyPath
        self.message = message
        self.line = line
    }

    public var description: String { keyPath.isEmpty ? message : "\(keyPath): \(message)" }
}

public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public static let exitCode: Int32 = 78

    public var file: String
    /// Set for syntax errors.
    public var line: Int?
    public var column: Int?
    public var problems: [ConfigProblem]
    /// Problems found but not kept (past `DocumentReader.kept`): counted in `lines`.
    public var omitted = 0

    public init(file: String, line: Int? = nil, column: Int? = nil, problems: [ConfigProblem]) {
        self.file = file
        self.line = line
        self.column = column
        self.problems = problems
    }

    /// One line per problem: `FILE:LINE:COLUMN: message` (syntax) or `FILE:LINE: key.path: message`.
    /// The file name is escaped: nothing in an error can start a new log line.
    public var description: String {
        lines.joined(separator: "\n")
    }

    /// `description`, one element per problem.
    /// At most this many problems are listed; the rest are counted (`... and N more problems`).
    public static let listed = 100

    public var lines: [String] {
        let name = escapedForMessage(file, limit: 4096)
        var out = problems.prefix(ConfigError.listed).map { p in
            var location = name
            if let line = line ?? p.line { location += ":\(line)" }
            if let column { location += ":\(column)" }
            return "\(location): \(p)"
        }
        let more = problems.count - out.count + omitted
        if more > 0 { out.append("\(name): ... and \(more) more problems") }
        return out
    }
}
