// A cross-thread handoff: threads that are not the control thread (SwiftNIO's event loop for a
// Prometheus scrape, DPDK's telemetry thread) ask a question; the control thread, the only one that
// may read snapshots, answers it on its next turn. Orderings: a question is appended under the
// lock and a byte written to a pipe the control loop polls; the control thread takes the list
// under the lock, writes each answer, then signals the asker's semaphore, whose wait makes that
// write visible to the asker. An asker that gives up removes itself; an answer written after that
// is never read. ThreadSanitizer checks it (ControlExchangeTests under `make tsan-test`).

import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Hands questions from other threads (a Prometheus scrape, a DPDK telemetry command) to the
/// control thread and the answers back.
public final class ControlExchange: Sendable {
    final class Waiter: @unchecked Sendable {
        let question: String
        let done = DispatchSemaphore(value: 0)
        var answer: any Sendable = [UInt8]()  // written before `done` is signalled, read after
        init(_ question: String) { self.question = question }
    }
    /// A pthread mutex (NIOLock), not `Synchronization.Mutex`: the latter waits on futexes that
    /// ThreadSanitizer cannot see, so it reported every access to the list as a race.
    let waiting = NIOLockedValueBox<[Waiter]>([])
    /// The control loop polls `descriptor`; a scrape writes a byte to the other end.
    public let descriptor: Int32
    let wake: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        descriptor = fds[0]
        wake = fds[1]
    }

    deinit {
        close(descriptor)
        close(wake)
    }

    /// From any thread: the control thread's answer, or nil when it did not answer in time (or
    /// answered with something other than `Answer`).
    public func ask<Answer: Sendable>(_ question: String, as: Answer.Type = [UInt8].self, timeoutSeconds: Double = 5) -> Answer? {
        let w = Waiter(question)
        waiting.withLockedValue { $0.append(w) }
        var byte: UInt8 = 1
        _ = write(wake, &byte, 1)
        guard w.done.wait(timeout: .now() + timeoutSeconds) == .success else {
            waiting.withLockedValue { list in list.removeAll { $0 === w } }
            return nil
        }
        return w.answer as? Answer
    }

    /// On the control thread, when `descriptor` is readable: answers every waiting question (each
    /// distinct question once).
    public func serve(_ answer: (String) -> any Sendable) {
        var sink = [UInt8](repeating: 0, count: 64)
        while read(descriptor, &sink, sink.count) > 0 {}
        let waiters = waiting.withLockedValue { list -> [Waiter] in
            defer { list.removeAll() }
            return list
        }
        var answers: [String: any Sendable] = [:]
        for w in waiters {
            if answers[w.question] == nil { answers[w.question] = answer(w.question) }
            w.answer = answers[w.question]!
            w.done.signal()
        }
    }
}
