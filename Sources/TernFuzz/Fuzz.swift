// Fuzz target: arbitrary bytes as a frame through the parser and the whole pipeline, against a
// snapshot whose VIPs cover every path (IPv4/IPv6, TCP/UDP, any-port, IPIP and GUE, v4/v6 backends).
//
// Built with -DTERN_LIBFUZZER and `--sanitize=fuzzer` it is a libFuzzer binary (see the Makefile's
// `fuzz` target); built plainly it replays the files named on its command line.

import TernBalancing
import TernDataplane
import TernTestSupport
import TernWire

#if canImport(Glibc)
import Glibc
#endif

/// The first bytes of the input choose the frame's header skeleton, so the fuzzer reaches VIPs
/// quickly; the rest are the frame. The same simulator is reused across inputs (a live flow table).
nonisolated(unsafe) var simulator: Simulator? = nil

func makeSimulator() -> Simulator {
    func a(_ s: String) -> IPAddress { IPAddress(s)! }
    let backends4: [(address: IPAddress, weight: Int)] = [(a("10.1.0.1"), 1), (a("10.1.0.2"), 2), (a("10.1.0.3"), 0)]
    let backends6: [(address: IPAddress, weight: Int)] = [(a("fc00::1"), 1), (a("fc00::2"), 1)]
    let spec = SnapshotSpec(
        services: [
            ServiceSpec(address: a("192.0.2.10"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, backends: backends4),
            ServiceSpec(address: a("192.0.2.10"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080, backends: backends6),
            ServiceSpec(address: a("2001:db8::10"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080, backends: backends4),
            ServiceSpec(address: a("2001:db8::10"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .ipip, backends: backends6),
        ],
        tableSize: 251, tunnelSourceV4: a("10.0.0.10"), tunnelSourceV6: a("fc00::10"))
    let worker = Worker(
        index: 0, port: PortContext(mac: MACAddress(value: 2), gatewayMAC: MACAddress(value: 1), mtu: 1500),
        flowTableEntries: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30)
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if simulator == nil { simulator = makeSimulator() }
    let frame = FuzzFrames.frame(from: UnsafeBufferPointer(start: data, count: size))
    _ = simulator!.run(frame)
    return 0
}

#if TERN_LIBFUZZER
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under the name `<Target>_main`; libFuzzer brings its
/// own `main`, so the fuzz build defines only this and hands control to libFuzzer's driver.
@_cdecl("TernFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzzOne($0, $1) }
}
#else
@main
struct ReplayMain {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let f = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var c = fgetc(f)
            while c != EOF { bytes.append(UInt8(c)); c = fgetc(f) }
            fclose(f)
            bytes.withUnsafeBufferPointer { _ = fuzzOne($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        }
        print("replayed \(CommandLine.arguments.count - 1) inputs")
    }
}
#endif
