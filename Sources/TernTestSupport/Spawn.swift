// Threads for tests of cross-thread handoffs (SnapshotCell, ControlExchange): plain threads, because
// the code under test blocks or spins as workers and the control thread do.

import Dispatch
import Foundation

/// Runs `body` on a thread of its own (not Dispatch's pool, which tests running in parallel can
/// fill with spinning work, so that a reader this test waits for would never be scheduled);
/// the semaphore is signalled when it returns.
public func spawn(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let finished = DispatchSemaphore(value: 0)
    Thread {
        body()
        finished.signal()
    }.start()
    return finished
}
