// A next hop's MAC that the control thread learns (`[[port]] gateway`) and workers read once per
// burst: one relaxed atomic word, `PortContext.unknownMAC` (0) until the neighbour is resolved.

import Synchronization
import TernWire

public final class GatewayCell: @unchecked Sendable {
    /// What workers read (raw, so a worker's queue list holds no reference to count).
    public let word: UnsafeMutablePointer<Atomic<UInt64>>

    public init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Atomic(PortContext.unknownMAC.value))
    }

    deinit {
        word.deinitialize(count: 1)
        word.deallocate()
    }

    public var mac: MACAddress {
        get { MACAddress(value: word.pointee.load(ordering: .relaxed)) }
        set { word.pointee.store(newValue.value, ordering: .relaxed) }
    }

    /// A worker's read.
    @inlinable @inline(__always)
    public static func load(_ word: UnsafeMutablePointer<Atomic<UInt64>>) -> MACAddress {
        MACAddress(value: word.pointee.load(ordering: .relaxed))
    }
}
