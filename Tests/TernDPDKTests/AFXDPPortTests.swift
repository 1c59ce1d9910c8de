// What ternd says before it opens an AF_XDP port it cannot open: no such interface, fewer RX
// queues than workers (with the ethtool line), no XDP program where it looks.

import TernDPDK
import Testing

@Suite struct AFXDPPortTests {
    @Test func anInterfaceThatCannotTakeTheWorkersSocketsIsRefusedSayingWhy() {
        #expect(AFXDPPort.rxQueues("lo") == 1)
        #expect(AFXDPPort.problem(interface: "tern-none0", workers: 1, program: "/") == "no interface named tern-none0")
        #expect(
            AFXDPPort.problem(interface: "lo", workers: 2, program: "/")
                == "lo has 1 RX queue and ternd runs 2 workers, one socket per queue: raise its queues (ethtool -L lo combined 2) "
                + "or lower dataplane.workers")
        let missing = AFXDPPort.problem(interface: "lo", workers: 1, program: "/nonexistent/tern_xdp.o")
        #expect(
            missing
                == "cannot read Tern's XDP program /nonexistent/tern_xdp.o (No such file or directory): make install puts it in "
                + "PREFIX/lib/tern, or set dataplane.xdp_program")
        #expect(AFXDPPort.problem(interface: "lo", workers: 1, program: "/proc/self/status") == nil)
        #expect(AFXDPPort.problem(interface: "../lo", workers: 1, program: "/") == "no interface named ../lo")
    }
}
