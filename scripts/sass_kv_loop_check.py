#!/usr/bin/env python3
"""Per kernel instance of a cuobjdump --dump-sass listing: IGMMA / QGMMA counts and local-memory
(LDL/STL: register spill) instructions, split into those inside the KV loop and the rest.

The KV loop is the innermost loop (the range of a backward branch) that issues IGMMA. Exit 1 when
an instance lacks IGMMA or QGMMA, has no such loop, or touches local memory inside it; spills
outside it (at most once per work tile) are reported, not failed.
Usage: sass_kv_loop_check.py SASS_FILE"""
import re
import sys


def instances(path):
    name, body = None, []
    for line in open(path):
        m = re.search(r"Function : (\S+)", line)
        if m:
            if name:
                yield name, body
            name, body = m.group(1), []
            continue
        m = re.search(r"/\*([0-9a-f]{4,})\*/\s+(\S.*?)\s*;", line)
        if name and m:
            body.append((int(m.group(1), 16), m.group(2)))
    if name:
        yield name, body


def kv_loops(body):
    loops = []
    for addr, ins in body:
        m = re.search(r"BRA (?:\S+ )?0x([0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < addr:
            lo, hi = int(m.group(1), 16), addr
            if any("IGMMA" in i for a, i in body if lo <= a <= hi):
                loops.append((lo, hi))
    # innermost: no other IGMMA loop inside
    return [(lo, hi) for lo, hi in loops
            if not any((l2, h2) != (lo, hi) and lo <= l2 and h2 <= hi for l2, h2 in loops)]


def main():
    bad = False
    for name, body in instances(sys.argv[1]):
        ig = sum("IGMMA" in i for _, i in body)
        qg = sum("QGMMA" in i for _, i in body)
        loops = kv_loops(body)
        local = [a for a, i in body if re.match(r"(@!?U?P\w+\s+)?(LDL|STL)[. ]", i)]
        in_loop = [a for a in local if any(lo <= a <= hi for lo, hi in loops)]
        print(f"   {name[:96]:96s} IGMMA {ig:3d} QGMMA {qg:3d} KV loops {len(loops)} "
              f"LDL/STL in them {len(in_loop)}, elsewhere {len(local) - len(in_loop)}")
        if ig == 0 or qg == 0 or not loops or in_loop:
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
