import Testing

@testable import TernConfig

@Suite struct TOMLParserTests {
    @Test func theConformanceComparisonNoticesADifferentValue() {
        let table = try? TOMLParser.parse("a = 1\nb = \"x\"\n")
        let got = taggedTable(table ?? TOMLTable())
        #expect(difference(got, ["a": ["type": "integer", "value": "1"], "b": ["type": "string", "value": "x"]]) == nil)
        #expect(difference(got, ["a": ["type": "integer", "value": "2"], "b": ["type": "string", "value": "x"]]) != nil)
        #expect(difference(got, ["a": ["type": "float", "value": "1"], "b": ["type": "string", "value": "x"]]) != nil)
        #expect(difference(got, ["a": ["type": "integer", "value": "1"]]) != nil)
    }

    @Test func keysRememberTheirLines() throws {
        let t = try TOMLParser.parse("# c\n\n[a]\nx = 1\n[[b]]\ny = 2\n[[b]]\ny = 3\n")
        #expect(t["a"]?.line == 3)
        guard case .table(let a)? = t["a"]?.value, case .array(let b)? = t["b"]?.value, case .table(let b1) = b[1] else {
            Issue.record("wrong shape")
            return
        }
        #expect(a["x"]?.line == 4 && b1["y"]?.line == 8)
    }

    @Test func tableHeadersThatAbortedTOMLKitAreSyntaxErrors() {
        for text in ["[é]\n", "[~]\n", "[a]\n[é]\n"] {
            #expect(throws: TOMLError.self) { _ = try TOMLParser.parse(text) }
        }
    }

    @Test func deepNestingIsRefusedNotRecursedInto() {
        let deepArray = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse("a = \(deepArray)\n") }
        let deepInline = String(repeating: "{a=", count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse("a = \(deepInline)\n") }
        let deepHeader = "[" + Array(repeating: "a", count: 100_000).joined(separator: ".") + "]\n"
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse(deepHeader) }
        let deepDotted = Array(repeating: "a", count: 100_000).joined(separator: ".") + " = 1\n"
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse(deepDotted) }
        // Nesting within the bounds is fine.
        #expect(throws: Never.self) { _ = try TOMLParser.parse("a = [[[[1]]]]\nb = {c = {d = {e = 1}}}\n") }
    }

    @Test func badUTF8NamesItsPosition() {
        do {
            _ = try TOMLParser.parse([0x61, 0x20, 0x3D, 0x20, 0x22, 0xC3, 0x28, 0x22, 0x0A])
            Issue.record("accepted bad UTF-8")
        } catch {
            #expect(error.line == 1 && error.column == 6 && error.message.contains("UTF-8"))
        }
        #expect(firstInvalidUTF8(Array("añ€😀".utf8)) == nil)
        #expect(firstInvalidUTF8([0xED, 0xA0, 0x80]) == 0)  // a surrogate
        #expect(firstInvalidUTF8([0x41, 0xC0, 0x80]) == 1)  // overlong
        #expect(firstInvalidUTF8([0x41, 0xF4, 0x90, 0x80, 0x80]) == 1)  // above U+10FFFF
        #expect(firstInvalidUTF8([0x41, 0xE2, 0x82]) == 1)  // cut short
    }

    @Test func messagesEscapeControlCharacters() {
        #expect(escapedForMessage("a\nb\"c\\\u{1b}") == "a\\nb\\\"c\\\\\\u{1b}")
    }

    @Test func integersOutOfRangeAreErrorsNotTraps() {
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse("a = 9223372036854775808\n") }
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse("a = 0xFFFFFFFFFFFFFFFFF\n") }
        #expect((try? TOMLParser.parse("a = -9223372036854775808\n"))?["a"]?.value == .integer(.min))
    }
}
