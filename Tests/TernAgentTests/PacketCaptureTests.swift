import CPcap
import Foundation
import TernConfig
import TernPcap
import TernTestSupport
import TernWire
import Testing

@testable import TernAgent
@testable import TernDataplane

@Suite struct PacketCaptureTests {
    let frame = Frames.flow(
        source: IPAddress("198.51.100.7")!, destination: IPAddress("192.0.2.10")!, sourcePort: 40000, destinationPort: 80)

    func capture(_ tap: PacketTap, workers: Int = 2, ringBytes: Int = 1 << 16) throws -> (PacketCapture, Publisher) {
        let config = try ConfigLoader.parse(base, file: "t.toml")
        let publisher = Publisher(spec: DesiredState(config: config).snapshotSpec, workers: workers)
        let c = PacketCapture(
            tap: tap, cell: publisher.cell, workers: workers, ports: 1, clock: { 100 }, log: { _, _ in }, ringBytes: ringBytes)
        return (c, publisher)
    }

    func file() -> String { NSTemporaryDirectory() + "tern-capture-\(UUID().uuidString).pcap" }

    func failure(_ r: ControlResponse) -> String? { if case .error(let e) = r { e.error } else { nil } }

    /// libpcap's filter language, matched on a frame as received; a filter that does not compile
    /// is refused with libpcap's reason.
    @Test func filtersUseLibpcapsLanguage() throws {
        var error = [CChar](repeating: 0, count: 256)
        let port80 = try #require(tern_filter_compile("tcp port 80 and host 198.51.100.7", &error, error.count))
        let port81 = try #require(tern_filter_compile("tcp port 81", &error, error.count))
        defer {
            tern_filter_free(port80)
            tern_filter_free(port81)
        }
        #expect(tern_filter_match(port80, frame, UInt32(frame.count), UInt32(frame.count)) == 1)
        #expect(tern_filter_match(port81, frame, UInt32(frame.count), UInt32(frame.count)) == 0)
        #expect(tern_filter_match(nil, frame, UInt32(frame.count), UInt32(frame.count)) == 1)
        let (c, _) = try capture(PacketTap())
        let r = try CaptureRequest(arguments: ["file": file(), "filter": "tcp prot 80"])
        #expect(failure(c.start(r))?.hasPrefix("capture: filter \"tcp prot 80\": ") == true)
    }

    /// What workers copy reaches the file in time order across workers, with its timestamps and
    /// lengths; the capture ends at its count, the tap is cleared at once and the session is freed
    /// once every worker has started a burst since.
    @Test func copiesReachThePcapFileAndTheCaptureEndsAtItsCount() throws {
        let tap = PacketTap()
        let (c, publisher) = try capture(tap)
        let path = file()
        defer { unlink(path) }
        guard case .capture(let started) = c.start(try CaptureRequest(arguments: ["file": path, "count": "3", "snaplen": "64"]))
        else {
            Issue.record("not started")
            return
        }
        #expect(started.running && started.file == path)
        #expect(
            failure(c.start(try CaptureRequest(arguments: ["file": file()])))?.hasPrefix("a capture to \(path) is running")
                == true)
        let session = try #require(tap.current())
        frame.withUnsafeBytes { f in
            session.pointee.rings[1].push(f.baseAddress!, length: f.count, snapLength: 64, nanoseconds: 2_000)
            session.pointee.rings[0].push(f.baseAddress!, length: f.count, snapLength: 64, nanoseconds: 1_000)
            session.pointee.rings[0].push(f.baseAddress!, length: 40, snapLength: 64, nanoseconds: 3_000)
            session.pointee.rings[0].push(f.baseAddress!, length: 40, snapLength: 64, nanoseconds: 4_000)
        }
        for w in 0..<2 { _ = publisher.cell.enterBurst(reader: w) }  // the workers run
        c.tick()
        #expect(tap.current() == nil && c.status().running && c.status().packets == 3 && c.status().ended == "count")
        for w in 0..<2 { _ = publisher.cell.enterBurst(reader: w) }
        c.tick()
        #expect(!c.status().running && c.status().packets == 3 && c.status().file == path)
        let records = try Pcap.read(path: path)
        #expect(records.map(\.timestampNanoseconds) == [1_000, 2_000, 3_000])
        #expect(records.map(\.originalLength) == [frame.count, frame.count, 40])
        #expect(records[0].data == Array(frame.prefix(64)) && records[2].data == Array(frame.prefix(40)))
        #expect(failure(c.start(try CaptureRequest(arguments: ["file": path])))?.contains("it exists") == true)
    }

    /// A worker's ring never blocks: a copy that finds it full is counted and left out; records
    /// wrap around the ring's end intact.
    @Test func aFullRingDropsCopiesNotPacketsAndRecordsWrapIntact() {
        let ring = CaptureRing(bytes: 4096)
        defer { ring.deallocate() }
        var drained: [Int] = []
        frame.withUnsafeBytes { f in
            for round in 0..<20 {
                var pushed = 0
                while ring.push(f.baseAddress!, length: f.count, snapLength: 1000, nanoseconds: UInt64(round)) { pushed += 1 }
                #expect(pushed > 0)
                ring.drain { _, bytes, length in
                    drained.append(length)
                    #expect(Array(bytes) == frame)
                }
            }
        }
        #expect(ring.dropped == 20 && drained.count == Int(ring.copied) && drained.allSatisfy { $0 == frame.count })
        #expect(drained.count > 20)
    }
}
