#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/, from real frames (the shared
codec vectors in proto/testdata/frame_vectors.json), real requests and hand-made edge cases. Deterministic:
run it again and git shows no change. Each file's name says what it is.

    python3 fuzz/seeds.py
"""

import base64
import hashlib
import hmac
import json
import re
import shutil
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"
VECTORS = json.loads((ROOT / "proto/testdata/frame_vectors.json").read_text())


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def frame(op, seq, body=b"", ver=1):
    return struct.pack(">ihhii", 16 + len(body), 16, ver, op, seq) + body


# --- frame_decode: byte 0 = number of split bytes, then the split bytes, then the wire -------------------
def frame_decode():
    for v in VECTORS["frames"]:
        write("frame_decode", f"message_{v['name']}", b"\0" + bytes.fromhex(v["hex"]))
    for v in VECTORS["malformed"]:
        if v["mode"] == "frame":
            write("frame_decode", f"malformed_{v['name']}", b"\0" + bytes.fromhex(v["hex"]))
    stream = b"".join(bytes.fromhex(v["hex"]) for v in VECTORS["frames"])
    write("frame_decode", "stream_all_frames_whole", b"\0" + stream)
    write("frame_decode", "stream_all_frames_bytewise", b"\1\1" + stream)
    write("frame_decode", "stream_all_frames_split_3_16_7", bytes([3, 3, 16, 7]) + stream)
    write("frame_decode", "stream_split_inside_header", bytes([2, 5, 20]) + frame(4, 1, b"hello") * 3)
    write("frame_decode", "stream_partial_tail", b"\0" + frame(2, 1) + frame(4, 2, b"abc")[:10])
    write("frame_decode", "stream_then_bad_header", b"\0" + frame(2, 1) + bytes.fromhex("00000010000c00010000000200000001"))
    write("frame_decode", "stream_max_body", bytes([1, 200]) + frame(1000, 1, b"x" * 4096))
    write("frame_decode", "stream_over_max_body", b"\0" + frame(1000, 1, b"x" * 4097))


# --- raw_batch: byte 0 = bound (even 16 MiB, odd 4096), then the body of an op 9 frame -------------------
def raw_batch():
    for v in VECTORS["batches"]:
        body = bytes.fromhex(v["hex"])[16:]
        write("raw_batch", f"batch_{v['name']}", b"\0" + body)
        write("raw_batch", f"batch_{v['name']}_small_bound", b"\1" + body)
    for v in VECTORS["malformed"]:
        if v["mode"] == "batch":
            write("raw_batch", f"malformed_{v['name']}", b"\0" + bytes.fromhex(v["hex"]))
    frames = [bytes.fromhex(v["hex"]) for v in VECTORS["frames"]]
    write("raw_batch", "all_frames", b"\0" + b"".join(frames))
    write("raw_batch", "inner_over_small_bound", b"\1" + frame(1000, 0, b"y" * 4097))
    write("raw_batch", "nested_batch", b"\0" + frame(9, 0, frame(1000, 0, b"inner")))
    write("raw_batch", "large_inner_126", b"\0" + frame(1000, 0, b"z" * 200))


# --- ws_frames: byte 0 = number of split bytes, then the split bytes, then client frames ----------------
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def ws(opcode, payload=b"", fin=True, masked=True, rsv=0, length=None):
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def close(code, reason=b""):
    return ws(8, struct.pack(">H", code) + reason)


def ws_frames():
    def w(name, wire, splits=b""):
        write("ws_frames", name, bytes([len(splits)]) + splits + wire)

    for v in VECTORS["frames"]:
        w(f"binary_{v['name']}", ws(2, bytes.fromhex(v["hex"])))
    w("session_auth_heartbeat_close", ws(2, frame(7, 1, b'{"mid":1,"token":"t"}')) + ws(2, frame(2, 2)) + close(1000))
    w("session_bytewise", ws(2, frame(2, 1)) + ws(9, b"ping") + close(1001, b"bye"), b"\1")
    w("session_split_5_3", ws(2, frame(4, 1, b"x" * 300)) + ws(10, b"") + close(1000), b"\5\3")
    w("text_utf8", ws(1, "héllo wörld ✓".encode()))
    w("text_invalid_utf8", ws(1, b"\xc3\x28"))
    w("text_fragmented_utf8_across_frames", ws(1, "é".encode()[:1], fin=False) + ws(0, "é".encode()[1:]))
    w("ping_125", ws(9, b"p" * 125))
    w("ping_126", ws(9, b"p" * 126))
    w("ping_fragmented", ws(9, b"p", fin=False))
    w("pong_unsolicited", ws(10, b"pong"))
    w("close_empty", ws(8))
    w("close_1_byte", ws(8, b"\3"))
    for code in (1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999):
        w(f"close_{code}", close(code, b"reason"))
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        w(f"close_invalid_{code}", close(code))
    w("close_invalid_utf8_reason", close(1000, b"\xff\xfe"))
    w("fragmented_binary_3", ws(2, b"ab", fin=False) + ws(0, b"cd", fin=False) + ws(0, b"e"))
    w("fragmented_with_ping_between", ws(2, frame(4, 1)[:5], fin=False) + ws(9, b"") + ws(0, frame(4, 1)[5:]))
    w("continuation_without_start", ws(0, b"x"))
    w("new_message_inside_fragmented", ws(2, b"a", fin=False) + ws(2, b"b"))
    w("unmasked_binary", ws(2, frame(2, 1), masked=False))
    w("rsv1_set", ws(2, frame(2, 1), rsv=0x40))
    w("reserved_opcode_3", ws(3, b"x"))
    w("reserved_opcode_b", ws(11, b"x"))
    w("length_126_form", ws(2, frame(1000, 1, b"m" * 200)))
    w("length_127_form_small", bytes([0x82, 0xFF]) + struct.pack(">Q", 10) + MASK + bytes(10))
    w("length_127_top_bit", bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 63) + MASK)
    w("oversize_header_only", bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 40) + MASK)
    w("oversize_4113", ws(2, b"o" * 4113))
    w("oversize_by_fragments", ws(2, b"a" * 4000, fin=False) + ws(0, b"b" * 200))


# --- auth_body: the body of an op 7 frame (or a bare token) ---------------------------------------------
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, secret=None, alg="HS256", kid=None, signature=None):
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
    if signature is None:
        signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)


def kid(secret):
    return "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def auth_body():
    secret, previous = "fuzz-secret", "fuzz-previous-secret"  # as in fuzz_targets/auth_body.rs
    far = 4102444800  # 2100-01-01: the seed tokens do not expire
    ok = jwt({"sub": "7", "exp": far, "iat": 0}, secret, kid=kid(secret))
    tokens = {
        "hs256_kid": ok,
        "hs256_no_kid": jwt({"sub": "7", "exp": far}, secret),
        "hs256_previous_secret": jwt({"sub": "7", "exp": far}, previous, kid=kid(previous)),
        "hs256_wrong_secret": jwt({"sub": "7", "exp": far}, "other"),
        "hs256_expired": jwt({"sub": "7", "exp": 1000}, secret),
        "hs256_no_exp": jwt({"sub": "7"}, secret),
        "hs256_sub_not_a_number": jwt({"sub": "seven", "exp": far}, secret),
        "hs256_login_jti": jwt({"sub": "42", "exp": far, "jti": "session-1", "aud": "x", "iss": "y"}, secret),
        "eddsa_bad_signature": jwt({"sub": "7", "exp": far}, alg="EdDSA", signature=bytes(64)),
        "rs256_no_key": jwt({"sub": "7", "exp": far}, alg="RS256", signature=bytes(256)),
        "alg_none": jwt({"sub": "7", "exp": far}, alg="none", signature=b""),
        "hs512": jwt({"sub": "7", "exp": far}, alg="HS512", signature=bytes(64)),
    }
    for name, t in tokens.items():
        mid = 42 if "jti" in name else 7
        write("auth_body", f"body_{name}", json.dumps({"mid": mid, "key": "k1", "room_id": "live://1000", "platform": "web", "accepts": [1000, 1001], "token": t}))
        write("auth_body", f"token_{name}", t)
    docs = next(v for v in VECTORS["frames"] if v["name"] == "auth_docs_example")
    write("auth_body", "body_docs_example", bytes.fromhex(docs["body_hex"]))
    write("auth_body", "body_wrong_mid", json.dumps({"mid": 8, "token": ok}))
    write("auth_body", "body_minimal", '{"mid":1}')
    write("auth_body", "body_no_mid", '{"room_id":"x"}')
    write("auth_body", "body_negative_mid", json.dumps({"mid": -1, "token": ok}))
    write("auth_body", "body_mid_string", '{"mid":"7"}')
    write("auth_body", "body_key_128", json.dumps({"mid": 1, "key": "k" * 128}))
    write("auth_body", "body_key_129", json.dumps({"mid": 1, "key": "k" * 129}))
    write("auth_body", "body_unicode_escapes", '{"mid":1,"platform":"\\u00e9\\ud83d\\ude00","token":"\\u0065"}')
    write("auth_body", "body_accepts_overflow", '{"mid":1,"accepts":[2147483648]}')
    write("auth_body", "body_duplicate_field", '{"mid":1,"mid":2}')
    write("auth_body", "body_deep_nesting", '{"mid":1,"x":' + "[" * 200 + "]" * 200 + "}")
    write("auth_body", "garbage", b"\xff\x00{")


# --- goim_push_query: the raw query string --------------------------------------------------------------
def goim_push_query():
    queries = {
        "keys": "operation=1000&keys=a,b&keys=c",
        "keys_encoded_comma": "operation=1000&keys=a%2Cb",
        "keys_spaces": "operation=1000&keys=+a+,%20b%20,,",
        "keys_empty": "operation=1000&keys=",
        "mids": "operation=1000&mids=1,2,3",
        "mids_not_integers": "operation=1000&mids=1,x",
        "mids_overflow": "operation=1000&mids=9223372036854775808",
        "mids_negative": "operation=1000&mids=-1",
        "room": "operation=1000&type=live&room=1000",
        "room_missing": "operation=1000&type=live",
        "room_blank": "operation=1000&type=live&room=%20",
        "all": "operation=1000&speed=10",
        "all_no_speed": "operation=1000",
        "all_bad_speed": "operation=1000&speed=fast",
        "operation_twice": "operation=1000&operation=1001&keys=a",
        "operation_overflow": "operation=2147483648&keys=a",
        "operation_negative": "operation=-5&mids=1",
        "no_value": "operation&keys",
        "percent_broken": "operation=%zz&keys=%",
        "utf8": "operation=1000&room=%C3%A9%E2%9C%93&type=t",
        "invalid_utf8_escape": "operation=1000&keys=%FF%FE",
        "plus_and_ampersands": "&&operation=+1000+&&keys=a+b&",
        "empty": "",
    }
    for name, q in queries.items():
        write("goim_push_query", name, q)
    write("goim_push_query", "many_keys", "operation=1000&keys=" + ",".join(str(i) for i in range(300)))


# --- im_request: byte 0 = operation index (255: logic's args JSON), then path 0xFF query 0xFF body -----
def operation_order():
    text = (ROOT / "common/src/im/operations.rs").read_text()
    table = text[text.index("operations! {"):]
    return re.findall(r'^\s+\w+: "[A-Z]+" "[^"]+", "([^"]+)"', table, re.M)


def im_request():
    ops = operation_order()

    def w(name, op, path=(), query="", body=b""):
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        data = bytes([ops.index(op)]) + b"\xfe".join(p.encode() for p in path) + b"\xff" + query.encode() + b"\xff" + body
        write("im_request", name, data)

    w("register", "users.register", body={"email": "Ann@Example.com", "nickname": " Ann ", "password": "correct horse"})
    w("register_bad_email", "users.register", body={"email": "nope", "nickname": "Ann", "password": "correct horse"})
    w("register_array_body", "users.register", body=b"[1]")
    w("login", "sessions.login", body={"email": "a@b.co", "password": "pw"})
    w("update_me", "me.update", body={"nickname": "Bo", "sex": "female", "birthday": "2000-02-29", "password": "new password", "current_password": "old"})
    w("get_user", "users.get", ["12"])
    w("get_user_zero", "users.get", ["0"])
    w("get_user_not_number", "users.get", ["x"])
    w("upload_get", "uploads.get", ["abc123"])
    w("upload_create_raw", "uploads.create", body=b"\x89PNG\r\n")
    w("friend_request", "friend_requests.create", body={"to_user_id": 5, "note": "hi", "friend_group_id": 2})
    w("friends_page", "friends.list", query="limit=20&cursor=abc")
    w("friends_bad_limit", "friends.list", query="limit=x")
    w("search_users", "search.users", query="q=ann&page=1&page_size=20")
    w("search_messages", "search.messages", query="q=hello&conversation_id=g-5")
    w("create_group", "groups.create", body={"name": "G", "description": "", "max_members": 200, "need_approval": True})
    w("members", "groups.members", ["3"], "limit=50")
    w("member_update", "groups.member_update", ["3", "9"], body={"role": "admin", "muted_until": 0})
    w("join_accept", "groups.join_accept", ["3", "4"])
    w("history", "messages.list", ["u-1-2"], "before_seq=100&limit=50")
    w("history_bad_cid", "messages.list", ["u-2-1"])
    w("send", "messages.send", ["g-7"], body={"client_msg_id": "c1", "type": "text", "content": "hello ✓"})
    w("send_image", "messages.send", ["u-1-2"], body={"client_msg_id": "c2", "type": "image", "content": "{\"upload_id\":\"x\"}"})
    w("send_unknown_field", "messages.send", ["g-7"], body={"client_msg_id": "c1", "content": "x", "extra": 1})
    w("edit", "messages.edit", ["g-7", "5"], body={"content": "fixed"})
    w("react", "reactions.add", ["g-7", "5", "👍"])
    w("react_bad_emoji", "reactions.add", ["g-7", "5", "not an emoji"])
    w("readers", "messages.readers", ["g-7", "5"], "limit=10")
    w("read", "conversations.read", ["u-1-2"], body={"seq": 10})
    w("typing", "conversations.typing", ["g-1"], body={})
    w("notice", "notices.create", body={"user_ids": [1, 2], "title": "t", "content": "c"})
    w("notifications", "notifications.list", query="page=2&page_size=10")
    w("whitespace_body", "me.get", body=b" \n\t")
    w("openapi", "openapi")

    def logic(name, req):
        write("im_request", f"logic_{name}", b"\xff" + json.dumps(req).encode())

    logic("send", {"op": "messages.send", "args": {"path": {"cid": "u-1-2"}, "query": {}, "body": {"client_msg_id": "a", "content": "hi"}}})
    logic("send_bad_cid", {"op": "messages.send", "args": {"path": {"cid": "u-2-1"}, "query": {}, "body": {"client_msg_id": "a", "content": "hi"}}})
    logic("history", {"op": "messages.list", "args": {"path": {"cid": "g-3"}, "query": {"after_seq": 4, "limit": 20}, "body": {}}})
    logic("register", {"op": "users.register", "args": {"path": {}, "query": {}, "body": {"email": "a@b.co", "nickname": "Ann", "password": "correct horse"}}})
    logic("unknown_op", {"op": "nope", "args": {}})
    logic("invalid", {"invalid": "body.nickname: too long"})


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    for f in (frame_decode, raw_batch, ws_frames, auth_body, goim_push_query, im_request):
        f()
    for d in sorted(OUT.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
