// A backend's health as its checks see it: up until `fall` checks in a row fail, down until `rise`
// in a row succeed (as keepalived and HAProxy count). Backends start up, so a restart of ternd
// sends traffic at once; a dead backend is found after `fall` intervals.

public struct HealthState: Sendable, Equatable {
    public private(set) var up = true
    /// Results in a row that disagree with `up`.
    public private(set) var streak = 0
    /// Changes of `up` so far.
    public private(set) var transitions: UInt64 = 0
    /// The last check's outcome, for `show backends` ("" before the first).
    public private(set) var lastResult = ""

    public init() {}

    /// Records a check; returns whether `up` changed.
    public mutating func record(ok: Bool, detail: String, rise: Int, fall: Int) -> Bool {
        lastResult = detail
        guard ok != up else {
            streak = 0
            return false
        }
        streak += 1
        guard streak >= (up ? fall : rise) else { return false }
        up = ok
        streak = 0
        transitions += 1
        return true
    }
}
