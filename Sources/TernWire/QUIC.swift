// The server id a QUIC connection ID carries, in the encoding Katran's backends use (its "CID
// versions"): the destination connection ID's top two bits say how the id follows. Version 1: 16
// bits, the next 16 bits after those two; version 2: 24 bits, bytes 1-3; version 3: 32 bits,
// bytes 1-4; version 0: no id. Only connection IDs a server chose carry one: short-header packets
// and the Handshake and Retry long headers (an Initial's or 0-RTT's destination ID is the
// client's pick). An ID shorter than 8 bytes carries none. Server id 0 means none.

public enum QUIC {
    /// What the first byte of a UDP payload says, and where the destination connection ID starts.
    public static let longHeader: UInt8 = 0x80
    /// Long-header packet type (bits 4-5): 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry.
    public static let packetTypeMask: UInt8 = 0x30
    public static let handshakeType: UInt8 = 0x20
    /// Shortest destination connection ID read for a server id.
    public static let minConnectionIDLength = 8

    /// Why a packet's server id was or was not read (for counters).
    public enum Reading: Equatable, Sendable {
        case serverID(UInt32)
        /// Initial or 0-RTT long header, a connection ID too short or of version 0, a payload
        /// too short, or server id 0.
        case none
    }

    /// The server id in the UDP payload at `p` (`length` bytes).
    @inlinable
    public static func serverID(_ p: UnsafeRawPointer, length: Int) -> Reading {
        guard length >= 1 else { return .none }
        let flags = p.u8(0)
        var cid = 1
        if flags & longHeader != 0 {
            // flags, version (4 bytes), destination ID length, destination ID.
            guard flags & packetTypeMask >= handshakeType, length >= 6 else { return .none }
            guard Int(p.u8(5)) >= minConnectionIDLength else { return .none }
            cid = 6
        }
        guard length - cid >= minConnectionIDLength else { return .none }
        let b0 = UInt32(p.u8(cid))
        let b1 = UInt32(p.u8(cid + 1))
        let b2 = UInt32(p.u8(cid + 2))
        let b3 = UInt32(p.u8(cid + 3))
        let b4 = UInt32(p.u8(cid + 4))
        let id: UInt32
        switch b0 >> 6 {
        case 1: id = (b0 & 0x3F) << 10 | b1 << 2 | b2 >> 6
        case 2: id = b1 << 16 | b2 << 8 | b3
        case 3: id = b1 << 24 | b2 << 16 | b3 << 8 | b4
        default: return .none
        }
        return id == 0 ? .none : .serverID(id)
    }
}
