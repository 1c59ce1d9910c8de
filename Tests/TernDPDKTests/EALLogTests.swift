import Testing

@testable import TernDPDK

@Suite struct EALLogTests {
    @Test func netTapsMultiqLinesAreKnownHarmlessAndOthersAreNot() {
        // As DPDK 22.11's net_tap logs them on every start where the kernel lacks multiq.
        for line in [
            "qdisc_create_multiq(): Could not add multiq qdisc (2): No such file or directory",
            "eth_dev_tap_create(): tern0: failed to create multiq qdisc.",
            "tap_nl_dump_ext_ack(): Specified qdisc kind is unknown",
            "eth_dev_tap_create():  Disabling rte flow support: No such file or directory(2)",
            "tap_mp_req_on_rxtx(): Failed to send start req to secondary 95",
        ] {
            #expect(EALLog.harmlessReason(line) != nil, "\(line)")
        }
        #expect(EALLog.harmlessReason("eth_rx_queue_setup(): Multiseg mbufs are not supported in infinite_rx mode.") == nil)
        #expect(EALLog.harmlessReason("EAL: Cannot allocate memzone list") == nil)
    }
}
