#!/usr/bin/env python3
"""The edge's module graph and its import cycles.

For every file under services/edge/src (test modules left out: files named
tests.rs and items under #[cfg(test)]), the modules of the crate it uses:
`use crate::…` lines (braces expanded), inline `crate::…` paths, `super::…`
paths and, in a module with submodules, paths that start with one of them
(`pub use read::FrameStream`). Comments and string literals are skipped.

Two graphs:
- modules: each top-level module of the crate (a directory's submodules
  counted as the module), the one docs/architecture.md draws; the crate
  root (lib.rs) is left out, as most modules use AppState.
- files: each file its own node (websocket::connection, delivery::body, …),
  a parent's re-export of its child counted as a use.

Prints both as lists of edges and the cycles of each (strongly connected
components of more than one node, or a node that uses itself), and exits 1
when the modules graph has a cycle. `--mermaid` prints the modules graph as
a mermaid block instead.

    scripts/edge-modules.py [--mermaid] [--src services/edge/src]
"""

import argparse
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """The code without comments and the contents of string and char literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                end = text.find("'", i + 2)
                out.append("' '")
                i = end + 1
            elif i + 2 < n and text[i + 2] == "'":
                out.append("' '")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(code, i):
    """The index after the item starting at i: its `;` or its balanced braces."""
    depth = 0
    while i < len(code):
        c = code[i]
        if c == ";" and depth == 0:
            return i + 1
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def drop_cfg_test(code):
    """The code without the items under #[cfg(test)]."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code
        code = code[: m.start()] + code[block_end(code, m.end()) :]


def expand(path):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    path = re.sub(r"\s+", "", path)
    m = re.search(r"\{", path)
    if not m:
        return [path]
    prefix, depth, parts, start = path[: m.start()], 0, [], m.end()
    for j in range(m.start(), len(path)):
        if path[j] == "{":
            depth += 1
        elif path[j] == "}":
            depth -= 1
            if depth == 0:
                parts.append(path[start:j])
                break
        elif path[j] == "," and depth == 1:
            parts.append(path[start:j])
            start = j + 1
    out = []
    for part in parts:
        if part:
            out.extend(expand(prefix + part))
    return out


def module_of(rel):
    """services/edge/src-relative file -> module path (() for lib.rs)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="services/edge/src")
    ap.add_argument("--mermaid", action="store_true")
    args = ap.parse_args()

    files = {}
    for root, _, names in os.walk(args.src):
        for name in names:
            if name.endswith(".rs") and name != "tests.rs":
                rel = os.path.relpath(os.path.join(root, name), args.src)
                if rel == "main.rs":
                    continue  # the binary, not the library
                files[module_of(rel)] = os.path.join(root, name)
    modules = set(files)

    def resolve(segments):
        """The longest prefix of segments that names a module of the crate."""
        for k in range(len(segments), 0, -1):
            if tuple(segments[:k]) in modules:
                return tuple(segments[:k])
        return ()

    fine = {m: set() for m in modules}
    for mod, path in files.items():
        code = drop_cfg_test(strip(open(path, encoding="utf-8").read()))
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths.extend(expand(m.group(1)))
        paths.extend(m.group(0) for m in re.finditer(rf"\b(?:crate|super)(?:::{IDENT})+", code))
        children = {m[-1] for m in modules if len(m) == len(mod) + 1 and m[:-1] == mod}
        for p in paths:
            segs = [s for s in re.sub(r"\bas\s+\w+$", "", p).split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                target = resolve(segs[1:])
            elif segs[0] == "super":
                base = list(mod)
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                target = resolve(base + segs)
            elif segs[0] == "self" or segs[0] in children:
                target = resolve(list(mod) + segs[segs[0] == "self" :])
            else:
                continue
            if target and target != mod:
                fine[mod].add(target)

    coarse = {}
    for mod, targets in fine.items():
        if not mod:
            continue
        top = mod[0]
        coarse.setdefault(top, set())
        coarse[top].update(t[0] for t in targets if t and t[0] != top)

    if args.mermaid:
        print("```mermaid\ngraph TD")
        for a in sorted(coarse):
            for b in sorted(coarse[a]):
                print(f"  {a} --> {b}")
        print("```")
        return 0

    name = lambda m: "::".join(m) or "crate"
    fine_named = {name(a): {name(b) for b in bs} for a, bs in fine.items() if a}
    status = 0
    for title, graph in (("modules", coarse), ("files", fine_named)):
        print(f"## {title}")
        for a in sorted(graph):
            print(f"- {a} -> {', '.join(sorted(graph[a])) or 'nothing in the crate'}")
        cycles = sccs(graph)
        if cycles:
            for c in cycles:
                print(f"CYCLE ({title}): {' -> '.join(sorted(c))}")
            if title == "modules":
                status = 1
        else:
            print(f"no cycles ({title})")
        print()
    return status


def sccs(graph):
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
