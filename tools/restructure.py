#!/usr/bin/env python3
"""Move ``optimizer``'s flat modules into stage subpackages and rewrite every import (issue 18).

Run from the repository root: ``python tools/restructure.py`` (``--dry-run`` lists what it would do).
It is idempotent, and meant to be run again after merging a branch written against the flat layout:

1. ``git mv`` each module of :data:`MOVES` (old name -> new name) whose old file exists and whose
   new file does not, and creates the stage packages' ``__init__.py``; ``optimizer/templates``
   moves to ``optimizer/report/templates``.
2. Rewrites the import statements of every ``.py`` file under ``optimizer/``, ``tests/`` and
   ``benchmarks/`` to absolute imports of the new names. Relative imports are resolved against the
   file's OLD location when it was moved (so a merged file still carrying ``from .load import x``
   is fixed), else against where it is. Names that moved to another module (:data:`SYMBOL_MOVES`)
   are imported from there. Only the lines of import statements (found with :mod:`ast`) change.
3. Rewrites dotted references in the other lines (``"optimizer.output.X"`` monkeypatch targets,
   ``optimizer.solvers.kernels.respond`` in docstrings) and ``optimizer/x.py`` paths in comments,
   in those files and in the Markdown docs (there also `` `solvers/kernels.py` ``, a path inside
   the package in backticks).
4. In ``tests/``: test helpers are imported as ``tests.tiny_world`` (tests is a package); the
   ``try: from tiny_world ... except ImportError: from tests.tiny_world ...`` pairs collapse to one
   import and ``sys.path.insert(0, <tests dir>)`` lines go.
5. Sorts the imports of the files it changed with ``ruff --select I`` (and drops the imports left
   unused in test files that lost their ``sys.path`` line) when ruff is installed.

A module that is not in :data:`MOVES` (a new one from another branch) gets its imports rewritten
but stays where it is: add a row to :data:`MOVES` to move it.
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "optimizer"

# old module -> new module: the one table of the move
MOVES: dict[str, str] = {
    # core: what every stage shares (imports nothing of ours)
    "optimizer.errors": "optimizer.core.errors",
    "optimizer.schemas": "optimizer.core.schemas",
    "optimizer.config": "optimizer.core.config",
    "optimizer.allocator": "optimizer.core.allocator",
    "optimizer.interrupt": "optimizer.core.interrupt",
    "optimizer.keyed_hash": "optimizer.core.keyed_hash",
    "optimizer.repurchase": "optimizer.scoring.repurchase",
    "optimizer.solvers.exact_margins": "optimizer.solve.lagrangian.exact_margins",
    "optimizer.baselines": "optimizer.scoring.baselines",
    "optimizer.holdout": "optimizer.model.holdout",
    "optimizer.measure": "optimizer.apps.measure",
    "optimizer.outcomes": "optimizer.apps.outcomes",
    # io: the readers and writers of files
    "optimizer.load": "optimizer.io.load",
    "optimizer.validate": "optimizer.io.validate",
    "optimizer.scores_stream": "optimizer.io.scores_stream",
    "optimizer.memory": "optimizer.io.memory",
    "optimizer.history": "optimizer.io.history",
    "optimizer.output": "optimizer.io.runfolder",
    "optimizer.runview": "optimizer.io.runview",
    # scoring: features and the models that predict redemption, value and lifetime value
    "optimizer.features": "optimizer.scoring.features",
    "optimizer.feature_kernels": "optimizer.scoring._feature_kernels",
    "optimizer.affinity": "optimizer.scoring.affinity",
    "optimizer.propensity": "optimizer.scoring.propensity",
    "optimizer.response": "optimizer.scoring.response",
    "optimizer.scoring": "optimizer.scoring.fit",
    "optimizer.bgnbd": "optimizer.scoring.bgnbd",
    "optimizer.gamma_gamma": "optimizer.scoring.gamma_gamma",
    "optimizer.clv": "optimizer.scoring.clv",
    "optimizer.mle": "optimizer.scoring.mle",
    "optimizer.candidates": "optimizer.scoring._pair_kernels",
    # model: the assignment problem as data
    "optimizer.eligibility": "optimizer.model.eligibility",
    "optimizer.problem": "optimizer.model.problem",
    # solve: the solvers; the scale method with its kernels in lagrangian/
    "optimizer.solvers": "optimizer.solve",
    "optimizer.solvers.exact": "optimizer.solve.exact",
    "optimizer.solvers.lp": "optimizer.solve.lp",
    "optimizer.solvers.polish": "optimizer.solve.polish",
    "optimizer.solvers.lagrangian": "optimizer.solve.lagrangian.method",
    "optimizer.solvers.critical": "optimizer.solve.lagrangian.critical",
    "optimizer.solvers.kernels": "optimizer.solve.lagrangian._kernels",
    "optimizer.solvers.refill_kernels": "optimizer.solve.lagrangian._refill_kernels",
    "optimizer.solvers.repair": "optimizer.solve.lagrangian.repair",
    "optimizer.solvers.greedy": "optimizer.solve.lagrangian.greedy",
    "optimizer.solvers.prices": "optimizer.solve.lagrangian.targets",
    "optimizer.selection": "optimizer.solve.lagrangian.start",
    # report: what planners read
    "optimizer.report": "optimizer.report.page",
    "optimizer.compare": "optimizer.report.compare",
    "optimizer.charts": "optimizer.report.charts",
    # apps: the applications on top (cli.py and __main__.py stay at the top)
    "optimizer.pipeline": "optimizer.apps.pipeline",
    "optimizer.sweep": "optimizer.apps.sweep",
    "optimizer.explain": "optimizer.apps.explain",
    "optimizer.backtest": "optimizer.apps.backtest",
    "optimizer.synthetic": "optimizer.apps.synthetic",
    # check: the independent verifier, one package (imports only core and io)
    "optimizer.check": "optimizer.check.verify",
    "optimizer.check_base": "optimizer.check.base",
    "optimizer.check_rules": "optimizer.check.rules",
    "optimizer.check_outputs": "optimizer.check.outputs",
    "optimizer.check_copies": "optimizer.check.copies",
    "optimizer.check_controls": "optimizer.check.controls",
    "optimizer.check_flights": "optimizer.check.flights",
    "optimizer.check_stability": "optimizer.check.stability",
    "optimizer.check_campaign": "optimizer.check.campaign",
}

# (module, name) -> module: names that moved out of their module (content splits, made by hand in
# the restructure commits; this table only redirects imports of them).
SYMBOL_MOVES: dict[tuple[str, str], str] = {
    # the output tables are built from the problem and the solution: not io's business
    ("optimizer.output", "assignments_frame"): "optimizer.report.tables",
    ("optimizer.output", "offers_summary_frame"): "optimizer.report.tables",
    ("optimizer.output", "customers_frame"): "optimizer.report.tables",
    # the bound over all candidates belongs with the solver's bounds (it prices candidates)
    ("optimizer.candidates", "best_totals"): "optimizer.solve.lagrangian.bounds",
    ("optimizer.candidates", "virtual_totals"): "optimizer.solve.lagrangian.bounds",
    # one definition of binding, shared by io (run views) and the solvers
    ("optimizer.problem", "binding"): "optimizer.core.numerics",
    ("optimizer.problem", "BINDING_PRICE"): "optimizer.core.numerics",
}

PACKAGE_DOCS: dict[str, str] = {
    "optimizer.core": "The foundation every stage shares: errors, table schemas, the scenario, "
                      "numerics, allocator settings.\n\nImports nothing else of ``optimizer``.",
    "optimizer.io": "The readers and writers of files: input tables (load, validate, stream), the "
                    "run folder, the history.",
    "optimizer.scoring": "Point-in-time features and the models that predict each pair's "
                         "redemption and value and each customer's lifetime value.",
    "optimizer.model": "The assignment problem as data: eligibility of pairs and the problem's "
                       "blocks, offers, caps and budgets.",
    "optimizer.solve.lagrangian": "The scale method: Lagrangian prices, each customer's best "
                                  "response (compiled kernels), repair, bounds, starting prices.",
    "optimizer.report": "What planners read: the run report, the comparison of runs, charts, "
                        "output tables.",
    "optimizer.check": "``offeropt check``: the independent verifier of a run folder against the "
                       "raw inputs and the scenario (every hard rule, every published figure).\n\n"
                       "Imports only ``optimizer.core`` and ``optimizer.io``, never the code that "
                       "planned the run.",
    "optimizer.apps": "The applications: the pipeline (the one wiring of the stages), sweep, "
                      "explain, backtest and the synthetic demo data.",
}

TEMPLATES = ("optimizer/templates", "optimizer/report/templates")
SOURCE_DIRS = ("optimizer", "tests", "benchmarks")
DOC_FILES = ("README.md", "docs", "benchmarks/README.md")
WIDTH = 100

ALL_SYMBOL_MOVES = dict(SYMBOL_MOVES)
for (_mod, _name), _target in SYMBOL_MOVES.items():
    ALL_SYMBOL_MOVES.setdefault((MOVES.get(_mod, _mod), _name), _target)
REVERSE = {new: old for old, new in MOVES.items()}


# ---------------------------------------------------------------- modules and files

def module_of(path: Path) -> str:
    """The dotted module name of a file below ROOT (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def file_of(module: str, package: bool = False) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if package else base.with_suffix(".py")


OLD_PACKAGES = {old for old in MOVES if any(o.startswith(old + ".") for o in MOVES)}


def old_file(old: str) -> Path | None:
    """The file of an old module, if it is (still or again) in the tree."""
    path = file_of(old, package=old in OLD_PACKAGES)
    return path if path.is_file() else None


def tree_modules() -> set[str]:
    return {module_of(p) for p in (ROOT / PACKAGE).rglob("*.py")}


def git(*args: str, dry: bool) -> None:
    print("git", " ".join(args))
    if not dry:
        subprocess.run(["git", *args], cwd=ROOT, check=True)


def move_files(dry: bool) -> list[str]:
    """Step 1: the file moves; returns warnings for what needs a hand."""
    warnings: list[str] = []
    for old, new in MOVES.items():
        src = old_file(old)
        if src is None:
            continue
        dst = file_of(new, package=old in OLD_PACKAGES)
        if dst.is_file():
            warnings.append(f"both {src.relative_to(ROOT)} and {dst.relative_to(ROOT)} exist: "
                            "merge the old one into the new one by hand, then delete it")
            continue
        if not dry:
            dst.parent.mkdir(parents=True, exist_ok=True)
        git("mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)), dry=dry)
    src_dir, dst_dir = ROOT / TEMPLATES[0], ROOT / TEMPLATES[1]
    if src_dir.is_dir():
        for src in sorted(p for p in src_dir.rglob("*") if p.is_file() and
                          "__pycache__" not in p.parts):
            dst = dst_dir / src.relative_to(src_dir)
            if not dst.exists():
                if not dry:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                git("mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)), dry=dry)
            elif dst.read_bytes() == src.read_bytes():
                git("rm", "-q", str(src.relative_to(ROOT)), dry=dry)
            else:
                warnings.append(f"both {src.relative_to(ROOT)} and {dst.relative_to(ROOT)} "
                                "exist and differ: merge by hand")
    packages = {new.rsplit(".", i)[0] for new in MOVES.values() for i in range(1, new.count("."))}
    for package in sorted(packages - {MOVES[old] for old in OLD_PACKAGES}):
        init = file_of(package, package=True)
        if init.is_file():
            continue
        print("create", init.relative_to(ROOT))
        if not dry:
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(f'"""{PACKAGE_DOCS[package]}"""\n', encoding="utf-8")
            git("add", str(init.relative_to(ROOT)), dry=dry)
    return warnings


# ---------------------------------------------------------------- name resolution

class Names:
    """What is a module: the old names (:data:`MOVES`) and the modules of the current tree."""

    def __init__(self) -> None:
        self.tree = tree_modules() | set(MOVES.values())

    def is_new(self, module: str) -> bool:
        return module in self.tree and module not in MOVES

    def known(self, module: str) -> bool:
        return module in MOVES or module in self.tree

    def module(self, module: str) -> str:
        """The new name of a module name (itself when it did not move)."""
        return MOVES.get(module, module)

    def member(self, module: str, name: str) -> tuple[str, str]:
        """Where ``from module import name`` now imports from: (module, name)."""
        full = f"{module}.{name}"
        if full in MOVES:  # a submodule, by its old name: the old meaning wins
            new = MOVES[full]
            parent, _, last = new.rpartition(".")
            return parent, last
        if self.is_new(full):
            return module, name
        if (module, name) in ALL_SYMBOL_MOVES:
            return ALL_SYMBOL_MOVES[(module, name)], name
        return self.module(module), name

    def dotted(self, text: str) -> str:
        """A dotted reference ``optimizer.a.b.c`` in text, with the new names."""
        parts = text.split(".")
        for i in range(len(parts), 1, -1):
            prefix = ".".join(parts[:i])
            if prefix in MOVES:
                if i == len(parts) and prefix in self.tree:
                    return text  # a bare name that is both old and new (a package now)
                rest = parts[i:]
                if rest and (prefix, rest[0]) in ALL_SYMBOL_MOVES:
                    return ".".join([ALL_SYMBOL_MOVES[(prefix, rest[0])], *rest])
                if rest and self.is_new(f"{prefix}.{rest[0]}"):
                    return text
                return ".".join([MOVES[prefix], *rest])
            if prefix in self.tree:
                rest = parts[i:]
                if rest and (prefix, rest[0]) in ALL_SYMBOL_MOVES:
                    return ".".join([ALL_SYMBOL_MOVES[(prefix, rest[0])], *rest])
                return text
        return text


def resolve_relative(node: ast.ImportFrom, here: str, is_package: bool, names: Names) -> str:
    """The absolute module of a relative ``from`` import in module ``here``, trying the file's
    old name first (a moved file still written for the flat layout), then its current one."""
    def absolute(module: str) -> str:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        return f"{base}.{node.module}" if node.module else base

    candidates = [absolute(REVERSE.get(here, here)), absolute(here)]
    for candidate in candidates:
        if names.known(candidate) and (node.module or all(
                names.known(f"{candidate}.{a.name}") for a in node.names)):
            return candidate
    for candidate in candidates:
        if names.known(candidate):
            return candidate
    return candidates[0]


# ---------------------------------------------------------------- rewriting one file

def render_from(indent: str, module: str, aliases: list[tuple[str, str | None]]) -> str:
    items = [name if alias in (None, name) else f"{name} as {alias}" for name, alias in aliases]
    line = f"{indent}from {module} import {', '.join(items)}"
    if len(line) <= WIDTH:
        return line
    head = f"{indent}from {module} import ("
    lines, current = [], head
    pad = " " * len(head)
    for k, item in enumerate(items):
        piece = item + (")" if k == len(items) - 1 else ",")
        if current not in (head, pad) and len(current) + 1 + len(piece) > WIDTH:
            lines.append(current)
            current = pad + piece
        else:
            current += ("" if current in (head, pad) else " ") + piece
    lines.append(current)
    return "\n".join(lines)


def test_helpers() -> set[str]:
    return {p.stem for p in (ROOT / "tests").glob("*.py") if p.stem not in ("__init__", "conftest")}


def rewrite_import(node: ast.stmt, indent: str, here: str, is_package: bool, names: Names,
                   in_tests: bool, helpers: set[str]) -> str | None:
    """The new text of an import statement, or None when it stays as it is."""
    if isinstance(node, ast.Import):
        out, changed = [], False
        for a in node.names:
            target = a.name
            if in_tests and a.name in helpers:
                target = f"tests.{a.name}"
            elif a.name.split(".")[0] == PACKAGE:
                target = names.module(a.name)
            changed |= target != a.name
            if target != a.name and a.asname is None and "." in a.name:
                print(f"warning: {here}: `import {a.name}` became `import {target}`; "
                      "its attribute uses are rewritten as dotted references", file=sys.stderr)
            out.append(target if a.asname is None else f"{target} as {a.asname}")
        return f"{indent}import {', '.join(out)}" if changed else None
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        module = resolve_relative(node, here, is_package, names)
    else:
        module = node.module or ""
        if in_tests and module.split(".")[0] in helpers:
            module = "tests." + module
    if module.split(".")[0] not in (PACKAGE, "tests") or (
            module.startswith("tests") and not node.level and module == node.module):
        return None
    groups: dict[str, list[tuple[str, str | None]]] = {}
    for a in node.names:
        if a.name == "*":
            target, name = names.module(module), "*"
        else:
            target, name = names.member(module, a.name)
        alias = a.asname if a.asname else (a.name if name != a.name else None)
        groups.setdefault(target, []).append((name, alias))
    if not node.level and list(groups) == [module] and module == node.module and all(
            name == a.name for (name, _), a in zip(groups[module], node.names)):
        return None
    return "\n".join(render_from(indent, target, aliases) for target, aliases in groups.items())


DOTTED = re.compile(r"(?<![\w.])optimizer(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w/])optimizer/(?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.py\b")


def rewrite_text(text: str, names: Names) -> str:
    def dotted(m: re.Match[str]) -> str:
        return names.dotted(m.group(0))

    def path(m: re.Match[str]) -> str:
        module = m.group(0)[: -len(".py")].replace("/", ".")
        package = module.endswith(".__init__")
        module = module.removesuffix(".__init__")
        if module not in MOVES or package != (module in OLD_PACKAGES):
            return m.group(0)
        return MOVES[module].replace(".", "/") + ("/__init__.py" if package else ".py")

    return PATH.sub(path, DOTTED.sub(dotted, text))


def _collapsible_try(node: ast.Try) -> bool:
    imports = (ast.Import, ast.ImportFrom)
    return (len(node.handlers) == 1 and not node.orelse and not node.finalbody
            and all(isinstance(s, imports) for s in node.body)
            and all(isinstance(s, imports) for s in node.handlers[0].body)
            and isinstance(node.handlers[0].type, ast.Name)
            and node.handlers[0].type.id in ("ImportError", "ModuleNotFoundError"))


def _sys_path_insert(node: ast.stmt, source: str) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "sys.path.insert"
            and "__file__" in (ast.get_source_segment(source, node) or ""))


def rewrite_file(path: Path, names: Names, helpers: set[str]) -> tuple[bool, bool]:
    """Rewrite one Python file in place: (whether it changed, whether a ``sys.path`` line went)."""
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        print(f"warning: {path.relative_to(ROOT)} does not parse ({exc}); left alone",
              file=sys.stderr)
        return False, False
    lines = source.splitlines(keepends=True)
    here = module_of(path)
    is_package = path.name == "__init__.py"
    in_tests = path.relative_to(ROOT).parts[0] == "tests"
    edits: list[tuple[int, int, str | None]] = []  # (first line, last line, new text), 0-based
    covered: set[int] = set()

    def whole_lines(node: ast.stmt) -> bool:
        first, last = node.lineno - 1, node.end_lineno - 1
        before = lines[first][: node.col_offset]
        after = lines[last][node.end_col_offset:].strip()
        return not before.strip() and (not after or after.startswith("#"))

    def new_text(node: ast.stmt) -> str | None:
        indent = lines[node.lineno - 1][: node.col_offset]
        text = rewrite_import(node, indent, here, is_package, names, in_tests, helpers)
        if text is not None:
            trailing = lines[node.end_lineno - 1][node.end_col_offset:].strip()
            if in_tests and re.fullmatch(r"#\s*noqa:?\s*E402", trailing):
                trailing = ""  # the sys.path line that needed it goes
            if trailing:
                text += "  " + trailing
        return text

    def rendered(node: ast.stmt, indent: str) -> str:
        """An import statement as it will read, at ``indent``."""
        text = rewrite_import(node, indent, here, is_package, names, in_tests, helpers)
        if text is not None:
            return text
        if isinstance(node, ast.Import):
            return indent + "import " + ", ".join(
                a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
        assert isinstance(node, ast.ImportFrom)
        return render_from(indent, "." * node.level + (node.module or ""),
                           [(a.name, a.asname) for a in node.names])

    for node in ast.walk(tree):
        if in_tests and isinstance(node, ast.Try) and _collapsible_try(node):
            indent = lines[node.lineno - 1][: node.col_offset]
            body = [rendered(s, indent) for s in node.body]
            handler = [rendered(s, indent) for s in node.handlers[0].body]
            if [ast.dump(ast.parse(t.strip())) for t in body] == \
                    [ast.dump(ast.parse(t.strip())) for t in handler]:
                edits.append((node.lineno - 1, node.end_lineno - 1, "\n".join(handler)))
                covered.update(range(node.lineno - 1, node.end_lineno))
        elif in_tests and isinstance(node, ast.stmt) and _sys_path_insert(node, source):
            edits.append((node.lineno - 1, node.end_lineno - 1, None))
            covered.update(range(node.lineno - 1, node.end_lineno))
    import_lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        span = range(node.lineno - 1, node.end_lineno)
        import_lines.update(span)
        if covered & set(span):
            continue
        text = new_text(node)
        if text is None:
            continue
        if not whole_lines(node):
            print(f"warning: {path.relative_to(ROOT)}:{node.lineno}: import shares its line "
                  "with other code; rewrite it by hand", file=sys.stderr)
            continue
        edits.append((node.lineno - 1, node.end_lineno - 1, text))
    out: list[str] = []
    edit_at = {first: (last, text) for first, last, text in edits}
    k = 0
    while k < len(lines):
        if k in edit_at:
            last, text = edit_at[k]
            if text is not None:
                out.append(text + "\n")
            k = last + 1
            continue
        out.append(lines[k] if k in import_lines else rewrite_text(lines[k], names))
        k += 1
    new = "".join(out)
    if new != source:
        path.write_text(new, encoding="utf-8")
    return new != source, any(text is None for _, _, text in edits)


SHORT_PATH = re.compile(r"`((?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.py)`")


def rewrite_doc(path: Path, names: Names) -> bool:
    """Markdown: dotted names and paths as in code, and `` `solvers/kernels.py` `` (a path inside
    the package, in backticks) too."""
    def short(m: re.Match[str]) -> str:
        module = f"{PACKAGE}.{m.group(1)[: -len('.py')].replace('/', '.')}"
        if module not in MOVES or module in OLD_PACKAGES:
            return m.group(0)
        return f"`{MOVES[module].removeprefix(PACKAGE + '.').replace('.', '/')}.py`"

    source = path.read_text(encoding="utf-8")
    new = SHORT_PATH.sub(short, rewrite_text(source, names))
    if new != source:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def python_files() -> list[Path]:
    files: list[Path] = []
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts and "__pycache__" not in f.parts]


def doc_files() -> list[Path]:
    files: list[Path] = []
    for name in DOC_FILES:
        path = ROOT / name
        files += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.is_file() else []
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="only list the file moves")
    args = parser.parse_args()
    warnings = move_files(args.dry_run)
    if args.dry_run:
        for w in warnings:
            print("warning:", w, file=sys.stderr)
        return 0
    names = Names()
    helpers = test_helpers()
    changed, unpathed = [], []
    for path in python_files():
        did, removed_sys_path = rewrite_file(path, names, helpers)
        changed += [path] if did else []
        unpathed += [str(path)] if removed_sys_path else []
    changed_docs = [p for p in doc_files() if rewrite_doc(p, names)]
    for p in changed + changed_docs:
        print("rewrote", p.relative_to(ROOT))
    ruff = shutil.which("ruff")
    if changed and ruff:
        subprocess.run([ruff, "check", "--quiet", "--fix", "--select", "I", "--exit-zero",
                        *map(str, changed)], cwd=ROOT, check=True)
        if unpathed:  # their `sys` / `Path` imports may now be unused
            subprocess.run([ruff, "check", "--quiet", "--fix", "--select", "F401", "--exit-zero",
                            *unpathed], cwd=ROOT, check=True)
    elif changed:
        print("note: ruff not found; sort the imports of the rewritten files with "
              "`ruff check --fix --select I`", file=sys.stderr)
    leftovers = sorted(str(p.relative_to(ROOT)) for old in MOVES if (p := old_file(old)))
    for w in warnings:
        print("warning:", w, file=sys.stderr)
    for p in leftovers:
        print(f"warning: {p} is still in the old layout", file=sys.stderr)
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
