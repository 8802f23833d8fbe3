#!/usr/bin/env python3
"""Write a copy of a GGUF model whose vocabulary has <|im_start|> and
<|im_end|> control tokens (two rarely used tokens renamed) and a ChatML
tokenizer.chat_template: a chat model for tests, made from stories260K.
With FAMILY "mistral": a [TOOL_CALLS] control token and a Mistral-style
template instead (for tool calls in Mistral's format).
Usage: gguf_chatml.py IN.gguf OUT.gguf [chatml|mistral]"""
import struct, sys

def rd(f, fmt):
    n = struct.calcsize("<" + fmt)
    return struct.unpack("<" + fmt, f.read(n))

def rd_str(f):
    (n,) = rd(f, "Q")
    return f.read(n)

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

def rd_val(f, t):
    if t == 8:
        return rd_str(f)
    if t == 9:
        (et, n) = rd(f, "IQ")
        return (et, [rd_val(f, et) for _ in range(n)])
    return rd(f, SCALAR[t])[0]

def wr_str(o, s):
    o.write(struct.pack("<Q", len(s)) + s)

def wr_val(o, t, v):
    if t == 8:
        wr_str(o, v)
    elif t == 9:
        et, items = v
        o.write(struct.pack("<IQ", et, len(items)))
        for x in items:
            wr_val(o, et, x)
    else:
        o.write(struct.pack("<" + SCALAR[t], v))

TEMPLATE = (b"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
            b"'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

MISTRAL_TEMPLATE = b"{{ bos_token }}{% for message in messages %}[INST] {{ message['content'] }} [/INST]{% endfor %}"

def main(src, dst, family="chatml"):
    with open(src, "rb") as f:
        magic, version, n_t, n_kv = rd(f, "4sIQQ")
        assert magic == b"GGUF"
        kvs = []
        for _ in range(n_kv):
            k = rd_str(f)
            (t,) = rd(f, "I")
            kvs.append([k, t, rd_val(f, t)])
        infos = []
        for _ in range(n_t):
            name = rd_str(f)
            (nd,) = rd(f, "I")
            dims = rd(f, "Q" * nd)
            (tt, off) = rd(f, "IQ")
            infos.append((name, nd, dims, tt, off))
        align = 32
        start = (f.tell() + align - 1) // align * align
        f.seek(start)
        data = f.read()
    kv = {k: i for i, (k, _, _) in enumerate(kvs)}
    toks = kvs[kv[b"tokenizer.ggml.tokens"]][2][1]
    types = kvs[kv[b"tokenizer.ggml.token_type"]][2][1]
    a, b = len(toks) - 2, len(toks) - 1
    if family == "mistral":
        toks[a] = b"[TOOL_CALLS]"
        types[a] = 3
        kvs.append([b"tokenizer.chat_template", 8, MISTRAL_TEMPLATE])
    else:
        toks[a], toks[b] = b"<|im_start|>", b"<|im_end|>"
        types[a] = types[b] = 3
        kvs.append([b"tokenizer.chat_template", 8, TEMPLATE])
    with open(dst, "wb") as o:
        o.write(struct.pack("<4sIQQ", b"GGUF", 3, len(infos), len(kvs)))
        for k, t, v in kvs:
            wr_str(o, k)
            o.write(struct.pack("<I", t))
            wr_val(o, t, v)
        for name, nd, dims, tt, off in infos:
            wr_str(o, name)
            o.write(struct.pack("<I", nd) + struct.pack("<" + "Q" * nd, *dims) + struct.pack("<IQ", tt, off))
        pad = (-o.tell()) % align
        o.write(b"\0" * pad)
        o.write(data)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "chatml")
