#!/usr/bin/env python3
"""Code bytes of the worker's wasm by crate, from its name section (twiggy is not installed
here and cannot be fetched offline).

Reads the wasm cargo builds, before wasm-bindgen and wasm-opt (they drop the names):
  python3 scripts/wasm-sizes.py [TOP] [CRATE]
TOP: how many crates to list (default 40). CRATE: also list that crate's largest functions.
A function counts under the first crate its demangled name starts with (the type's crate
for `<Type as Trait>::method`), so generic code instantiated for our types often counts
under `core`, `alloc` or `serde`. Our own crate is split by module.
"""
import collections
import re
import sys

WASM = "target/wasm32-unknown-unknown/release/edge_credentials.wasm"
ESCAPES = {"$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$C$": ",", "$SP$": "@",
           "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{",
           "$u7d$": "}", "$u7e$": "~", "$u3b$": ";", "$u2b$": "+", "$u22$": '"', "$u21$": "!"}


def demangle(name):
    """Legacy (`_ZN`) Rust symbols; v0 (`_R`) ones are left as they are."""
    if not name.startswith("_ZN"):
        return name
    i, parts = 3, []
    while i < len(name) and name[i] != "E":
        m = re.match(r"\d+", name[i:])
        if not m:
            break
        n = int(m.group())
        i += len(m.group())
        seg = name[i:i + n]
        i += n
        if seg.startswith("_$"):
            seg = seg[1:]
        for k, v in ESCAPES.items():
            seg = seg.replace(k, v)
        parts.append(seg.replace("..", "::"))
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(parts)


def crate(name):
    if name.startswith("_R"):
        m = re.search(r"Cs[0-9A-Za-z]*_(\d+)", name)
        return name[m.end():m.end() + int(m.group(1))] if m else name[:20]
    d = demangle(name).lstrip("<&*").replace("mut ", "").replace("dyn ", "")
    if d.startswith("core::ptr::drop_in_place<"):
        d = d[len("core::ptr::drop_in_place<"):].lstrip("<&*")
    if d.startswith("core::panic::unwind_safe::AssertUnwindSafe<F> as"):
        return "(async glue: AssertUnwindSafe<F>::poll)"
    m = re.match(r"edge_credentials::(\w+)::(\w+)", d)
    if m:
        return f"edge_credentials::{m.group(1)}::{m.group(2)}"
    m = re.match(r"[A-Za-z_]\w*", d)
    return m.group() if m else d[:20]


def main():
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    detail = sys.argv[2] if len(sys.argv) > 2 else None
    data = open(WASM, "rb").read()

    def leb(p):
        result = shift = 0
        while True:
            b = data[p]
            p += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result, p

    pos, sections = 8, []
    while pos < len(data):
        sid = data[pos]
        size, pos = leb(pos + 1)
        sections.append((sid, pos, size))
        pos += size
    imported, bodies, names, data_bytes = 0, [], {}, 0
    for sid, p, size in sections:
        if sid == 2:  # imports: functions are numbered after them
            n, q = leb(p)
            for _ in range(n):
                for _ in range(2):
                    length, q = leb(q)
                    q += length
                kind = data[q]
                q += 1
                if kind == 0:
                    _, q = leb(q)
                    imported += 1
                elif kind == 1:
                    flags = data[q + 1]
                    _, q = leb(q + 2)
                    if flags & 1:
                        _, q = leb(q)
                elif kind == 2:
                    flags = data[q]
                    _, q = leb(q + 1)
                    if flags & 1:
                        _, q = leb(q)
                else:
                    q += 2
        elif sid == 10:  # code
            n, q = leb(p)
            for i in range(n):
                length, q = leb(q)
                bodies.append((imported + i, length))
                q += length
        elif sid == 11:
            data_bytes += size
        elif sid == 0:
            length, q = leb(p)
            if data[q:q + length] != b"name":
                continue
            q += length
            while q < p + size:
                sub = data[q]
                sub_size, q = leb(q + 1)
                end = q + sub_size
                if sub == 1:  # function names
                    n, r = leb(q)
                    for _ in range(n):
                        idx, r = leb(r)
                        length, r = leb(r)
                        names[idx] = data[r:r + length].decode("utf-8", "replace")
                        r += length
                q = end
    if not names:
        sys.exit(f"{WASM} has no name section")
    by_crate, functions = collections.Counter(), collections.defaultdict(list)
    for idx, length in bodies:
        name = names.get(idx, f"func{idx}")
        by_crate[crate(name)] += length
        functions[crate(name)].append((length, demangle(name)))
    total = sum(by_crate.values())
    print(f"code: {total} bytes in {len(bodies)} functions; data segments: {data_bytes} bytes")
    for name, size in by_crate.most_common(top):
        print(f"{size:9d} {100 * size / total:5.1f} %  {name}")
    if detail:
        print(f"--- largest functions of {detail}")
        for length, name in sorted(functions[detail], reverse=True)[:30]:
            print(f"{length:9d}  {name[:200]}")


if __name__ == "__main__":
    main()
