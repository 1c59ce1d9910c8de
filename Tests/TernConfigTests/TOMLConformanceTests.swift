// The TOML 1.0 cases of toml-test (toml-test/SOURCE.md) judge TOMLParser: every valid case must
// decode to the value its JSON file gives, every invalid case must be refused with a line number.

import Foundation
import Testing

@testable import TernConfig

let suiteRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("toml-test")

func suiteCases(_ kind: String) -> [String] {
    let list = (try? String(contentsOf: suiteRoot.appendingPathComponent("files-toml-1.0.0"), encoding: .utf8)) ?? ""
    return list.split(separator: "\n").map(String.init).filter { $0.hasPrefix(kind + "/") && $0.hasSuffix(".toml") }
}

func readCase(_ path: String) -> [UInt8] {
    Array((try? Data(contentsOf: suiteRoot.appendingPathComponent(path))) ?? Data())
}

/// toml-test's tagged JSON form of a parsed value, as Foundation objects.
func tagged(_ v: TOMLValue) -> Any {
    switch v {
    case .string(let s): return ["type": "string", "value": s]
    case .integer(let n): return ["type": "integer", "value": String(n)]
    case .float(let f): return ["type": "float", "value": f.isNaN ? "nan" : f.isInfinite ? (f < 0 ? "-inf" : "inf") : "\(f)"]
    case .boolean(let b): return ["type": "bool", "value": b ? "true" : "false"]
    case .dateTime(let d): return ["type": d.kind.rawValue, "value": d.text]
    case .array(let a): return a.map(tagged)
    case .table(let t): return taggedTable(t)
    }
}

func taggedTable(_ t: TOMLTable) -> [String: Any] {
    var out: [String: Any] = [:]
    for k in t.keys { out[k] = tagged(t[k]!.value) }
    return out
}

/// Compares a decoded value with the expected tagged JSON; nil when equal, else where they differ.
func difference(_ got: Any, _ want: Any, at path: String = "") -> String? {
    if let w = want as? [String: Any], let type = w["type"] as? String, let value = w["value"] as? String, w.count == 2 {
        guard let g = got as? [String: String], g["type"] == type, let gv = g["value"] else {
            return "\(path): got \(got), expected \(type) \(value)"
        }
        return sameScalar(type, gv, value) ? nil : "\(path): got \(type) \(gv), expected \(value)"
    }
    if let w = want as? [String: Any] {
        guard let g = got as? [String: Any], Set(g.keys) == Set(w.keys) else {
            return "\(path): got \(got), expected table with keys \(w.keys.sorted())"
        }
        for k in w.keys.sorted() { if let d = difference(g[k]!, w[k]!, at: path + "." + k) { return d } }
        return nil
    }
    if let w = want as? [Any] {
        guard let g = got as? [Any], g.count == w.count else { return "\(path): got \(got), expected \(w.count) elements" }
        for (n, (a, b)) in zip(g, w).enumerated() { if let d = difference(a, b, at: "\(path)[\(n)]") { return d } }
        return nil
    }
    return "\(path): unexpected expected value \(want)"
}

func sameScalar(_ type: String, _ got: String, _ want: String) -> Bool {
    switch type {
    case "float":
        if want.hasSuffix("nan") { return got == "nan" }
        return Double(got) == Double(want)
    case "datetime", "datetime-local", "time-local", "date-local":
        return normalizedTime(got) == normalizedTime(want)
    default:
        return got == want
    }
}

/// Fractional seconds without trailing zeros (`56.600Z` and `56.6Z` are the same instant).
func normalizedTime(_ s: String) -> String {
    guard let dot = s.firstIndex(of: ".") else { return s }
    let fracEnd = s[s.index(after: dot)...].firstIndex { !$0.isNumber } ?? s.endIndex
    var frac = String(s[s.index(after: dot)..<fracEnd])
    while frac.hasSuffix("0") { frac.removeLast() }
    return s[..<dot] + (frac.isEmpty ? "" : "." + frac) + s[fracEnd...]
}

@Suite struct TOMLConformanceTests {
    @Test func theSuiteIsThere() {
        #expect(suiteCases("valid").count >= 200)
        #expect(suiteCases("invalid").count >= 450)
    }

    @Test(arguments: suiteCases("valid"))
    func everyValidCaseDecodesToItsJSON(_ path: String) throws {
        let expectedData = try Data(contentsOf: suiteRoot.appendingPathComponent(path.dropLast(5) + ".json"))
        let expected = try JSONSerialization.jsonObject(with: expectedData, options: [.fragmentsAllowed])
        let table = try TOMLParser.parse(readCase(path))
        let d = difference(taggedTable(table), expected)
        #expect(d == nil, "\(path): \(d ?? "")")
    }

    @Test(arguments: suiteCases("invalid"))
    func everyInvalidCaseIsRefusedWithALine(_ path: String) {
        #expect(throws: TOMLError.self, "\(path) was accepted") {
            _ = try TOMLParser.parse(readCase(path))
        }
        do {
            _ = try TOMLParser.parse(readCase(path))
        } catch {
            #expect(error.line >= 1 && error.column >= 1)
        }
    }
}
