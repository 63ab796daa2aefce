# SCTP over raw sockets, for tests on kernels without SCTP (CONFIG_IP_SCTP off): the kernel still
# routes, NATs (netfilter's SCTP conntrack) and delivers protocol 132 to a raw socket. The CRC32c
# (RFC 9260 Appendix A) is computed here bit by bit, apart from the code under test.
#   server PORT          answers each INIT that reaches PORT with an INIT ACK; prints one JSON line
#                        per INIT: {"src","sport","dst","dport","crc_ok"}, after "ready"
#   client HOST PORT SPORT  sends an INIT to HOST:PORT from SPORT, waits 3 s for the INIT ACK and
#                        prints {"ok","src","sport","dport","crc_ok"} (ok false: nothing came)
import json, select, socket, struct, sys, time

def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
    return c ^ 0xffffffff

assert crc32c(b"123456789") == 0xe3069283  # RFC 3720 B.4 check value

def packet(sport, dport, vtag, chunk_type, init_tag):
    # one INIT or INIT ACK chunk: type, flags, length 20, then the initiate tag, a_rwnd, streams, TSN
    chunk = struct.pack("!BBHIIHHI", chunk_type, 0, 20, init_tag, 106496, 10, 10, 1)
    body = struct.pack("!HHII", sport, dport, vtag, 0) + chunk
    return body[:8] + struct.pack("<I", crc32c(body)) + body[12:]

def parse(data):
    hl = (data[0] & 15) * 4
    src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
    s = data[hl:]
    sport, dport, vtag = struct.unpack("!HHI", s[:8])
    stored = struct.unpack("<I", s[8:12])[0]
    crc_ok = crc32c(s[:8] + b"\0\0\0\0" + s[12:]) == stored
    kind = s[12] if len(s) > 12 else -1
    tag = struct.unpack("!I", s[16:20])[0] if len(s) >= 20 else 0
    return {"src": src, "dst": dst, "sport": sport, "dport": dport, "vtag": vtag, "crc_ok": crc_ok, "chunk": kind, "init_tag": tag}

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
if sys.argv[1] == "server":
    port = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        data, _ = sock.recvfrom(65535)
        p = parse(data)
        if p["dport"] != port or p["chunk"] != 1:
            continue
        print(json.dumps({k: p[k] for k in ("src", "sport", "dst", "dport", "crc_ok")}), flush=True)
        sock.sendto(packet(port, p["sport"], p["init_tag"], 2, 0x55667788), (p["src"], 0))
else:
    host, port, sport = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sock.sendto(packet(sport, port, 0, 1, 0x11223344), (host, 0))
    end = time.time() + 3
    out = {"ok": False}
    while time.time() < end:
        r, _, _ = select.select([sock], [], [], max(0, end - time.time()))
        if not r:
            break
        p = parse(sock.recvfrom(65535)[0])
        if p["dport"] == sport and p["chunk"] == 2 and p["vtag"] == 0x11223344:
            out = {"ok": True, "src": p["src"], "sport": p["sport"], "dport": p["dport"], "crc_ok": p["crc_ok"]}
            break
    print(json.dumps(out), flush=True)
