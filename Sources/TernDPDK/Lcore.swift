// Running Swift loops on worker lcores.

import CDPDK

/// Something that runs on a worker lcore until asked to stop.
public protocol LcoreTask: AnyObject, Sendable {
    func run()
}

public enum Lcore {
    /// Starts `task.run()` on `lcore` (`rte_eal_remote_launch`). The C callback captures nothing;
    /// the task travels as its context pointer and is released when `run` returns.
    public static func launch(_ task: any LcoreTask, on lcore: UInt32) throws(DPDKError) {
        let context = Unmanaged.passRetained(task as AnyObject).toOpaque()
        let rc = rte_eal_remote_launch(
            { raw in
                let task = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! any LcoreTask
                task.run()
                return 0
            }, context, lcore)
        guard rc == 0 else {
            Unmanaged<AnyObject>.fromOpaque(context).release()
            throw DPDKError("rte_eal_remote_launch(lcore \(lcore))", code: rc)
        }
    }

    /// Waits for every worker lcore to return (`rte_eal_mp_wait_lcore`).
    public static func waitAll() { rte_eal_mp_wait_lcore() }
}
