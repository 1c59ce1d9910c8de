// ternd: the Tern data plane. Wiring only; see Daemon.swift.
#if canImport(Glibc)
    import Glibc
#endif

exit(Daemon.run(CommandLine.arguments))
