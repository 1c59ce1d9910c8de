import Testing

@testable import TernAgent

@Suite struct MetricsTextTests {
    @Test func seriesOfOneFamilyStayTogetherUnderOneHelpAndType() {
        var t = MetricsText()
        let a = MetricFamily("tern_a_total", .counter, ["vip"], "A.")
        t.add(a, ["v1"], 1 as UInt64)
        t.add(MetricFamily("tern_b", .gauge, [], "B."), [], 2.0)
        t.add(a, ["v2"], 3 as UInt64)
        #expect(
            String(decoding: t.bytes, as: UTF8.self) == """
                # HELP tern_a_total A.
                # TYPE tern_a_total counter
                tern_a_total{vip="v1"} 1
                tern_a_total{vip="v2"} 3
                # HELP tern_b B.
                # TYPE tern_b gauge
                tern_b 2

                """)
    }

    @Test func labelValuesAndHelpAreEscapedAsTheFormatSays() {
        var t = MetricsText()
        t.add(MetricFamily("tern_x", .gauge, ["a"], "back\\slash\nnew \"quoted\""), ["q\"b\\n\nz"], 0.5)
        #expect(
            String(decoding: t.bytes, as: UTF8.self) == """
                # HELP tern_x back\\\\slash\\nnew "quoted"
                # TYPE tern_x gauge
                tern_x{a="q\\"b\\\\n\\nz"} 0.5

                """)
    }

    /// A VIP's name splits into IPVS exporter's labels, IPv6 without its brackets.
    @Test func vipNamesSplitIntoAddressPortAndProtocol() {
        #expect(MetricsCatalog.vipLabels("192.0.2.10:80/tcp") == ["192.0.2.10", "80", "tcp"])
        #expect(MetricsCatalog.vipLabels("[2001:db8::1]:443/udp") == ["2001:db8::1", "443", "udp"])
        #expect(MetricsCatalog.vipLabels("198.51.100.0:0/tcp") == ["198.51.100.0", "0", "tcp"])
    }

    /// Every family has a distinct name, Prometheus-valid names and labels, and a counter's name
    /// ends in `_total`: the reference generated from the catalog is the whole exposition.
    @Test func catalogNamesAreUniqueAndValid() {
        let names = MetricsCatalog.all.map(\.name)
        #expect(Set(names).count == names.count)
        for f in MetricsCatalog.all {
            #expect(f.name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }, "\(f.name)")
            #expect(f.kind == .gauge || f.name.hasSuffix("_total"), "\(f.name)")
            #expect(!f.help.isEmpty)
        }
        #expect(MetricsCatalog.reference().contains("| `tern_flow_table_entries` | gauge | `worker` |"))
    }

    @Test func gaugeValuesAreGoFloats() {
        #expect(MetricsText.format(1) == "1")
        #expect(MetricsText.format(1_733_450_000.25) == "1733450000.25")
        #expect(MetricsText.format(.infinity) == "+Inf")
        #expect(MetricsText.format(-.infinity) == "-Inf")
        #expect(MetricsText.format(.nan) == "NaN")
        #expect(MetricsText.format(1e20) == "1e+20")
    }
}
