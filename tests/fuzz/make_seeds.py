#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/). Run it again after
changing the input format of a target; fuzzing runs add their own finds to a separate directory
(see docs/security.md), so this script owns every file here."""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def client_frame(op, payload, fin=True, key=b"\x37\xfa\x21\x3d", rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return head + key + masked


def unmasked_frame(op, payload):
    payload = payload.encode() if isinstance(payload, str) else payload
    return bytes([0x80 | op, len(payload)]) + payload


def write(target, seeds):
    # Generated seeds are rewritten; inputs a fuzzer found (regression-*) are kept.
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if not old.startswith("regression-"):
            os.remove(os.path.join(d, old))
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


REQUESTS = {
    "auth": {"type": "auth", "token": "t0k", "cursors": {"general": 3, "dm:alice:bob": 0}},
    "auth_plain": {"type": "auth", "token": "t0k"},
    "create": {"type": "create", "ref": "c1", "room": "ops", "visibility": "private"},
    "join": {"type": "join", "room": "general"},
    "invite": {"type": "invite", "room": "ops", "user": "bob"},
    "leave": {"type": "leave", "room": "general"},
    "dm": {"type": "dm", "user": "bob"},
    "send": {"type": "send", "ref": "s1", "room": "general", "client_msg_id": "a-1", "body": "hi \u00e9\u4e16 \U0001F600"},
    "history": {"type": "history", "room": "general", "before": 42, "limit": 2},
    "history_newest": {"type": "history", "room": "general"},
    "typing": {"type": "typing", "room": "general"},
    "read": {"type": "read", "room": "general", "seq": 18446744073709551615},
    "watch": {"type": "watch", "users": ["bob", "alice", "bob"]},
    "ping": {"type": "ping", "ref": ""},
}


def protocol_seeds():
    seeds = {}
    for name, req in REQUESTS.items():
        seeds[name] = b"\x00" + json.dumps(req, ensure_ascii=False).encode()
        seeds[name + "_small_limits"] = b"\x01" + json.dumps(req, ensure_ascii=False).encode()
    extra = [
        '{"type":"send","room":"r","client_msg_id":"x","body":"\\u0000\\ud800"}',
        '{"type":"send","room":"r","client_msg_id":"x","body":"a\\u0000b\\n\\"\\\\"}',
        '{"type":"ping","ref":"\\udc00"}',
        '{"type":"ping","type":"join"}',
        '{"type":"history","room":"general","before":1.0}',
        '{"type":"history","room":"general","limit":1e2}',
        '{"type":"auth","token":"t","cursors":{"a":1,"a":2}}',
        '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
        '{"type":"dm","user":null}',
        '{"type":"join","room":"dm:bob:alice"}',
    ]
    for i, t in enumerate(extra):
        seeds["edge_%02d" % i] = b"\x00" + t.encode()
    return seeds


def ws_frame_seeds():
    seeds = {}
    ping = client_frame(0x9, "p")
    text = client_frame(0x1, '{"type":"ping"}')
    frag = client_frame(0x1, "{\"type\":\"pi\xc3".encode("latin-1"), fin=False) + ping + \
        client_frame(0x0, "\xa9ng\"}".encode("latin-1"))
    close = client_frame(0x8, struct.pack(">H", 1000) + b"bye")
    raw = {
        "text": text,
        "fragmented_with_ping": frag,
        "close": text + close + text,
        "unmasked": unmasked_frame(0x1, "x"),
        "rsv1": client_frame(0x1, "x", rsv=0x40),
        "reserved_opcode": client_frame(0x3, "x"),
        "long_ping": client_frame(0x9, "p" * 126),
        "fragmented_ping": client_frame(0x9, "p", fin=False),
        "continuation_alone": client_frame(0x0, "x"),
        "text_in_fragmented": client_frame(0x1, "a", fin=False) + client_frame(0x1, "b"),
        "bad_utf8": client_frame(0x1, b"\xc3\x28"),
        "close_1_byte": client_frame(0x8, b"\x03"),
        "close_bad_code": client_frame(0x8, struct.pack(">H", 1005)),
        "binary": client_frame(0x2, b"\x00\x01"),
        "len16": client_frame(0x1, "y" * 300),
        "len64_msb": bytes([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]) + b"\0\0\0\0",
        "big_declared": bytes([0x81, 0xFF]) + struct.pack(">Q", 1 << 20) + b"\1\2\3\4",
    }
    for name, data in raw.items():
        seeds["raw_" + name] = b"\x00\x07" + data
        seeds["raw_small_" + name] = b"\x45\x07" + data
    gen = bytes([3, 0x61, 0x62, 0x63, 5, 0xF1, 0x23, 0x45, 0x41, 0xF0, 0x00, 0xE9, 0x42, 200]) + b"z" * 200
    seeds["gen_messages"] = b"\x10\x05" + gen
    seeds["gen_small_limit"] = b"\x50\x09" + gen
    return seeds


def http(method, path, body=None, headers=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: fuzz"]
    lines += list(headers)
    if body is not None:
        lines.append("Content-Length: %d" % len(body.encode()))
        lines.append("Content-Type: application/json")
    return "\r\n".join(lines) + "\r\n\r\n" + (body or "")


def http_seeds():
    auth = ("Authorization: Bearer $TOKEN",)
    reqs = {
        "register": http("POST", "/api/v1/register", '{"username":"new_user","password":"longenough"}'),
        "register_bad": http("POST", "/api/v1/register", '{"username":"Bad Name","password":"x"}'),
        "login": http("POST", "/api/v1/login", '{"username":"fuzzer","password":"fuzz-password"}'),
        "login_wrong": http("POST", "/api/v1/login", '{"username":"fuzzer","password":"nope-nope"}'),
        "login_not_json": http("POST", "/api/v1/login", "username=fuzzer"),
        "rooms": http("GET", "/api/v1/rooms", headers=auth),
        "rooms_expired": http("GET", "/api/v1/rooms", headers=("Authorization: bearer $EXPIRED",)),
        "messages": http("GET", "/api/v1/rooms/general/messages?before=20&limit=5", headers=auth),
        "messages_newest": http("GET", "/api/v1/rooms/general/messages", headers=auth),
        "messages_dm": http("GET", "/api/v1/rooms/dm%3Afuzzee%3Afuzzer/messages?limit=200&x=1&limit=3", headers=auth),
        "messages_forbidden": http("GET", "/api/v1/rooms/secret/messages", headers=auth),
        "messages_bad_query": http("GET", "/api/v1/rooms/general/messages?before=0&limit=201", headers=auth),
        "messages_bad_escape": http("GET", "/api/v1/rooms/gen%zzeral/messages", headers=auth),
        "logout": http("POST", "/api/v1/logout", "", headers=("Authorization: Bearer $OTHER",)),
        "wrong_method": http("DELETE", "/api/v1/rooms", headers=auth),
        "static": http("GET", "/") + http("HEAD", "/assets/app.js") + http("GET", "/%2e%2e/etc/passwd"),
        "health": http("GET", "/healthz") + http("GET", "/readyz") + http("GET", "/metrics"),
        "upgrade": http("GET", "/ws", headers=("Upgrade: websocket", "Connection: Upgrade",
                                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                                "Sec-WebSocket-Version: 13")),
        "upgrade_bad_version": http("GET", "/ws", headers=("Upgrade: websocket", "Connection: Upgrade",
                                                            "Sec-WebSocket-Key: x", "Sec-WebSocket-Version: 8")),
        "upgrade_origin": http("GET", "/ws", headers=("Upgrade: websocket", "Connection: Upgrade",
                                                       "Origin: http://evil.example",
                                                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                                       "Sec-WebSocket-Version: 13")),
        "no_upgrade": http("GET", "/ws"),
        "too_large": "POST /api/v1/login HTTP/1.1\r\nHost: f\r\nContent-Length: 70000\r\n\r\n" + "x" * 100,
        "chunked": "POST /api/v1/login HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\n{\"use\r\n0\r\n\r\n",
        "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        "http10": "GET /healthz HTTP/1.0\r\n\r\n",
        # Account deletion, refused (a successful one would kill the fixture's token for the
        # inputs replayed after it).
        "delete_me_wrong_password": http("DELETE", "/api/v1/users/me", '{"password":"not-it-at-all"}',
                                         headers=auth),
        "delete_me_no_body": http("DELETE", "/api/v1/users/me", "", headers=auth),
        "admin_delete_forbidden": http("DELETE", "/api/v1/admin/users/fuzzee", headers=auth)
                                  + http("DELETE", "/api/v1/admin/users/Bad%20Name", headers=auth),
        "forwarded": http("POST", "/api/v1/login", '{"username":"fuzzer","password":"nope-nope"}',
                          headers=("X-Forwarded-For: 10.0.0.1, ::1, not-an-address",)),
    }
    seeds = {}
    for i, (name, data) in enumerate(reqs.items()):
        seeds[name] = bytes([i]) + data.encode("latin-1")
    seeds["pipelined"] = b"\x07" + (reqs["rooms"] + reqs["messages"] + reqs["login_wrong"] + reqs["health"]).encode()
    up = reqs["upgrade"].encode() + client_frame(0x1, "{\"type\":\"ping\"}")
    seeds["upgrade_then_frames"] = b"\x09" + up
    return seeds


def ws_session_seeds():
    def rec(payload, op=0x1, flags=0):
        p = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        assert len(p) <= 255, p
        return bytes([op | flags, len(p)]) + p

    reqs = [
        {"type": "join", "ref": "j", "room": "general"},
        {"type": "send", "ref": "s", "room": "general", "client_msg_id": "f-1", "body": "hello"},
        {"type": "send", "room": "general", "client_msg_id": "f-1", "body": "again"},
        {"type": "send", "room": "secret", "client_msg_id": "x", "body": "let me in"},
        {"type": "history", "ref": "h", "room": "general", "before": 10, "limit": 3},
        {"type": "history", "room": "general", "before": 0},
        {"type": "history", "room": "dm:fuzzee:fuzzer"},
        {"type": "typing", "room": "general"},
        {"type": "read", "room": "general", "seq": 5},
        {"type": "watch", "users": ["fuzzee", "nobody"]},
        {"type": "create", "room": "fz-room", "visibility": "public"},
        {"type": "invite", "room": "general", "user": "fuzzee"},
        {"type": "dm", "user": "fuzzee"},
        {"type": "join", "room": "secret"},
        {"type": "leave", "room": "nope"},
        {"type": "auth", "token": "again"},
        {"type": "ping", "ref": "p"},
    ]
    seeds = {}
    for i, r in enumerate(reqs):
        seeds["req_%02d" % i] = b"\x03\x01" + rec(r)
    seeds["all_requests"] = b"\x03\x02" + b"".join(rec(r) for r in reqs)
    resume = rec({"type": "auth", "token": "$TOKEN", "cursors": {"general": 3, "secret": 0, "dm:fuzzee:fuzzer": 0}})
    seeds["resume"] = b"\x02\x03" + resume + rec({"type": "ping"})
    seeds["auth_expired"] = b"\x02\x04" + rec({"type": "auth", "token": "$EXPIRED"})
    seeds["auth_other_then_pipelined"] = b"\x02\x05" + rec({"type": "auth", "token": "$OTHER"}) + \
        b"".join(rec({"type": "ping", "ref": str(i)}) for i in range(5))
    seeds["not_auth_first"] = b"\x02\x06" + rec({"type": "ping"})
    seeds["fragmented"] = b"\x03\x07" + rec(b'{"type":"pi', flags=0x10) + rec(b"x", op=0x9) + rec(b'ng"}', op=0x0)
    seeds["big_frame"] = b"\x03\x08" + rec(b"x" * 250, flags=0x20)
    seeds["binary"] = b"\x03\x09" + rec(b"\x00\x01", op=0x2)
    seeds["close"] = b"\x03\x0a" + rec(struct.pack(">H", 4000) + b"bye", op=0x8) + rec({"type": "ping"})
    seeds["bad_utf8"] = b"\x03\x0b" + rec(b'{"type":"ping","ref":"\xc3\x28"}')
    seeds["raw_garbage"] = b"\x01\x0c" + bytes(range(256))
    seeds["raw_initial"] = b"\x05\x0d" + client_frame(0x1, '{"type":"ping"}') + unmasked_frame(0x1, "x")
    return seeds


def store_seeds():
    seeds = {}
    # op byte: low 3 bits the operation, bits 4-5 the room, bit 6 the user.
    def op(kind, room, user=0):
        return bytes([kind | (room << 4) | (user << 6)])
    big, small, empty, nope = 2, 1, 0, 3
    seeds["resume_big"] = op(0, big) + bytes([2, 0, 1]) + bytes([0x44]) + op(0, big) + bytes([0, 0, 0, 1, 0]) + bytes([1])
    seeds["history_big"] = op(1, big) + bytes([6, 0, 1]) + op(2, big) + bytes([2, 0xF0, 0x01]) + op(2, big) + bytes([7]) + b"\x00" * 7 + b"\x2a" + bytes([2, 50])
    seeds["extremes"] = op(0, big) + bytes([4, 0, 0]) + bytes([5, 0]) + bytes([3]) + struct.pack(">Q", 2**64 - 1) + \
        op(1, big) + bytes([5, 0x08, 1]) + op(2, small) + bytes([4, 0x10, 0])
    seeds["cache"] = op(3, big) + bytes([2, 0xC0, 2, 0, 2]) + op(3, big) + bytes([6, 0, 2, 0x40, 1])
    seeds["read_markers"] = op(4, small, 1) + bytes([0, 0]) + op(4, small, 1) + bytes([2, 0x40]) + op(4, big, 1) + bytes([0, 0]) + op(6, 0, 1) + op(6, 0, 0)
    seeds["appends"] = op(5, small, 1) + bytes([3, 5]) + b"a\x00\xffb\n" + op(5, small, 1) + bytes([3, 2]) + b"zz" + \
        op(5, big, 1) + bytes([1, 1]) + b"x" + op(5, nope) + bytes([1, 1]) + b"y" + op(5, empty) + bytes([9, 3]) + b"abc" + op(0, empty) + bytes([0, 0, 1, 0x09])
    seeds["unknown_room"] = op(0, nope) + bytes([0, 0, 1, 5]) + op(1, nope) + bytes([3, 0, 1]) + op(2, nope) + bytes([3, 0, 1]) + op(7, nope) + op(4, nope) + bytes([0, 0])
    return seeds


if __name__ == "__main__":
    write("protocol_decode", protocol_seeds())
    write("ws_frame", ws_frame_seeds())
    write("http_api", http_seeds())
    write("ws_session", ws_session_seeds())
    write("store", store_seeds())
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print("%-16s %3d files %6d bytes" % (t, len(files), size))
