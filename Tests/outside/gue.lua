-- tshark dissector for GUE variant 0 (draft-ietf-intarea-gue) on UDP port 6080, as Linux
-- `ip fou add port 6080 gue` decapsulates it. Wireshark 4.0 has no GUE dissector of its own.
-- Use: tshark -X lua_script:Tests/outside/gue.lua -r FILE
local gue = Proto("gue", "Generic UDP Encapsulation")
local f_version = ProtoField.uint8("gue.version", "Version", base.DEC, nil, 0xC0)
local f_control = ProtoField.uint8("gue.control", "Control", base.DEC, nil, 0x20)
local f_hlen = ProtoField.uint8("gue.hlen", "Extension words", base.DEC, nil, 0x1F)
local f_proto = ProtoField.uint8("gue.proto", "Protocol", base.DEC)
local f_flags = ProtoField.uint16("gue.flags", "Flags", base.HEX)
gue.fields = { f_version, f_control, f_hlen, f_proto, f_flags }

function gue.dissector(buffer, pinfo, tree)
    if buffer:len() < 4 then return 0 end
    local subtree = tree:add(gue, buffer(0, 4))
    subtree:add(f_version, buffer(0, 1))
    subtree:add(f_control, buffer(0, 1))
    subtree:add(f_hlen, buffer(0, 1))
    subtree:add(f_proto, buffer(1, 1))
    subtree:add(f_flags, buffer(2, 2))
    pinfo.cols.protocol = "GUE"
    local first = buffer(0, 1):uint()
    if bit.band(first, 0xE0) ~= 0 then return 4 end -- not variant 0 data
    local offset = 4 + bit.band(first, 0x1F) * 4
    if buffer:len() <= offset then return offset end
    DissectorTable.get("ip.proto"):try(buffer(1, 1):uint(), buffer(offset):tvb(), pinfo, tree)
    return buffer:len()
end

DissectorTable.get("udp.port"):add(6080, gue)
