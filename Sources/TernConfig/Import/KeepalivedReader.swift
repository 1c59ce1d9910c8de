// keepalived.conf syntax: lines of words (`#` and `!` start comments, "quoted words" keep their
// spaces), `{ ... }` blocks opened after a statement (on its line or the next), and `include
// GLOB` (relative to the including file) spliced in where it stands. Bounded: nesting, include
// depth, file size, and in all (every include counted, however often a glob matches) files,
// bytes and lines, so a hostile file (an include that names its own directory's glob) cannot
// exhaust the daemon. Messages never quote a file outside the first file's directory.

#if canImport(Glibc)
    import Glibc
#endif

/// One statement: its words and, when a block follows, the statements inside it.
public struct KeepalivedStatement: Sendable {
    public var words: [String]
    public var source: ImportSource
    public var block: [KeepalivedStatement]?

    public var keyword: String { words.first ?? "" }
    public var arguments: ArraySlice<String> { words.dropFirst() }
}

public enum KeepalivedReader {
    public static let maxFileBytes = 16 << 20
    public static let maxLines = 1_000_000
    public static let maxDepth = 16
    public static let maxIncludeDepth = 8
    /// Files read and bytes read in all, includes counted each time they are spliced in.
    public static let maxFiles = 1000
    public static let maxTotalBytes = 64 << 20

    /// What one import may still read.
    struct Budget {
        var files = maxFiles
        var bytes = maxTotalBytes
        /// The first file's directory (resolved, with a trailing slash): files outside it are not quoted.
        var tree: String
        /// Set once a limit was hit (and said): nothing more is read.
        var exhausted = false
    }

    /// The statements of `path` and what it includes. Messages quote the files under
    /// `quotedUnder` (a directory; default: `path`'s own). `read` and `glob` are the file
    /// system's unless a test gives its own.
    public static func read(
        path: String, quotedUnder: String? = nil, read: (String) -> [UInt8]? = readFile, glob: (String) -> [String] = globFiles
    ) throws(ImportError) -> [KeepalivedStatement] {
        var lines: [(words: [String], source: ImportSource)] = []
        var problems: [ImportMessage] = []
        let tree = quotedUnder ?? directory(of: path)
        var budget = Budget(tree: resolved(tree.isEmpty ? "." : tree) + "/")
        collect(path: path, from: nil, depth: 0, read: read, glob: glob, into: &lines, problems: &problems, budget: &budget)
        guard problems.isEmpty else { throw ImportError(problems) }
        return try statements(lines)
    }

    /// The words of every line of `path`, includes spliced in.
    static func collect(
        path: String, from: ImportSource?, depth: Int, read: (String) -> [UInt8]?, glob: (String) -> [String],
        into lines: inout [(words: [String], source: ImportSource)], problems: inout [ImportMessage], budget: inout Budget
    ) {
        let here = from ?? ImportSource(file: path, line: 0)
        guard depth <= maxIncludeDepth else {
            budget.exhausted = true  // said once: every other branch would say it again
            return problems.append(ImportMessage(here, "includes nested deeper than \(maxIncludeDepth)"))
        }
        guard budget.files > 0 else {
            budget.exhausted = true
            return problems.append(
                ImportMessage(here, "more than \(maxFiles) files read in all (does an include match the file that includes it?)"))
        }
        budget.files -= 1
        guard let bytes = read(path) else {
            return problems.append(ImportMessage(here, "cannot read \(escapedForMessage(path))"))
        }
        guard bytes.count <= maxFileBytes else {
            return problems.append(ImportMessage(here, "\(escapedForMessage(path)) is larger than \(maxFileBytes) bytes"))
        }
        guard bytes.count <= budget.bytes else {
            budget.exhausted = true
            return problems.append(ImportMessage(here, "more than \(maxTotalBytes) bytes read in all"))
        }
        budget.bytes -= bytes.count
        let quotable = resolved(path).hasPrefix(budget.tree)
        var number = 0
        for raw in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            let source = ImportSource(file: path, line: number, quotable: quotable)
            guard lines.count < maxLines else {
                return problems.append(ImportMessage(source, "more than \(maxLines) lines in all"))
            }
            guard let text = String(validating: raw, as: UTF8.self) else {
                problems.append(ImportMessage(source, "not UTF-8 text"))
                continue
            }
            let (words, unclosed) = split(text)
            if unclosed { problems.append(ImportMessage(source, "a quoted word is not closed")) }
            guard let first = words.first else { continue }
            if first == "include" {
                guard words.count == 2 else {
                    problems.append(ImportMessage(source, "include takes one file name or pattern"))
                    continue
                }
                let pattern = words[1].hasPrefix("/") ? words[1] : directory(of: path) + words[1]
                let files = glob(pattern)
                if files.isEmpty {
                    problems.append(ImportMessage(source, "include \(escapedForMessage(words[1])): no such file"))
                }
                for f in files {
                    collect(
                        path: f, from: source, depth: depth + 1, read: read, glob: glob, into: &lines, problems: &problems,
                        budget: &budget)
                    if budget.exhausted { return }
                }
                continue
            }
            lines.append((words, source))
        }
    }

    /// A line's words, braces apart; comments dropped. `unclosed` when a quote is left open.
    static func split(_ line: String) -> (words: [String], unclosed: Bool) {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quoted = false
        func end() {
            if inWord { words.append(word) }
            word = ""
            inWord = false
        }
        for c in line {
            if quoted {
                if c == "\"" { quoted = false } else { word.append(c) }
                continue
            }
            switch c {
            case "\"":
                quoted = true
                inWord = true
            case "#", "!":
                end()
                return (words, false)
            case " ", "\t", "\r":
                end()
            case "{", "}":
                end()
                words.append(String(c))
            default:
                word.append(c)
                inWord = true
            }
        }
        end()
        return (words, quoted)
    }

    /// Lines into nested statements: `{` opens the block of the statement before it.
    static func statements(_ lines: [(words: [String], source: ImportSource)]) throws(ImportError) -> [KeepalivedStatement] {
        // Each open block: the statement that owns it and what it holds so far.
        var stack: [(owner: KeepalivedStatement?, body: [KeepalivedStatement])] = [(nil, [])]
        for (words, source) in lines {
            var current: [String] = []
            func finish() {
                if !current.isEmpty { stack[stack.count - 1].body.append(KeepalivedStatement(words: current, source: source)) }
                current = []
            }
            for w in words {
                switch w {
                case "{":
                    finish()
                    guard let owner = stack[stack.count - 1].body.popLast(), owner.block == nil else {
                        throw ImportError([ImportMessage(source, "a block ({) with no statement before it")])
                    }
                    guard stack.count <= maxDepth else {
                        throw ImportError([ImportMessage(source, "blocks nested deeper than \(maxDepth)")])
                    }
                    stack.append((owner, []))
                case "}":
                    finish()
                    guard stack.count > 1, let frame = stack.popLast(), var owner = frame.owner else {
                        throw ImportError([ImportMessage(source, "} closes no block")])
                    }
                    owner.block = frame.body
                    stack[stack.count - 1].body.append(owner)
                default:
                    current.append(w)
                }
            }
            finish()
        }
        if stack.count > 1, let owner = stack[stack.count - 1].owner {
            throw ImportError([
                ImportMessage(owner.source, "the block of \"\(escapedForMessage(owner.keyword))\" is never closed (missing })")
            ])
        }
        return stack[0].body
    }

    /// `path` absolute, with symbolic links and `..` resolved (realpath(3)); when it does not
    /// exist (a test's in-memory files), `.` and `..` resolved by name.
    static func resolved(_ path: String) -> String {
        if let p = realpath(path, nil) {
            defer { free(p) }
            return String(cString: p)
        }
        var absolute = path
        if !path.hasPrefix("/"), let cwd = getcwd(nil, 0) {
            absolute = String(cString: cwd) + "/" + path
            free(cwd)
        }
        var parts: [Substring] = []
        for part in absolute.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[...slash])
    }

    /// A file's bytes (at most `maxFileBytes` + 1), or nil when it cannot be read.
    public static func readFile(_ path: String) -> [UInt8]? {
        // Regular files only: an include naming a FIFO would otherwise block forever.
        try? RegularFile.read(path, limit: maxFileBytes).get()
    }

    /// The files a pattern names, sorted (glob(3)); the name itself when it has no wildcard and exists.
    public static func globFiles(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
