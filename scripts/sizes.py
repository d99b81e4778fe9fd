#!/usr/bin/env python3
"""sizes.py — what is too big in src/, and type names declared twice.

Usage: scripts/sizes.py [--src DIR]

Prints, for the .rs files under src/:

- every file over 450 lines (tests included: a file's own `#[cfg(test)]` module counts);
- every fn over 80 lines, from its signature's first line to its closing brace (test fns in
  `#[cfg(test)]` modules too), found by brace depth over the text with comments, strings and
  character literals blanked out;
- every type name (struct, enum, union, trait or type alias, `pub` or not) declared in two or
  more files, outside `#[cfg(test)]` modules (inline ones, and the files a `#[cfg(test)]
  mod x;` names) and leaving out associated types (`type Item = …` inside an impl or trait).

Then a summary line; exits 1 when it found anything, else 0.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

MAX_FILE_LINES = 450
MAX_FN_LINES = 80

FN = re.compile(r"\bfn\s+(\w+)")
TYPE = re.compile(r"\b(struct|enum|union|trait|type)\s+(\w+)")
TEST_MOD_DECL = re.compile(
    r"#\[cfg\(test\)\]\s*((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])"
)
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')


def blank(text):
    """The text with every comment, string and character literal replaced by spaces (line
    breaks kept), so braces and keywords left are code."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            wipe(i, j)
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c == "'":
            # A character literal ('x', '\n', '\u{1F600}', b'x'), or a lifetime ('a).
            m = re.compile(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'").match(text, i)
            if m:
                wipe(i, m.end())
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching(code, open_at):
    """The index of the brace closing the one at `open_at`."""
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(code) - 1


def line_of(code, at):
    return code.count("\n", 0, at) + 1


def body_open(code, start):
    """Where a fn's body opens (its first `{` outside parentheses and brackets), or None for
    a fn without one (`fn f();` in a trait)."""
    depth = 0
    for k in range(start, len(code)):
        c = code[k]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c == "{":
            return k
        elif depth == 0 and c == ";":
            return None
    return None


def test_spans(code):
    """(start, end) of every inline `#[cfg(test)] mod x { … }`, and the names of the
    `#[cfg(test)] mod x;` declared (with their `#[path]`, if any)."""
    spans, declared = [], []
    for m in TEST_MOD_DECL.finditer(code):
        if m.group(3) == "{":
            spans.append((m.start(), matching(code, m.end() - 1)))
        else:
            path = PATH_ATTR.search(m.group(1) or "")
            declared.append((m.group(2), path.group(1) if path else None))
    return spans, declared


def test_file(src, rel, name, path):
    """The file a `#[cfg(test)] mod name;` in `rel` refers to."""
    here = os.path.dirname(rel)
    if path:
        return os.path.normpath(os.path.join(here, path))
    stem = os.path.basename(rel)[:-3]
    base = here if stem in ("mod", "lib", "main") else os.path.join(here, stem)
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.isfile(os.path.join(src, cand)):
            return os.path.normpath(cand)
    return None


def brace_kind(code, at):
    """What the brace at `at` opens: `impl`, `trait`, or something else (`other`), judged by
    the code since the previous `;`, `{` or `}`."""
    k = at - 1
    while k >= 0 and code[k] not in ";{}":
        k -= 1
    head = code[k + 1 : at]
    head = re.sub(r"#\[[^\]]*\]", " ", head).strip()
    if re.match(r"(unsafe\s+)?impl\b", head):
        return "impl"
    if re.search(r"\btrait\s+\w+", head) and not re.search(r"\bimpl\b", head):
        return "trait"
    return "other"


def types_in(code, skip):
    """(name, line) of every type declared outside the spans in `skip` and outside impl and
    trait blocks."""
    found = []
    for m in TYPE.finditer(code):
        if any(a <= m.start() <= b for a, b in skip):
            continue
        # `type` after `impl Trait for X {` is an associated type; find the innermost brace.
        depth, k = 0, m.start() - 1
        while k >= 0:
            if code[k] == "}":
                depth += 1
            elif code[k] == "{":
                if depth == 0:
                    break
                depth -= 1
            k -= 1
        if k >= 0 and brace_kind(code, k) in ("impl", "trait"):
            continue
        # An item keyword, not a word in an expression (`S::type` does not exist, but
        # `r#type` might): it starts a statement.
        before = code[: m.start()].rstrip()
        before = re.sub(r"(pub(\([^)]*\))?|unsafe|auto)$", "", before).rstrip()
        before = re.sub(r"(pub(\([^)]*\))?)$", "", before).rstrip()
        if before and before[-1] not in ";{}]" :
            continue
        found.append((m.group(2), line_of(code, m.start())))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    a = ap.parse_args()
    files = []
    for dirpath, _, names in os.walk(a.src):
        for n in names:
            if n.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(dirpath, n), a.src))
    files.sort()
    code = {}
    for rel in files:
        with open(os.path.join(a.src, rel), encoding="utf-8") as f:
            code[rel] = blank(f.read())
    # Files that are test modules of another (`#[cfg(test)] mod tests;`), and their own
    # test modules, all the way down.
    test_files, spans = set(), {}
    for rel in files:
        spans[rel], declared = test_spans(code[rel])
        for name, path in declared:
            t = test_file(a.src, rel, name, path)
            if t:
                test_files.add(t)
    big, long_fns, types = [], [], defaultdict(list)
    for rel in files:
        text = code[rel]
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        if lines > MAX_FILE_LINES:
            big.append(f"file: src/{rel}: {lines} lines (over {MAX_FILE_LINES})")
        for m in FN.finditer(text):
            # The signature's first line: attributes and `pub`/`async` before `fn` on it.
            opened = body_open(text, m.end())
            if opened is None:
                continue
            first, last = line_of(text, m.start()), line_of(text, matching(text, opened))
            if last - first + 1 > MAX_FN_LINES:
                long_fns.append(f"fn: src/{rel}:{first} {m.group(1)}: {last - first + 1} lines (over {MAX_FN_LINES})")
        if rel in test_files:
            continue
        for name, line in types_in(text, spans[rel]):
            types[name].append(f"src/{rel}:{line}")
    twice = {n: at for n, at in types.items() if len({x.rsplit(':', 1)[0] for x in at}) > 1}
    for line in big + long_fns:
        print(line)
    for name in sorted(twice):
        print(f"type: {name}: " + ", ".join(twice[name]))
    print(
        f"sizes: {len(files)} files, {len(big)} over {MAX_FILE_LINES} lines, "
        f"{len(long_fns)} fns over {MAX_FN_LINES} lines, {len(twice)} type names in two or more files"
    )
    return 1 if big or long_fns or twice else 0


if __name__ == "__main__":
    sys.exit(main())
