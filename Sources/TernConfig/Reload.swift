// What a reload may change: every key but those `ConfigSchema` marks restart-only (`[dataplane]`,
// `[[port]]`, `[control]`, `[metrics]`), which shape queues, mempools, flow tables and listeners
// at start-up.

extension TernConfig {
    /// Key paths of restart-only settings that differ in `next` (empty: the reload may proceed).
    /// A key counts as set to its default when absent; a port added or removed shows as its keys.
    public func restartOnlyChanges(to next: TernConfig) -> [String] {
        let now = Dictionary(restartOnly.map { ($0.path, $0.value) }, uniquingKeysWith: { a, _ in a })
        let then = Dictionary(next.restartOnly.map { ($0.path, $0.value) }, uniquingKeysWith: { a, _ in a })
        let paths = restartOnly.map(\.path) + next.restartOnly.map(\.path).filter { now[$0] == nil }
        return paths.filter { now[$0] != then[$0] }
    }
}
