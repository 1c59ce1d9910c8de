// Publishing forwarding snapshots: build one from a spec (off the packet path, interruptible),
// swap it in with one atomic store (SnapshotCell), retire the old one after the grace period, and
// keep what retired snapshots counted (packets and new flows per VIP backend, by stable counter
// ids) so totals survive reloads.

import TernBalancing
import TernTelemetry

public final class Publisher {
    public let cell: SnapshotCell
    public let workers: Int
    public private(set) var generation: UInt32
    /// Packets and new flows per VIP backend counted by snapshots already retired.
    public private(set) var retired = PacketTotals()
    /// The stable id of every (VIP, backend) pair published so far.
    public private(set) var counterIDs = CounterIDs()

    /// What one publication took.
    public struct Timing: Sendable {
        public var buildSeconds: Double
        public var publishSeconds: Double
        public var generation: UInt32
        /// Maglev tables built; the others (of `vips`) were the running snapshot's, unchanged.
        public var tablesBuilt: Int
        public var vips: Int

        /// "1 Maglev table built", "3 Maglev tables built".
        public var tablesBuiltText: String { "\(tablesBuilt) Maglev table\(tablesBuilt == 1 ? "" : "s") built" }
    }

    /// Builds and publishes the first snapshot (generation 1).
    public init(spec: SnapshotSpec, workers: Int) {
        self.workers = workers
        generation = 1
        cell = SnapshotCell(ForwardingSnapshot(counterIDs.assign(spec), generation: 1, workers: workers), readers: workers)
        cell.current.pointee.reserveNextBuild()
    }

    /// Builds the next snapshot and publishes it; nil (nothing changed) when `shouldStop` stopped
    /// the build. Only the Maglev tables whose backends, weights or size changed are built, and
    /// VIPs built from the same inputs as in the running snapshot are copied from it (records,
    /// templates, table; `ForwardingSnapshot.builtServices`).
    public func publish(_ spec: SnapshotSpec, shouldStop: () -> Bool, clock: () -> Double) -> Timing? {
        let started = clock()
        let spec = counterIDs.assign(spec)
        guard
            let snapshot = ForwardingSnapshot(
                spec, generation: generation &+ 1, workers: workers, previous: UnsafePointer(cell.current), shouldStop: shouldStop
            )
        else { return nil }
        let tablesBuilt = snapshot.tablesBuilt
        generation &+= 1
        let built = clock()
        let old = cell.publish(snapshot)
        let published = clock()
        retired.add(old.pointee)
        SnapshotCell.retire(old)
        return Timing(
            buildSeconds: built - started, publishSeconds: published - built, generation: generation, tablesBuilt: tablesBuilt,
            vips: spec.services.count)
    }

    /// Totals of retired snapshots plus the current one. Exact once the workers stopped; while
    /// they run, the current snapshot's figures may lag by the packets of bursts in flight.
    public func totals() -> PacketTotals {
        var t = retired
        t.add(cell.current.pointee)
        return t
    }
}
