// Where Tern's installed files are found: PREFIX/lib/tern beside PREFIX/bin (`make install`; the
// build tree has .build/lib/tern beside .build/debug and .build/release), from the path ternd or
// ternctl was started as.

#if canImport(Glibc)
    import Glibc
#endif

public enum Installed {
    /// `name` in lib/tern beside the directory of `executable`, computed lexically (.build/debug is
    /// a link, so "debug/.." would leave the build tree).
    public static func libFile(_ name: String, executable: String) -> String {
        var parts = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        if let bin = parts.last, !bin.isEmpty, bin != ".", bin != ".." {
            parts = parts.dropLast()
        } else {
            parts.append("..")
        }
        let prefix = parts.joined(separator: "/")
        return (prefix.isEmpty && executable.hasPrefix("/") ? "" : prefix.isEmpty ? "." : prefix) + "/lib/tern/\(name)"
    }

    /// This process's file as started (a path given to exec), else /proc/self/exe. The path as
    /// given, not resolved, for `libFile`.
    public static func executablePath() -> String {
        if let given = CommandLine.arguments.first, given.contains("/") { return given }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }
}
