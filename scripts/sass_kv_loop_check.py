#!/usr/bin/env python3
"""Per kernel instance of a cuobjdump --dump-sass listing: IGMMA / QGMMA counts and local-memory
(LDL/STL: register spill) instructions, split into those inside the KV loop and the rest.

The KV loop is the innermost natural loop of the control-flow graph that issues IGMMA. Exit 1 when
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
    """The natural loops of the control-flow graph that issue IGMMA and hold no such loop inside,
    each as the set of its instruction addresses. A loop is the target of a backward branch plus
    every block that reaches the branch without passing through the target: out-of-line blocks
    that jump back in (retry loops of a barrier wait, cold paths) belong to it, code after it
    (an epilogue) does not."""
    addrs = [a for a, _ in body]
    index = {a: k for k, a in enumerate(addrs)}
    branch = {}
    for a, ins in body:
        m = re.search(r"\bBRA(?:\.\S+)? (?:\S+, )?0x([0-9a-f]+)", ins)
        if m:
            branch[a] = int(m.group(1), 16)
    # block leaders: entry, branch targets, instructions after a branch or an exit
    leaders = {addrs[0]} | {t for t in branch.values() if t in index}
    for k, (a, ins) in enumerate(body[:-1]):
        if a in branch or re.match(r"(@!?U?P\w+\s+)?(EXIT|RET)", ins):
            leaders.add(addrs[k + 1])
    starts = sorted(leaders)
    block_of = {}
    blocks = []
    for b, lo in enumerate(starts):
        members = addrs[index[lo]:index[starts[b + 1]] if b + 1 < len(starts) else len(addrs)]
        blocks.append(members)
        for a in members:
            block_of[a] = b
    preds = {b: set() for b in range(len(blocks))}
    for b, members in enumerate(blocks):
        last = members[-1]
        ins = body[index[last]][1]
        if last in branch and branch[last] in block_of:
            preds[block_of[branch[last]]].add(b)
        # BRA.DIV branches only when the warp is divergent: it falls through too
        unconditional = (last in branch and re.match(r"BRA(\.U)? ", ins)) or re.match(r"(EXIT|RET)", ins)
        if not unconditional and b + 1 < len(blocks):
            preds[b + 1].add(b)
    loops = []
    for src, tgt in branch.items():
        if tgt > src or tgt not in block_of:
            continue
        head, tail = block_of[tgt], block_of[src]
        loop, todo = {head, tail}, [tail]
        while todo:
            for p in preds[todo.pop()]:
                if p not in loop:
                    loop.add(p)
                    todo.append(p)
        if 0 in loop and head != 0:
            continue   # the target does not dominate the branch (a jump back from a cold path): no loop
        members = {a for b in loop for a in blocks[b]}
        if any("IGMMA" in body[index[a]][1] for a in members):
            loops.append(members)
    return [l for l in loops if not any(o < l for o in loops)]


def main():
    bad = False
    for name, body in instances(sys.argv[1]):
        ig = sum("IGMMA" in i for _, i in body)
        qg = sum("QGMMA" in i for _, i in body)
        loops = kv_loops(body)
        local = [a for a, i in body if re.match(r"(@!?U?P\w+\s+)?(LDL|STL)[. ]", i)]
        in_loop = [a for a in local if any(a in l for l in loops)]
        print(f"   {name[:96]:96s} IGMMA {ig:3d} QGMMA {qg:3d} KV loops {len(loops)} "
              f"LDL/STL in them {len(in_loop)}, elsewhere {len(local) - len(in_loop)}")
        if ig == 0 or qg == 0 or not loops or in_loop:
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
