// ControlExchange hands questions from other threads to the control thread and answers back; run
// under ThreadSanitizer by `make tsan-test`.

import Dispatch
import Synchronization
import TernTestSupport
import Testing

@testable import TernAgent

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ControlExchangeTests {
    /// The control thread's side: poll the exchange's descriptor and answer until told to stop.
    static func serve(_ exchange: ControlExchange, until stop: borrowing Atomic<Bool>, answered: borrowing Atomic<Int>) {
        while !stop.load(ordering: .acquiring) {
            var p = pollfd(fd: exchange.descriptor, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 10) > 0 {
                exchange.serve { question in
                    answered.add(1, ordering: .relaxed)
                    return Array("answer to \(question)".utf8)
                }
            }
        }
    }

    @Test func everyAskerOnAnyThreadGetsTheAnswerToItsOwnQuestion() {
        let exchange = ControlExchange()
        let stop = Atomic<Bool>(false)
        let answered = Atomic<Int>(0)
        let wrong = Atomic<Int>(0)
        let control = spawn { ControlExchangeTests.serve(exchange, until: stop, answered: answered) }
        let askers = 4
        let questions = 200
        let finished = (0..<askers).map { a in
            spawn {
                for q in 0..<questions {
                    // Half the questions are shared by all askers (answered once per turn), half their own.
                    let question = q % 2 == 0 ? "shared \(q)" : "asker \(a) question \(q)"
                    let reply = exchange.ask(question, timeoutSeconds: 30)
                    if reply != Array("answer to \(question)".utf8) { wrong.add(1, ordering: .relaxed) }
                }
            }
        }
        for f in finished { f.wait() }
        stop.store(true, ordering: .releasing)
        control.wait()
        #expect(wrong.load(ordering: .relaxed) == 0)
        let n = answered.load(ordering: .relaxed)
        #expect(n > 0 && n <= askers * questions)
    }

    @Test func anAskerNobodyAnswersGivesUpAndALaterTurnAnswersNoOne() {
        let exchange = ControlExchange()
        #expect(exchange.ask("status", timeoutSeconds: 0.05) == nil)
        var asked: [String] = []
        exchange.serve { question in
            asked.append(question)
            return [UInt8]()
        }
        #expect(asked.isEmpty)
    }
}
