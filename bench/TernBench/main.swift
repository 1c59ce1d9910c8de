// TernBench: Tern's benchmarks. See bench/README.md for what each mode measures.
//
//   TernBench [--quick] [--json FILE] [--mode pipeline|maglev|reload|dpdk|all] [--scenario NAME] [--passes N]
//   TernBench --callgrind SCENARIO PASSES    (one scenario, for valgrind --toggle-collect=*benchBurst*)

#if canImport(Glibc)
    import Glibc
#endif

var options = BenchOptions.parse(Array(CommandLine.arguments.dropFirst()))
exit(runBenchmarks(options))
