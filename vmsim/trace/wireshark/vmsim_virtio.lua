-- Wireshark dissector for vmsim's virtqueue captures (vmsim trace export --pcapng).
-- The capture's packets are exported PDUs (link type 252) that name this dissector,
-- "vmsim_virtio". Load it with:  tshark -X lua_script:vmsim_virtio.lua -r trace.pcapng
-- or copy it to Wireshark's personal Lua plugin folder. The PDU layout is described in
-- vmsim/trace/pcapng.py; numbers are little-endian.

local p = Proto("vmsim_virtio", "vmsim virtqueue request")

-- virtio-crypto opcodes: (service << 8) | op (the virtio specification, crypto device)
local opcodes = {
  [0x000] = "CIPHER_ENCRYPT", [0x001] = "CIPHER_DECRYPT",
  [0x002] = "CIPHER_CREATE_SESSION", [0x003] = "CIPHER_DESTROY_SESSION",
  [0x100] = "HASH", [0x102] = "HASH_CREATE_SESSION", [0x103] = "HASH_DESTROY_SESSION",
  [0x200] = "MAC", [0x202] = "MAC_CREATE_SESSION", [0x203] = "MAC_DESTROY_SESSION",
  [0x300] = "AEAD_ENCRYPT", [0x301] = "AEAD_DECRYPT",
  [0x302] = "AEAD_CREATE_SESSION", [0x303] = "AEAD_DESTROY_SESSION",
  [0x400] = "AKCIPHER_ENCRYPT", [0x401] = "AKCIPHER_DECRYPT",
  [0x402] = "AKCIPHER_SIGN", [0x403] = "AKCIPHER_VERIFY",
  [0x404] = "AKCIPHER_CREATE_SESSION", [0x405] = "AKCIPHER_DESTROY_SESSION",
}
local statuses = {
  [0] = "OK", [1] = "ERR", [2] = "BADMSG", [3] = "NOTSUPP", [4] = "INVSESS",
  [5] = "NOSPC", [6] = "KEY_REJECTED", [0xffffffff] = "(request)",
}
local directions = { [0] = "request", [1] = "completion" }

local f = {
  version   = ProtoField.uint8("vmsim_virtio.version", "Version"),
  direction = ProtoField.uint8("vmsim_virtio.direction", "Direction", base.DEC, directions),
  queue     = ProtoField.uint16("vmsim_virtio.queue", "Queue"),
  head      = ProtoField.uint16("vmsim_virtio.head", "Head descriptor"),
  flags     = ProtoField.uint16("vmsim_virtio.flags", "Flags", base.HEX),
  control   = ProtoField.bool("vmsim_virtio.flags.control", "Control queue", 16, nil, 0x1),
  pooled    = ProtoField.bool("vmsim_virtio.flags.pooled", "Ran in a worker", 16, nil, 0x2),
  opcode    = ProtoField.uint32("vmsim_virtio.opcode", "Opcode", base.HEX, opcodes),
  status    = ProtoField.uint32("vmsim_virtio.status", "Status", base.DEC, statuses),
  session   = ProtoField.uint64("vmsim_virtio.session", "Session"),
  length    = ProtoField.uint32("vmsim_virtio.length", "Length"),
  latency   = ProtoField.uint32("vmsim_virtio.latency_us", "Latency (us)"),
  algo      = ProtoField.string("vmsim_virtio.algo", "Algorithm"),
  qname     = ProtoField.string("vmsim_virtio.queue_name", "Queue name"),
  data      = ProtoField.bytes("vmsim_virtio.data", "Buffer bytes (first of each)"),
}
p.fields = { f.version, f.direction, f.queue, f.head, f.flags, f.control, f.pooled,
             f.opcode, f.status, f.session, f.length, f.latency, f.algo, f.qname, f.data }

function p.dissector(buf, pinfo, tree)
  if buf:len() < 34 then return 0 end
  pinfo.cols.protocol = "VIRTIO"
  local t = tree:add(p, buf(), "vmsim virtqueue")
  t:add_le(f.version, buf(0, 1))
  t:add_le(f.direction, buf(1, 1))
  t:add_le(f.queue, buf(2, 2))
  t:add_le(f.head, buf(4, 2))
  local ft = t:add_le(f.flags, buf(6, 2))
  ft:add_le(f.control, buf(6, 2))
  ft:add_le(f.pooled, buf(6, 2))
  t:add_le(f.opcode, buf(8, 4))
  t:add_le(f.status, buf(12, 4))
  t:add_le(f.session, buf(16, 8))
  t:add_le(f.length, buf(24, 4))
  t:add_le(f.latency, buf(28, 4))
  local off = 32
  local n = buf(off, 1):uint()
  t:add(f.algo, buf(off + 1, n))
  off = off + 1 + n
  local m = buf(off, 1):uint()
  t:add(f.qname, buf(off + 1, m))
  local qname = buf(off + 1, m):string()
  off = off + 1 + m
  if off < buf:len() then t:add(f.data, buf(off)) end
  local direction = buf(1, 1):uint()
  local opcode = opcodes[buf(8, 4):le_uint()] or string.format("0x%x", buf(8, 4):le_uint())
  if direction == 0 then
    pinfo.cols.info = string.format("%s head %d %s", qname, buf(4, 2):le_uint(), opcode)
  else
    local status = statuses[buf(12, 4):le_uint()] or tostring(buf(12, 4):le_uint())
    pinfo.cols.info = string.format("%s head %d %s -> %s (%d us)", qname, buf(4, 2):le_uint(),
                                    opcode, status, buf(28, 4):le_uint())
  end
  return buf:len()
end
