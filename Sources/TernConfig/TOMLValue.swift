// The values of a TOML 1.0 document, as `TOMLParser` produces them. Every key remembers the line
// it was defined on, so config errors can name it.

/// A TOML value. Tables keep their keys in document order.
public enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case dateTime(TOMLDateTime)
    case array([TOMLValue])
    case table(TOMLTable)

    /// The TOML type's name, for messages ("got integer, expected string").
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .dateTime(let d): d.kind.rawValue
        case .array: "array"
        case .table: "table"
        }
    }
}

/// A date, time or both, validated (month, day of month with leap years, hour, minute, second,
/// offset) and kept in its canonical RFC 3339 text (`T` and `Z` upper case).
public struct TOMLDateTime: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case offsetDateTime = "datetime"
        case localDateTime = "datetime-local"
        case localDate = "date-local"
        case localTime = "time-local"
    }
    public var kind: Kind
    public var text: String
}

/// One key's value and the line (1-based) where the key was defined.
public struct TOMLEntry: Equatable, Sendable {
    public var value: TOMLValue
    public var line: Int
}

/// A table: keys in document order, each with its value and line.
public struct TOMLTable: Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var entries: [String: TOMLEntry] = [:]

    public init() {}

    public subscript(key: String) -> TOMLEntry? { entries[key] }

    mutating func append(_ key: String, _ entry: TOMLEntry) {
        if entries.updateValue(entry, forKey: key) == nil { keys.append(key) }
    }
}
