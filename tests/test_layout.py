"""The package's shape: no import cycle among its modules, and benchmarks that use only public names."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level or inside functions)."""
    modules = {}
    for f in package.rglob("*.py"):
        name = ".".join(f.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = f
    graph = {}
    for name, f in modules.items():
        here = name if f.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                dep = f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                # A module's own package is imported before it anyway: that is not a cycle.
                if dep in modules and dep != name and not name.startswith(dep + "."):
                    found.add(dep)
        graph[name] = found
    return graph


def test_no_import_cycle_among_the_modules():
    graph = _imports(ROOT / "autoprune")
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path + [dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module, [module]) is None


def test_benchmarks_use_only_public_names():
    private = re.compile(r"from autoprune[\w.]* import .*\b_\w+|autoprune[\w.]*\._[a-z]\w*")
    offenders = [f"{f.name}: {line.strip()}" for f in (ROOT / "benchmarks").glob("*.py")
                 for line in f.read_text().splitlines() if private.search(line)]
    assert offenders == []
