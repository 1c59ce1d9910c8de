import Testing

@testable import TernAgent

@Suite struct MetricsTextTests {
    @Test func seriesOfOneFamilyStayTogetherUnderOneHelpAndType() {
        var t = MetricsText()
        t.counter("tern_a_total", "A.", [("vip", "v1")], 1)
        t.gauge("tern_b", "B.", [], 2)
        t.counter("tern_a_total", "A.", [("vip", "v2")], 3)
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
        t.gauge("tern_x", "back\\slash\nnew \"quoted\"", [("a", "q\"b\\n\nz")], 0.5)
        #expect(
            String(decoding: t.bytes, as: UTF8.self) == """
                # HELP tern_x back\\\\slash\\nnew "quoted"
                # TYPE tern_x gauge
                tern_x{a="q\\"b\\\\n\\nz"} 0.5

                """)
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
