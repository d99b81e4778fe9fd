#!/usr/bin/env python3
"""layers.py — the import graph of src/: cycles between files, and imports that run up the layers.

Usage: scripts/layers.py [--src DIR] [--graph]

Every path a file names (`use crate::…`, `use super::…`, `use self::…`, inline `crate::a::b`
or `super::x` paths, and paths through a child module it declares, `child::f` or `use child::{…}`) is resolved to the file that defines it: the deepest module
file the path reaches (`crate::peer::ring::X` → src/peer/ring.rs; `crate::peer::Swarm` →
src/peer/mod.rs). `mod x;` declarations are not imports. Test-only items (each `#[cfg(test)]`
item, such as a `mod tests { … }`, and the files a `#[cfg(test)] mod x;` names, `#[path]` or not) are left out: a
test may use anything.

Layers, bottom first (a file may import its own layer and those below):

  0 ground        hash manifest chunkset units ticket meter key auth
  1 seams         net watch rate events sim task
  2 store         store/ storage protocol/ secure/
  3 connection    connection link driver accept serve choke
  4 directory     directory/ metrics dht/
  5 engine        owner/ peer/ share/
  6 presentation  cli identity progress query/ report/ dashboard http/ app/ dht_cli

lib.rs and error.rs are the crate's root: they may name anything, and anything may use
`crate::Error` and `crate::Result`. `owner/` and `peer/` must not import each other.

Prints each cycle (files in import order) and each upward import (file:line, the path), then
a summary line; exits 1 when there is either, else 0. --graph also prints every edge.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

LAYERS = [
    ("ground", ["hash", "manifest", "chunkset", "units", "ticket", "meter", "key", "auth"]),
    ("seams", ["net", "watch", "rate", "events", "sim", "task"]),
    ("store", ["store", "storage", "protocol", "secure"]),
    ("connection", ["connection", "link", "driver", "accept", "serve", "choke"]),
    ("directory", ["directory", "metrics", "dht"]),
    ("engine", ["owner", "peer", "share"]),
    ("presentation", ["cli", "identity", "progress", "query", "report", "dashboard", "http", "app", "dht_cli"]),
]
ROOT = {"lib", "error"}
APART = [("owner", "peer")]

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::\w+)*)::\{")


def top_of(rel):
    """The top module of a file: src/peer/ring.rs → peer."""
    first = rel.split("/")[0]
    return first[:-3] if first.endswith(".rs") else first


def layer_of(top):
    for i, (_, mods) in enumerate(LAYERS):
        if top in mods:
            return i
    return None


def module_path(rel):
    """src-relative file → its module path: peer/ring.rs → [peer, ring]; peer/mod.rs → [peer]."""
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def resolve(src, segs):
    """The file a module path reaches, deepest first: [peer, ring, X] → peer/ring.rs."""
    best = "lib.rs"
    here = []
    for s in segs:
        here = here + [s]
        base = "/".join(here)
        if os.path.isfile(os.path.join(src, base + ".rs")):
            best = base + ".rs"
        elif os.path.isfile(os.path.join(src, base, "mod.rs")):
            best = base + "/mod.rs"
        else:
            break
    return best


def strip_tests(text):
    """The text without its test-only items (each `#[cfg(test)]` item: a `mod tests { … }`,
    a `mod testing;`, a helper fn), comments blanked, and `pub(in path)` visibilities (which
    name a module but import nothing) left out."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"\bpub\(in [\w:]+\)", "pub", text)
    while True:
        cut = text.find("#[cfg(test)]")
        if cut < 0:
            return text
        text = text[:cut] + text[item_end(text, cut + len("#[cfg(test)]")) :]


def item_end(text, i):
    """Where the item starting at `i` ends: after its first `;` outside braces, or after the
    brace that closes its first `{`."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == ";" and depth == 0:
            return i + 1
        i += 1
    return i


def paths_in(text):
    """(line, root, segments) for every path, group imports expanded one level; a path
    through a child module this file declares (`mod child;` … `child::f`) is rooted at
    `self`."""
    out = []
    for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M):
        for m in re.finditer(r"(?<![:\w])" + child + r"((?:::\w+)+)", text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((line, "self", [child] + m.group(1).strip(":").split("::")))
        for m in re.finditer(r"\buse\s+" + child + r"::\{", text):
            out.append((text.count("\n", 0, m.start()) + 1, "self", [child]))
    for m in PATH.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, m.group(1), m.group(2).strip(":").split("::")))
    for m in USE_GROUP.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        prefix = [s for s in m.group(2).strip(":").split("::") if s]
        depth, i = 1, m.end()
        body = []
        while i < len(text) and depth:
            c = text[i]
            depth += c == "{"
            depth -= c == "}"
            body.append(c)
            i += 1
        # Only the first level of the group: `a::{b, c::d}` → a::b, a::c::d.
        inner = "".join(body[:-1])
        level, item = 0, ""
        items = []
        for c in inner:
            if c == "{":
                level += 1
            elif c == "}":
                level -= 1
            if c == "," and level == 0:
                items.append(item)
                item = ""
            else:
                item += c
        items.append(item)
        for it in items:
            head = it.strip().split("::{")[0].split(" as ")[0].strip()
            if head and head != "self":
                out.append((line, m.group(1), prefix + head.split("::")))
    return out


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def test_files(src):
    """The files that are test modules: named by a `#[cfg(test)] mod x;` (with its
    `#[path = "…"]`, relative to the declaring file's folder, if any)."""
    out = set()
    for dirpath, _, names in os.walk(src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            with open(os.path.join(src, rel), encoding="utf-8") as f:
                text = f.read()
            here, stem = os.path.dirname(rel), n[:-3]
            for m in TEST_MOD.finditer(text):
                path = re.search(r'#\[path\s*=\s*"([^"]+)"\]', m.group(1) or "")
                if path:
                    out.add(os.path.normpath(os.path.join(here, path.group(1))))
                    continue
                base = here if stem in ("mod", "lib") else os.path.join(here, stem)
                out.add(os.path.normpath(os.path.join(base, m.group(2) + ".rs")))
                out.add(os.path.normpath(os.path.join(base, m.group(2), "mod.rs")))
    return out


def graph(src):
    edges = defaultdict(dict)  # file → {target: (line, text)}
    tests = test_files(src)
    for dirpath, _, names in os.walk(src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            if rel in tests:
                continue
            with open(os.path.join(src, rel), encoding="utf-8") as f:
                text = strip_tests(f.read())
            here = module_path(rel)
            for line, root, segs in paths_in(text):
                if root == "crate":
                    full = segs
                elif root == "self":
                    full = here + segs
                else:
                    up, rest = list(here), list(segs)
                    # `super` from a file is its parent module; `super::super` goes further.
                    up = up[:-1]
                    while rest and rest[0] == "super":
                        up, rest = up[:-1], rest[1:]
                    full = up + rest
                target = resolve(src, [s for s in full if s])
                if target != rel and target not in edges[rel]:
                    shown = root + "::" + "::".join(segs)
                    edges[rel][target] = (line, shown)
    return edges


def cycles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    ap.add_argument("--graph", action="store_true")
    a = ap.parse_args()
    edges = graph(a.src)
    problems = 0
    unplaced = set()
    for f, targets in sorted(edges.items()):
        for t, (line, shown) in sorted(targets.items()):
            if a.graph:
                print(f"{f} -> {t}  ({shown})")
            ft, tt = top_of(f), top_of(t)
            if ft in ROOT or tt in ROOT or ft == tt:
                continue
            lf, lt = layer_of(ft), layer_of(tt)
            if lf is None or lt is None:
                unplaced.update(x for x, l in ((ft, lf), (tt, lt)) if l is None)
                continue
            apart = (ft, tt) in APART or (tt, ft) in APART
            if lt > lf or apart:
                why = "owner and peer import each other" if apart else f"{LAYERS[lf][0]} imports {LAYERS[lt][0]}"
                print(f"up: src/{f}:{line} {shown} -> src/{t} ({why})")
                problems += 1
    found = cycles(edges)
    for c in found:
        print("cycle: " + " <-> ".join("src/" + x for x in c))
    for u in sorted(unplaced):
        print(f"unplaced module: {u} (add it to a layer in scripts/layers.py)")
    files = len({f for f in edges} | {t for ts in edges.values() for t in ts})
    arrows = sum(len(t) for t in edges.values())
    print(f"layers: {files} files, {arrows} imports, {len(found)} cycles, {problems} upward imports, {len(unplaced)} unplaced")
    return 1 if found or problems or unplaced else 0


if __name__ == "__main__":
    sys.exit(main())
