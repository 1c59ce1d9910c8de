import Testing

@testable import TernConfig
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// Messages of a refused import (`file:line: message`).
func refusal(_ run: () throws(ImportError) -> ImportResult) -> [String] {
    do {
        _ = try run()
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

let template = """
    [node]
    name = "imported"
    tunnel_source_v4 = "10.0.0.10"
    tunnel_source_v6 = "fd00::10"
    [[port]]
    device = "net_null0"
    gateway_mac = "02:00:00:00:00:fe"
    [maglev]
    table_size = 1009

    """

/// A config made of the template and what an import rendered.
func importedConfig(_ result: ImportResult) throws -> TernConfig {
    var warnings = result.warnings
    return try ConfigLoader.parse(template + ImportRenderer.toml(result.vips, warnings: &warnings), file: "imported.toml")
}

@Suite struct IPVSAdmImportTests {
    let dump = """
        -A -t 192.0.2.10:80 -s mh -b flag-1
        -a -t 192.0.2.10:80 -r 10.1.0.1:80 -i -w 1
        -a -t 192.0.2.10:80 -r 10.1.0.2:80 -i -w 3
        -A -u [2001:db8::53]:53 -s mh -p
        -a -u [2001:db8::53]:53 -r [fd00:1::1]:53 -i -w 1 --tun-type gue --tun-port 6080
        -a -u [2001:db8::53]:53 -r [fd00:1::2]:53 -i -w 0 --tun-type gue --tun-port 6080

        """

    @Test func servicesAndRealServersBecomeVIPsAndBackends() throws {
        let result = try IPVSAdm.parse(dump, file: "rules")
        #expect(
            result.warnings.map(\.description) == [
                "rules:1: scheduler flags (-b flag-1) are not imported: Maglev over the 5-tuple takes none (hash = \"source\" is Tern's source hashing)",
                "rules:4: persistence (-p) becomes hash = \"source\": a client's connections go to one backend as long as the backends stay (no timeout)",
            ])
        let c = try importedConfig(result)
        #expect(c.vips.map(\.name) == ["192.0.2.10:80/tcp", "[2001:db8::53]:53/udp"])
        #expect(c.vips[0].backends.map(\.weight) == [1, 3] && c.vips[0].encapsulation == .ipip)
        #expect(c.vips[1].encapsulation == .gue && c.vips[1].guePort == 6080 && c.vips[1].backends.map(\.weight) == [1, 0])
        #expect(c.vips.map(\.hashMode) == [.fiveTuple, .source])
    }

    @Test func otherSchedulersAndPersistenceAreImportedWithAWarningNamingTheLine() throws {
        let result = try IPVSAdm.parse("-A -t 192.0.2.10:443 -s wlc -p 300\n-a -t 192.0.2.10:443 -r 10.1.0.1 -i\n", file: "rules")
        #expect(result.warnings.map(\.description).first?.hasPrefix("rules:1: scheduler \"wlc\" becomes Maglev") == true)
        #expect(result.warnings.count == 2 && result.warnings[1].message.hasPrefix("persistence (-p) becomes hash = \"source\""))
        #expect(try importedConfig(result).vips[0].hashMode == .source)
        #expect(result.vips[0].backends[0].weight == 1)  // ipvsadm's default weight
    }

    /// A refused line is reported once: a service whose only real server was refused is not also
    /// reported as having none.
    @Test func aRefusedRealServerIsOneError() throws {
        do {
            _ = try IPVSAdm.parse("-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -g -w 1\n", file: "rules")
            Issue.record("-g accepted")
        } catch {
            #expect(
                error.problems.count == 1 && error.problems[0].description.hasPrefix("rules:2: direct routing (-g"), "\(error)")
        }
    }

    /// --skip-refused: the services Tern can take are imported, each refused one is left out with
    /// its reasons; a line that names no service still fails the import.
    @Test func skipRefusedImportsTheRestAndSaysWhatWasLeftOut() throws {
        let rules = """
            -A -t 192.0.2.10:80 -s mh
            -a -t 192.0.2.10:80 -r 10.1.0.1:80 -g -w 1
            -A -f 7 -s mh
            -A -t 192.0.2.11:80 -s mh
            -a -t 192.0.2.11:80 -r 10.1.0.2:80 -i -w 1

            """
        let result = try IPVSAdm.parse(rules, file: "rules", skipRefused: true)
        #expect(result.vips.map(\.name) == ["192.0.2.11:80/tcp"])
        #expect(result.refused.map(\.service) == ["192.0.2.10:80/tcp", "fwmark 7"])
        #expect(result.refused[0].problem.description.hasPrefix("rules:2: direct routing (-g"))
        #expect(throws: ImportError.self) { try IPVSAdm.parse(rules + "-X\n", file: "rules", skipRefused: true) }

        let conf = """
            virtual_server 192.0.2.10 80 {
                lvs_method DR
                protocol TCP
                real_server 10.1.0.1 80 {
                }
            }
            virtual_server 192.0.2.11 80 {
                lvs_method TUN
                protocol TCP
                real_server 10.1.0.2 80 {
                }
            }

            """
        let statements = try KeepalivedReader.statements(
            conf.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map { n, line in
                (line.split(whereSeparator: { $0 == " " }).map(String.init), ImportSource(file: "k.conf", line: n + 1))
            }.filter { !$0.0.isEmpty })
        let k = try Keepalived.interpret(statements, skipRefused: true)
        #expect(k.vips.map(\.name) == ["192.0.2.11:80/tcp"])
        #expect(k.refused.count == 1 && k.refused[0].service == "virtual_server 192.0.2.10 80")
        #expect(k.refused[0].problem.description.hasPrefix("k.conf:2: DR is refused"))
        #expect(throws: ImportError.self) { try Keepalived.interpret(statements) }
    }

    @Test func whatTernCannotDoIsRefusedWithTheLineAndWhy() {
        let cases: [(String, String)] = [
            ("-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -g -w 1\n", "rules:2: direct routing (-g"),
            (
                "-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -w 1\n",
                "rules:2: direct routing (-g, ipvsadm's default)"
            ),
            ("-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -m -w 1\n", "rules:2: NAT (-m) is refused"),
            ("-A -f 7 -s mh\n", "rules:1: fwmark services are refused"),
            (
                "-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1 -i --tun-type gre\n",
                "rules:2: tunnel type \"gre\" is refused"
            ),
            ("-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1 -i -w 70000\n", "rules:2: weight \"70000\""),
            ("-a -t 192.0.2.10:80 -r 10.1.0.1 -i\n", "rules:1: real server of 192.0.2.10:80/tcp, which no earlier -A adds"),
            ("-A -t 192.0.2.10:80 -s mh\n", "rules:1: service 192.0.2.10:80/tcp has no real server"),
            ("-A -t 192.0.2.10 -s mh\n", "rules:1: \"192.0.2.10\" is not ADDR:PORT"),
            ("-A -t 192.0.2.10:80 -s mh --bogus\n", "rules:1: unknown option \"--bogus\""),
            ("-E -t 192.0.2.10:80 -s mh\n", "rules:1: \"-E\" is not -A or -a"),
            (
                "-A -u 192.0.2.1:53 -s mh\n-a -u 192.0.2.1:53 -r 10.1.0.1 -i\n-a -u 192.0.2.1:53 -r 10.1.0.2 -i --tun-type gue --tun-port 1\n",
                "rules:3: tunnel differs from the real server on line 2"
            ),
        ]
        for (text, expected) in cases {
            let messages = refusal { () throws(ImportError) in try IPVSAdm.parse(text, file: "rules") }
            #expect(messages.first?.hasPrefix(expected) == true, "\(text): \(messages)")
        }
    }

    /// Found by the fuzzer: control characters in a line reached the TOML comment naming it.
    @Test func controlCharactersInTheSourceStayOutOfTheRenderedTOML() throws {
        let result = try IPVSAdm.parse(
            "-A -t 192.0.2.10:80 -s mh\u{0}\u{1}\r -b x\n-a -t 192.0.2.10:80 -r 10.1.0.1 -i\n", file: "rules")
        #expect(try importedConfig(result).vips.count == 1)
    }

    /// Export then import gives the same VIPs, backends and weights.
    @Test func exportThenImportGivesTheSameServices() throws {
        let c = try importedConfig(try IPVSAdm.parse(dump, file: "rules"))
        let services = c.vips.map { v in
            IPVSAdm.Service(
                address: v.address, port: v.port, protocolName: v.protocolName,
                guePort: v.encapsulation == .gue ? v.guePort : nil,
                persistent: v.hashMode == .source, backends: v.backends.map { ($0.address, $0.weight) })
        }
        let again = try importedConfig(try IPVSAdm.parse(IPVSAdm.save(services), file: "saved"))
        #expect(again.vips == c.vips)
        #expect(IPVSAdm.save(services).hasPrefix("-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -i -w 1\n"))
    }
}

/// An in-memory file system for keepalived's includes.
func files(_ contents: [String: String]) -> (read: (String) -> [UInt8]?, glob: (String) -> [String]) {
    (
        { contents[$0].map { Array($0.utf8) } },
        { pattern in
            if pattern.hasSuffix("*.conf") {
                let prefix = String(pattern.dropLast(6))
                return contents.keys.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".conf") }.sorted()
            }
            return contents[pattern] == nil ? [] : [pattern]
        }
    )
}

@Suite struct KeepalivedImportTests {
    let main = """
        ! Configuration of a two-service IPVS node
        global_defs {
           router_id lb1
        }
        vrrp_instance VI_1 {
            state MASTER
            interface eth0
        }
        virtual_server_group web {
            192.0.2.10-11 80
        }
        virtual_server group web {
            delay_loop 2
            lvs_sched mh
            lvs_method TUN type gue port 6080
            protocol TCP
            quorum 2
            real_server 10.1.0.1 80 {
                weight 2
                HTTP_GET {
                    url {
                        path /healthz
                        status_code 204
                    }
                    connect_timeout 1
                    retry 3
                }
            }
            real_server 10.1.0.2 80 {
                weight 1
                TCP_CHECK {
                    connect_port 8080
                    connect_timeout 1
                    retry 3
                }
            }
            real_server 10.1.0.3 80 {
                MISC_CHECK {
                    misc_path /bin/true
                }
            }
        }
        include conf.d/*.conf

        """
    let dns = """
        virtual_server 2001:db8::53 53 {   # the resolvers
            lb_algo rr
            lb_kind TUN
            protocol UDP
            real_server fd00:1::1 53 {
                DNS_CHECK {
                    type SOA
                    name example.org
                }
            }
        }

        """

    func load(_ main: String, extra: [String: String] = [:]) throws(ImportError) -> ImportResult {
        var all = extra
        all["/etc/keepalived/keepalived.conf"] = main
        let fs = files(all)
        return try Keepalived.load(path: "/etc/keepalived/keepalived.conf", read: fs.read, glob: fs.glob)
    }

    @Test func virtualServersGroupsIncludesAndChecksBecomeTernVIPs() throws {
        let result = try load(main, extra: ["/etc/keepalived/conf.d/dns.conf": dns])
        let c = try importedConfig(result)
        #expect(c.vips.map(\.name) == ["192.0.2.10:80/tcp", "192.0.2.11:80/tcp", "[2001:db8::53]:53/udp"])
        let web = c.vips[0]
        #expect(web.encapsulation == .gue && web.guePort == 6080 && web.minHealthy == 2)
        #expect(web.backends.map(\.weight) == [2, 1, 1])
        let h = try #require(web.backends[0].health)
        #expect(h.check == .http && h.path == "/healthz" && h.expectStatus == 204 && h.port == 80)
        #expect(h.intervalMilliseconds == 2000 && h.timeoutMilliseconds == 1000 && h.fall == 3 && h.rise == 1)
        #expect(web.backends[1].health?.check == .tcp && web.backends[1].health?.port == 8080)
        // MISC_CHECK cannot be imported: unchecked, the backend is imported drained (no new flows).
        #expect(web.backends[2].health == nil && web.backends[2].draining)
        #expect(c.vips[2].backends[0].health?.check == .dns && c.vips[2].encapsulation == .ipip)
        let notes = result.warnings.map(\.description)
        for expected in [
            "/etc/keepalived/keepalived.conf:2: global_defs is not imported",
            "/etc/keepalived/keepalived.conf:5: vrrp_instance is not imported",
            "/etc/keepalived/keepalived.conf:38: MISC_CHECK is not imported",
            "/etc/keepalived/conf.d/dns.conf:2: scheduler \"rr\" becomes Maglev",
            "/etc/keepalived/conf.d/dns.conf:7: DNS_CHECK type is not imported",
        ] {
            #expect(notes.contains { $0.hasPrefix(expected) }, "\(expected) in \(notes)")
        }
    }

    @Test func whatTernCannotDoAndWhatKeepalivedRefusesAreRefusedWithTheLine() {
        let vs =
            "virtual_server 192.0.2.10 80 {\n protocol TCP\n lvs_sched mh\n METHOD\n real_server 10.1.0.1 80 {\n weight 1\n }\n}\n"
        let cases: [(String, String)] = [
            (vs.replacingOccurrences(of: "METHOD", with: "lvs_method NAT"), ":4: NAT is refused"),
            (vs.replacingOccurrences(of: "METHOD", with: "lb_kind DR"), ":4: DR is refused"),
            (vs.replacingOccurrences(of: "METHOD", with: ""), ":1: no lvs_method: keepalived's default is NAT"),
            (vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN type gre"), ":4: tunnel type gre is refused"),
            (vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN type gue"), ":4: type gue needs port N"),
            (
                vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN\n wieght 1"),
                ":5: unknown keyword \"wieght\" in virtual_server"
            ),
            (
                vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN").replacingOccurrences(
                    of: "weight 1", with: "weight 70000"), ":6: weight"
            ),
            (
                vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN").replacingOccurrences(
                    of: "protocol TCP", with: "protocol SCTP"), ":2: protocol SCTP is refused"
            ),
            ("virtual_server fwmark 7 {\n lvs_method TUN\n}\n", ":1: fwmark services are refused"),
            ("virtual_server 192.0.2.300 80 {\n}\n", ":1: virtual_server takes ADDR PORT"),
            (
                String(vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN").dropLast(2)),
                ":1: the block of \"virtual_server\" is never closed"
            ),
            (
                vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN").replacingOccurrences(
                    of: "weight 1", with: "weight 1\n retry x"), ":7: retry takes 0-100"
            ),
            (
                vs.replacingOccurrences(of: "METHOD", with: "lvs_method TUN\n connect_timeout -1"),
                ":5: connect_timeout takes seconds"
            ),
            ("}\n", ":1: } closes no block"),
            ("vrrp_bogus {\n}\n", ":1: unknown keyword \"vrrp_bogus\""),
            ("include missing/*.conf\n", ":1: include missing/*.conf: no such file"),
            ("virtual_server 192.0.2.10 80 {\n lvs_method TUN\n}\n", ":1: no real_server"),
        ]
        for (text, expected) in cases {
            let messages = refusal { () throws(ImportError) in try load(text) }
            #expect(messages.contains { $0.hasPrefix("/etc/keepalived/keepalived.conf" + expected) }, "\(text): \(messages)")
        }
    }

    @Test func includesThatLoopAreStoppedAndHostileInputIsBounded() {
        let loop = refusal { () throws(ImportError) in try load("include keepalived.conf\n") }
        #expect(loop.first?.contains("includes nested deeper than 8") == true)
        let deep = String(repeating: "a {\n", count: 40) + String(repeating: "}\n", count: 40)
        #expect(refusal { () throws(ImportError) in try load(deep) }.first?.contains("blocks nested deeper than") == true)
        #expect(
            refusal { () throws(ImportError) in try load("virtual_server \"192.0.2.1 80 {\n") }.first?.contains(
                "quoted word is not closed") == true)
    }

    @Test func anIncludeGlobThatMatchesItsOwnFilesIsStoppedOnceWithOneProblem() {
        // Six files that each include all six: 6^8 reads (and as many problems) within the depth limit.
        var contents: [String: String] = [:]
        for i in 0..<6 { contents["conf.d/\(i).conf"] = "include *.conf\n" }
        contents["keepalived.conf"] = "include conf.d/*.conf\n"
        var fs = files(contents)
        var messages = refusal { () throws(ImportError) in
            try Keepalived.load(path: "keepalived.conf", read: fs.read, glob: fs.glob)
        }
        #expect(messages == ["conf.d/0.conf:1: includes nested deeper than 8"], "\(messages.prefix(3))")
        // Wide instead of deep: 2,000 files by one glob.
        contents = ["keepalived.conf": "include conf.d/*.conf\n"]
        for i in 0..<2000 { contents["conf.d/\(i).conf"] = "! empty\n" }
        fs = files(contents)
        messages = refusal { () throws(ImportError) in try Keepalived.load(path: "keepalived.conf", read: fs.read, glob: fs.glob)
        }
        #expect(
            messages == [
                "keepalived.conf:1: more than 1000 files read in all (does an include match the file that includes it?)"
            ],
            "\(messages.prefix(3))")
    }

    /// Follow mode: `[import] keepalived` in Tern's config adds those VIPs to its own; a broken
    /// file is a config error naming the file and line.
    @Test func aTernConfigImportsAKeepalivedFileBesideItsOwnVIPs() throws {
        let directory = "/tmp/tern-import-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        mkdir(directory, 0o700)
        defer {
            unlink(directory + "/keepalived.conf")
            rmdir(directory)
        }
        func write(_ text: String) {
            let f = fopen(directory + "/keepalived.conf", "w")!
            fputs(text, f)
            fclose(f)
        }
        write(dns)
        let own =
            template
            + "[import]\nkeepalived = \"keepalived.conf\"\n[[vip]]\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n"
            + "[[vip.backend]]\naddress = \"10.1.0.1\"\n"
        let c = try ConfigLoader.parse(own, file: directory + "/tern.toml")
        #expect(c.vips.map(\.name) == ["192.0.2.10:80/tcp", "[2001:db8::53]:53/udp"])
        #expect(c.importWarnings.contains { $0.hasPrefix(directory + "/keepalived.conf:2: scheduler \"rr\"") })
        write(dns.replacingOccurrences(of: "protocol UDP", with: "protocol UDP\n    lb_kind NAT"))
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(own, file: directory + "/tern.toml") }
        do {
            _ = try ConfigLoader.parse(own, file: directory + "/tern.toml")
        } catch {
            #expect(error.description.contains("import.keepalived: cannot import keepalived.conf:"))
            #expect(error.description.contains(directory + "/keepalived.conf:5: NAT is refused"))
        }
        // An imported VIP that clashes with Tern's own is named by its source.
        write(
            dns.replacingOccurrences(of: "2001:db8::53 53", with: "192.0.2.10 80").replacingOccurrences(
                of: "protocol UDP", with: "protocol TCP"
            ).replacingOccurrences(of: "fd00:1::1", with: "10.1.0.9"))
        do {
            _ = try ConfigLoader.parse(own, file: directory + "/tern.toml")
            Issue.record("a duplicate VIP was accepted")
        } catch {
            #expect(error.description.contains(directory + "/keepalived.conf:1 (virtual_server 192.0.2.10 80): duplicate VIP"))
        }
    }
}

/// An include can name any file root can read; what it says is quoted only for files under the
/// directory the import started from.
@Suite struct OutsideFileTests {
    @Test func theContentOfAnIncludedFileOutsideTheImportsDirectoryIsNeverQuoted() throws {
        let top = "/tmp/tern-outside-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        mkdir(top, 0o700)
        mkdir(top + "/keepalived", 0o700)
        func write(_ path: String, _ text: String) {
            let f = fopen(top + path, "w")!
            fputs(text, f)
            fclose(f)
        }
        write("/secret", "root:$6$hash:19000:0:99999:7:::\n")
        write("/keepalived/inside.conf", "bogus_keyword 1\n")
        write("/keepalived/keepalived.conf", "include ../secret\ninclude inside.conf\n")
        defer {
            for f in ["/secret", "/keepalived/inside.conf", "/keepalived/keepalived.conf"] { unlink(top + f) }
            rmdir(top + "/keepalived")
            rmdir(top)
        }
        let messages = refusal { () throws(ImportError) in try Keepalived.load(path: top + "/keepalived/keepalived.conf") }
        #expect(messages.count == 2, "\(messages)")
        #expect(!messages.joined().contains("root") && !messages.joined().contains("hash"), "\(messages)")
        #expect(
            messages.first?.hasPrefix("\(top)/keepalived/../secret:1: not understood (the file is outside the directory") == true)
        #expect(messages.last?.contains("unknown keyword \"bogus_keyword\"") == true, "\(messages)")
    }
}

/// A FIFO named as a config file or an include would block `open` forever: refused at once.
@Suite struct NonRegularFileTests {
    func fifo() -> String {
        let dir = "/tmp/tern-fifo-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        mkdir(dir, 0o700)
        let path = dir + "/pipe.conf"
        mkfifo(path, 0o600)
        return path
    }

    @Test func aFIFOConfigIsRefusedWithoutWaiting() {
        let path = fifo()
        defer { unlink(path) }
        do {
            _ = try ConfigLoader.load(path: path)
            Issue.record("a FIFO was read as a config")
        } catch {
            #expect(error.description == "\(path): not a regular file (a FIFO, device or socket is not read)")
        }
        #expect(RegularFile.read("/dev/zero", limit: 10) == .failure(.notRegular))
        #expect((try? RegularFile.read("/proc/self/stat", limit: 1 << 20).get())?.isEmpty == false)
    }

    @Test func anIncludeOfAFIFOIsRefusedWithoutWaiting() throws {
        let path = fifo()
        defer { unlink(path) }
        let main = path.replacingOccurrences(of: "pipe.conf", with: "keepalived.conf")
        let f = fopen(main, "w")!
        fputs("include pipe.conf\n", f)
        fclose(f)
        defer { unlink(main) }
        let messages = refusal { () throws(ImportError) in try Keepalived.load(path: main) }
        #expect(messages.first?.hasPrefix("\(main):1: cannot read") == true, "\(messages)")
    }
}
