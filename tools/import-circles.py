#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

The module tree of each crate root (`src/lib.rs`, `src/main.rs`) of the crates below is read by
following `mod` declarations to files (inline `mod x { .. }` stays in its file). Every `use` path
and every other path that starts with `crate::`, `super::`, `self::`, a child module or a module
brought in by `use` is resolved to the module it names; the file holding the path then imports:

- the file of that module, and of every module the path passes through on the way
  (`crate::cluster::process::on_path` reaches into `cluster/mod.rs` too);
- where that module only hands the name on (`pub use`), also the file that defines it.

Not imports: a path to the module's own ancestors (`super::Thing` in a child: a child is part of
its parent), and a `pub use` of the module's own children (a folder's face handing on its rooms'
names). Paths into other crates, std, types and enums are ignored. Circles are the strongly
connected components of these imports; each is printed with the names every import takes.

Usage: tools/import-circles.py [REPO_ROOT]   (default: the repository this script is in)
Exit status: 0 no circle, 1 at least one circle, 2 a source it cannot read. Python 3 standard library only, no network.
"""

import os
import re
import sys

CRATES = ["bff", "bffctl", "harness"]
ROOT_FILES = ["lib.rs", "main.rs"]
KEYWORDS_BEFORE_PATH = {"crate", "super", "self"}


def unreadable(message):
    print(f"import-circles: {message}", file=sys.stderr)
    sys.exit(2)


def tokens(source):
    """Identifiers and punctuation of Rust source, without comments, strings and char literals."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
        elif source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'b?r#*"', source[i:i + 20]):
            m = re.match(r'b?r(#*)"', source[i:])
            end = source.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"' or source.startswith('b"', i):
            i += 2 if c == "b" else 1
            while i < n and source[i] != '"':
                i += 2 if source[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" or source.startswith("b'", i):
            k = i + (2 if c == "b" else 1)
            if k < n and source[k] == "\\":
                end = source.find("'", k + 2)
                i = n if end < 0 else end + 1
                out.append("''")
            elif k + 1 < n and source[k + 1] == "'":
                i = k + 2
                out.append("''")
            else:  # a lifetime or a label
                m = re.match(r"'[A-Za-z_][A-Za-z0-9_]*", source[i:])
                i += m.end() if m else 1
        elif c.isalpha() or c == "_":
            m = re.match(r"(?:r#)?[A-Za-z0-9_]+", source[i:])
            out.append(m.group(0).removeprefix("r#"))
            i += m.end()
        elif c.isdigit():
            m = re.match(r"[0-9][A-Za-z0-9_.]*", source[i:])
            i += m.end()
        elif source.startswith("::", i):
            out.append("::")
            i += 2
        else:
            out.append(c)
            i += 1
    return out


def is_ident(tok):
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok))


def use_paths(toks, i):
    """The paths of the use tree starting at toks[i]; returns (paths, index after the `;`).
    A path is a list of segments; its last may be `self` or `*`; `as` renames are kept as
    (segments, alias)."""
    paths = []

    def tree(i, prefix):
        segs = list(prefix)
        while True:
            tok = toks[i]
            if tok == "{":
                i += 1
                while toks[i] != "}":
                    i = tree(i, segs)
                    if toks[i] == ",":
                        i += 1
                return i + 1
            if tok == "*":
                paths.append((segs + ["*"], None))
                return i + 1
            segs.append(tok)
            i += 1
            if toks[i] == "::":
                i += 1
                continue
            alias = None
            if toks[i] == "as":
                alias = toks[i + 1]
                i += 2
            paths.append((segs, alias))
            return i

    if toks[i] == "::":
        i += 1
    i = tree(i, [])
    while toks[i] != ";":
        i += 1
    return paths, i + 1


def is_public(toks, i):
    """Whether the `use` at toks[i] is `pub`, `pub(crate)`, `pub(super)` or `pub(in ..)`."""
    j = i - 1
    if j >= 0 and toks[j] == ")":
        while j >= 0 and toks[j] != "(":
            j -= 1
        j -= 1
    return j >= 0 and toks[j] == "pub"


def is_below(module, ancestor):
    return len(module) > len(ancestor) and module[: len(ancestor)] == ancestor


class Crate:
    """One crate root's module tree: module path (a tuple) -> file, and each file's tokens."""

    def __init__(self, repo, root_file):
        self.repo = repo
        self.modules = {}
        self.files = {}
        self.read(root_file, (), os.path.dirname(root_file))

    def read(self, path, module, child_dir):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        if re.search(r"#\s*\[\s*path\s*=", source):
            unreadable(f"{os.path.relpath(path, self.repo)}: #[path] is not supported")
        toks = tokens(source)
        self.files[path] = (module, toks)
        self.modules[module] = path
        stack = []  # names of the inline modules around the current token, or None for a block
        for i, tok in enumerate(toks):
            if tok == "mod" and i + 2 < len(toks) and is_ident(toks[i + 1]):
                inner = module + tuple(name for name in stack if name)
                name = toks[i + 1]
                if toks[i + 2] == ";":
                    directory = os.path.join(child_dir, *[s for s in stack if s])
                    candidates = [os.path.join(directory, name + ".rs"), os.path.join(directory, name, "mod.rs")]
                    found = [c for c in candidates if os.path.isfile(c)]
                    if not found:
                        unreadable(f"{os.path.relpath(path, self.repo)}: no file for `mod {name};`")
                    child = found[0]
                    if os.path.basename(child) == "mod.rs":
                        grandchild_dir = os.path.dirname(child)
                    else:
                        grandchild_dir = os.path.join(os.path.dirname(child), name)
                    self.read(child, inner + (name,), grandchild_dir)
                elif toks[i + 2] == "{":
                    self.modules[inner + (name,)] = path
            if tok == "{":
                opens_mod = i >= 2 and toks[i - 2] == "mod" and is_ident(toks[i - 1])
                stack.append(toks[i - 1] if opens_mod else None)
            elif tok == "}" and stack:
                stack.pop()

    def scan(self):
        """Each file's `use` paths (module, segments, alias, public) and other paths (module, segments)."""
        scanned = {}
        for path, (file_module, toks) in self.files.items():
            uses, refs, stack = [], [], []
            i = 0
            while i < len(toks):
                tok = toks[i]
                module = file_module + tuple(name for name in stack if name)
                if tok == "use":
                    public = is_public(toks, i)
                    paths, i = use_paths(toks, i + 1)
                    uses.extend((module, segs, alias, public) for segs, alias in paths)
                    continue
                if tok == "{":
                    opens_mod = i >= 2 and toks[i - 2] == "mod" and is_ident(toks[i - 1])
                    stack.append(toks[i - 1] if opens_mod else None)
                elif tok == "}" and stack:
                    stack.pop()
                elif is_ident(tok) and i + 1 < len(toks) and toks[i + 1] == "::" and (i == 0 or toks[i - 1] != "::"):
                    segs = [tok]
                    j = i + 1
                    while j + 1 < len(toks) and toks[j] == "::" and is_ident(toks[j + 1]):
                        segs.append(toks[j + 1])
                        j += 2
                    refs.append((module, segs))
                    i = j
                    continue
                i += 1
            scanned[path] = (uses, refs)
        return scanned

    def imports(self):
        """(from file, to file, name or None) for every import this crate's files make."""
        scanned = self.scan()
        aliases = {}  # file -> {name: module}, the modules brought into scope by `use`
        self.handed_on = {}  # module -> {name: (module that holds it, its name there)}, from `pub use`
        for path, (uses, _) in scanned.items():
            aliases[path] = {}
            for module, segs, alias, _ in uses:
                walk = self.resolve(module, segs, {})
                if walk and walk[-1][1] in (None, "self"):
                    aliases[path][alias or (segs[-2] if segs[-1] == "self" else segs[-1])] = walk[-1][0]
        for path, (uses, _) in scanned.items():
            for module, segs, alias, public in uses:
                walk = self.resolve(module, segs, aliases[path])
                if public and walk and walk[-1][1] not in (None, "self", "*"):
                    target, name = walk[-1]
                    self.handed_on.setdefault(module, {})[alias or name] = (target, name)
        found = []
        for path, (uses, refs) in scanned.items():
            for module, segs, _, public in uses:
                walk = self.resolve(module, segs, aliases[path])
                if public and walk and is_below(walk[-1][0], module):
                    continue  # a module handing on its own children's names
                found.extend(self.edges(path, module, walk))
            for module, segs in refs:
                found.extend(self.edges(path, module, self.resolve(module, segs, aliases[path])))
        return found

    def resolve(self, module, segs, aliases):
        """The modules a path walks through, each with the segment it takes next (None at the end)."""
        first, rest = segs[0], list(segs[1:])
        if first == "crate":
            base = ()
        elif first == "self":
            base = module
        elif first == "super":
            base = module[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif module + (first,) in self.modules:
            base = module + (first,)
        elif first in aliases:
            base = aliases[first]
        else:
            return None  # another crate, std, a type or an enum
        walk = []
        while rest and base + (rest[0],) in self.modules:
            walk.append((base, rest[0]))
            base, rest = base + (rest[0],), rest[1:]
        walk.append((base, rest[0] if rest else None))
        return walk

    def edges(self, path, module, walk):
        walk = list(walk or [])
        # A name taken from a module that only hands it on is also taken from where it is defined.
        seen = set()
        while walk[-1:] and walk[-1][1] in self.handed_on.get(walk[-1][0], {}) and walk[-1] not in seen:
            seen.add(walk[-1])
            walk.append(self.handed_on[walk[-1][0]][walk[-1][1]])
        for target, name in walk:
            if target == module[: len(target)]:
                continue  # the module itself or one of its ancestors
            target_file = self.modules[target]
            if target_file != path:
                yield path, target_file, name


def circles(graph):
    """Strongly connected components of more than one file (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    names = {}  # (from, to) -> names
    files = set()
    for crate in CRATES:
        for root in ROOT_FILES:
            root_file = os.path.join(repo, crate, "src", root)
            if not os.path.isfile(root_file):
                continue
            tree = Crate(repo, root_file)
            files.update(tree.files)
            for source, target, name in tree.imports():
                key = (os.path.relpath(source, repo), os.path.relpath(target, repo))
                names.setdefault(key, set())
                if name and name not in ("self", "*"):
                    names[key].add(name)
    graph = {}
    for source, target in names:
        graph.setdefault(source, set()).add(target)
    found = circles(graph)
    for number, component in enumerate(found, 1):
        print(f"circle {number}: {len(component)} files: {', '.join(component)}")
        for source in component:
            for target in sorted(graph[source] & set(component)):
                taken = ", ".join(sorted(names[(source, target)])) or "(the module)"
                print(f"  {source} -> {target}: {taken}")
    crates = ", ".join(f"{c}/src" for c in CRATES)
    if found:
        print(f"import-circles: {len(found)} circle(s) among the modules of {crates}: move the shared names "
              "down into a module both sides can import", file=sys.stderr)
        return 1
    print(f"import-circles: no circle among the {len(files)} module files of {crates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
