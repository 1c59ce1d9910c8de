// Follow mode (`[import]` in Tern's config): another tool's VIPs read on every load, through the
// same TOML `ternctl import` prints, so both paths give the same VIPs.

extension ConfigLoader {
    public enum ImportKind: Sendable { case keepalived, ipvsadm }

    /// Another tool's VIPs as Tern reads its own: imported, rendered as `[[vip]]` TOML (what
    /// `ternctl import` prints), then read back, each named by its source. Messages quote only
    /// files under `configDirectory` (the config's own): a config naming `/etc/shadow` as its
    /// keepalived file must not print it (`ternctl import` on the file itself quotes it).
    static func importedVIPs(_ kind: ImportKind, path: String, configDirectory: String) -> Result<
        ([ConfigTable], [String]), ImportError
    > {
        var result: ImportResult
        do {
            switch kind {
            case .keepalived: result = try Keepalived.load(path: path, quotedUnder: configDirectory)
            case .ipvsadm:
                guard let bytes = KeepalivedReader.readFile(path), bytes.count <= KeepalivedReader.maxFileBytes,
                    let text = String(validating: bytes, as: UTF8.self)
                else {
                    return .failure(
                        ImportError([ImportMessage(ImportSource(file: path, line: 0), "cannot read it as UTF-8 text")]))
                }
                let tree = KeepalivedReader.resolved(configDirectory.isEmpty ? "." : configDirectory) + "/"
                result = try IPVSAdm.parse(text, file: path, quotable: KeepalivedReader.resolved(path).hasPrefix(tree))
            }
        } catch {
            return .failure(error)
        }
        let text = ImportRenderer.toml(result.vips, warnings: &result.warnings)
        guard let document = try? TOMLParser.parse(Array(text.utf8)) else {
            return .failure(
                ImportError([ImportMessage(ImportSource(file: path, line: 0), "rendered TOML does not parse (a bug)")]))
        }
        var reader = DocumentReader()
        var vips = reader.read(document).tables(ConfigSchema.vip)
        for i in vips.indices where i < result.vips.count {
            vips[i].rename("\(result.vips[i].source) (\(result.vips[i].origin))")
        }
        return .success((vips, result.warnings.map(\.description)))
    }
}
