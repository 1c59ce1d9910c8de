import Testing

@testable import TernDPDK

@Suite struct StartupChecksTests {
    /// The kernel links ternd reads: af_packet's `iface=` (both spellings of --vdev) and AF_XDP
    /// interfaces; other vdevs have none.
    @Test func kernelLinksComeFromAFPacketVdevsAndAFXDPPorts() {
        let eal = [
            "-l", "0-1", "--vdev", "net_af_packet0,iface=lb1,qpairs=2", "--vdev=net_af_packet1,iface=eth9",
            "--vdev", "net_pcap0,rx_pcap=in.pcap", "--vdev", "net_tap0,iface=tern0",
        ]
        #expect(StartupChecks.kernelPortInterfaces(eal, afXDP: ["eth1"]) == ["lb1", "eth9", "eth1"])
    }

    /// Loopback (its own link) and an interface that does not exist are not virtual pairs: no
    /// checksum-offload warning. (A veth's warning is checked end to end: the lab's tutorial.)
    @Test func noChecksumWarningForLoopbackOrAMissingInterface() {
        #expect(StartupChecks.checksumOffloadWarnings(["lo", "no-such-link0"]).isEmpty)
    }
}
