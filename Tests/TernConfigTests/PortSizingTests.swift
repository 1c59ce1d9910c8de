import Testing

@testable import TernConfig

@Suite struct PortSizingTests {
    let nic = DescriptorLimits(min: 64, max: 4096, align: 32)

    @Test func unsetDescriptorsFitTheDevice() throws {
        #expect(try nic.descriptors(requested: nil, key: ConfigSchema.rxDescriptors, device: "port[0] (x)").get() == 1024)
        let small = DescriptorLimits(min: 32, max: 512, align: 8)
        #expect(try small.descriptors(requested: nil, key: ConfigSchema.rxDescriptors, device: "d").get() == 512)
        let big = DescriptorLimits(min: 2048, max: 8192, align: 1)
        #expect(try big.descriptors(requested: nil, key: ConfigSchema.txDescriptors, device: "d").get() == 2048)
    }

    @Test func setDescriptorsOutsideTheDeviceAreRefusedNamingKeyAndLimits() throws {
        for bad in [32, 8192, 1000] {
            guard
                case .failure(let p) = nic.descriptors(
                    requested: bad, key: ConfigSchema.rxDescriptors, device: "port[1] (0000:03:00.0)")
            else {
                Issue.record("\(bad) accepted")
                continue
            }
            #expect(p.keyPath == "dataplane.rx_descriptors")
            #expect(p.message == "\(bad) does not fit port[1] (0000:03:00.0): it takes 64...4096 in multiples of 32")
        }
        #expect(try nic.descriptors(requested: 2048, key: ConfigSchema.rxDescriptors, device: "d").get() == 2048)
    }

    @Test func poolHoldsRingsBurstsHeldFragmentsHostPathAndReplay() {
        let plan = MbufPlan.compute(
            workers: 2, burstSize: 32, descriptors: [(1024, 1024), (512, 256)], hostPorts: [1], replayPackets: 100_000,
            heldFragments: 64)
        #expect(plan.rings == 2 * 2048 + 2 * 768)
        #expect(plan.inFlight == 2 * 2 * 4 * 32 + 2 * 64 + 3 * 256 + 1024)
        #expect(plan.hostPath == 768 + 3 * 1024 + 64)
        #expect(plan.replay == 100_000)
        #expect(plan.total == plan.rings + plan.inFlight + plan.hostPath + 100_000)
        #expect(plan.summary.hasPrefix("\(plan.total) mbufs (rings 5632"))
    }

    @Test func dataRoomHoldsTheLargestFrameWithAVLANTagInWholeKiB() {
        #expect(MbufPlan.dataRoom(mtus: [1500]) == 2048)
        #expect(MbufPlan.dataRoom(mtus: [1500, 9000]) == 9216)
        #expect(MbufPlan.dataRoom(mtus: [4000]) == 4096)
        #expect(MbufPlan.dataRoom(mtus: []) == 2048)
    }

    @Test func onlyInfiniteRXCapturesAreReplayed() {
        #expect(MbufPlan.replayedCaptures(devargs: "rx_pcap=/tmp/a.pcap,tx_pcap=/tmp/b.pcap,infinite_rx=1") == ["/tmp/a.pcap"])
        #expect(MbufPlan.replayedCaptures(devargs: "rx_pcap=/a,rx_pcap=/b, infinite_rx = 1") == ["/a", "/b"])
        #expect(MbufPlan.replayedCaptures(devargs: "rx_pcap=/tmp/a.pcap,tx_pcap=/tmp/b.pcap").isEmpty)
        #expect(MbufPlan.replayedCaptures(devargs: "rx_pcap=/a,infinite_rx=0").isEmpty)
        #expect(MbufPlan.replayedCaptures(devargs: "").isEmpty)
        #expect(MbufPlan.replayedCaptures(devargs: "iface=veth0,framesz=10240").isEmpty)
    }
}

@Suite struct AFPacketFramesTests {
    @Test func framesizComesFromTheDevargsOrTheDefault() {
        #expect(AFPacketFrames.frameSize(device: "net_af_packet0", devargs: "iface=eth1") == 2048)
        #expect(AFPacketFrames.frameSize(device: "net_af_packet0", devargs: "iface=eth1, framesz=9216,blocksz=36864") == 9216)
        #expect(AFPacketFrames.frameSize(device: "net_pcap0", devargs: "framesz=9216") == nil)
    }

    @Test func aJumboFrameNeedsARingFrameWithRoomForItsHeader() {
        #expect(AFPacketFrames.frameSizeNeeded(mtu: 1500) == 1584)  // fits the default 2,048
        #expect(AFPacketFrames.frameSizeNeeded(mtu: 9000) == 9088)
        #expect(AFPacketFrames.dataRoom(frameSize: 9216) <= MbufPlan.dataRoom(mtus: [9000]))
    }
}
