// The Prometheus text exposition format (0.0.4), written in one pass: each family's HELP and TYPE
// lines, then its series, families in the order first added. Tern writes it itself because
// swift-prometheus's registry copies a family's whole label map whenever a series is added, so a
// scrape cost grew with the square of the backends (3.5 s at 5,000; every scrape timed out at
// 10,000). The format's rules kept here: label values escape `\`, `"` and newline, HELP text `\`
// and newline; values are Go floats (`+Inf`, `-Inf`, `NaN`). promtool checks the output
// (`make metrics-test`).

/// One exposition, built family by family.
struct MetricsText {
    private struct Family {
        let family: MetricFamily
        var series: [UInt8] = []
    }
    private var families: [Family] = []
    private var index: [String: Int] = [:]

    /// Adds a series of a counter family: one value per label of the family, in its order.
    mutating func add(_ family: MetricFamily, _ labels: [String], _ value: UInt64) {
        append(family, labels, String(value))
    }

    /// Adds a series of a gauge family.
    mutating func add(_ family: MetricFamily, _ labels: [String], _ value: Double) {
        append(family, labels, MetricsText.format(value))
    }

    private mutating func append(_ family: MetricFamily, _ labels: [String], _ value: String) {
        precondition(labels.count == family.labels.count, "\(family.name): labels \(family.labels), values \(labels)")
        let i: Int
        if let known = index[family.name] {
            i = known
        } else {
            i = families.count
            index[family.name] = i
            families.append(Family(family: family))
        }
        families[i].series.append(contentsOf: family.name.utf8)
        if !labels.isEmpty {
            families[i].series.append(UInt8(ascii: "{"))
            for (n, (label, v)) in zip(family.labels, labels).enumerated() {
                if n > 0 { families[i].series.append(UInt8(ascii: ",")) }
                families[i].series.append(contentsOf: label.utf8)
                families[i].series.append(contentsOf: "=\"".utf8)
                MetricsText.escape(v, quotes: true, into: &families[i].series)
                families[i].series.append(UInt8(ascii: "\""))
            }
            families[i].series.append(UInt8(ascii: "}"))
        }
        families[i].series.append(UInt8(ascii: " "))
        families[i].series.append(contentsOf: value.utf8)
        families[i].series.append(UInt8(ascii: "\n"))
    }

    /// The whole text.
    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(0) { $0 + $1.series.count + $1.family.help.utf8.count + 64 })
        for f in families {
            out.append(contentsOf: "# HELP \(f.family.name) ".utf8)
            MetricsText.escape(f.family.help, quotes: false, into: &out)
            out.append(contentsOf: "\n# TYPE \(f.family.name) \(f.family.kind.rawValue)\n".utf8)
            out.append(contentsOf: f.series)
        }
        return out
    }

    static func escape(_ s: String, quotes: Bool, into out: inout [UInt8]) {
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
            case UInt8(ascii: "\"") where quotes: out.append(contentsOf: "\\\"".utf8)
            default: out.append(byte)
            }
        }
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
