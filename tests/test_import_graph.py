"""The import rules of the layout, read from the source with `ast` (nothing is imported):

- a shared module (orchestration/lib/, the modules directly under orchestration/defs/, the API, the
  service runner) imports no domain (orchestration/defs/<domain>/): a domain's code belongs to it;
  what two domains share moves to lib/ or to the shared modules under defs/;
- the erasure assets (orchestration/defs/privacy/) reach the other domains through asset keys and
  resources (a domain's resources.py, which Dagster hands over), not through their Python;
- ml/ imports neither Dagster nor orchestration/: `orchestration/defs/ml` wraps it;
- no production module imports the sample generator (orchestration/sample_data/), which imports no
  domain either; `tessera generate` (orchestration/cli.py) is its command line.

Composition roots (orchestration/definitions.py, each domain's definitions.py, the CLI) may import
anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestration", "ml", "expectations")
DOMAINS = "orchestration.defs."


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (functions included), as dotted names; `from a
    import b` counts as a.b too, since b may be a module."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path) for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


GRAPH = _graph()


def _domain(module: str) -> str | None:
    """The domain a module belongs to: orchestration.defs.<domain>.<module>, or None."""
    if not module.startswith(DOMAINS):
        return None
    rest = module.removeprefix(DOMAINS).split(".")
    package = ROOT.joinpath("orchestration", "defs", rest[0])
    return rest[0] if package.is_dir() else None


def _is_shared(module: str) -> bool:
    return (
        module.startswith(("orchestration.lib.", "orchestration.api"))
        or module == "orchestration.services"
        or (module.startswith(DOMAINS) and _domain(module) is None)
    )


def _is_composition_root(module: str) -> bool:
    return module in ("orchestration.definitions", "orchestration.cli") or (
        _domain(module) is not None and module.endswith(".definitions")
    )


def _assert_none(rule) -> None:
    """No (module, imported module) pair of the graph satisfies `rule`; else each is listed."""
    found = sorted(
        f"{module} imports {target}" for module, targets in GRAPH.items() for target in targets if rule(module, target)
    )
    assert not found, "\n".join(found)


def test_the_graph_covers_the_packages():
    assert {
        "orchestration.lib.warehouse",
        "orchestration.defs.partitions",
        "orchestration.defs.resources",
        "orchestration.defs.ingest.assets",
        "ml.clustering",
        "expectations.runner",
    } <= set(GRAPH)
    assert {_domain(m) for m in GRAPH} - {None} == {
        "dbt",
        "experiments",
        "exports",
        "identity",
        "ingest",
        "ml",
        "privacy",
        "quality",
        "realtime",
        "segments",
    }


def test_no_shared_module_imports_a_domain():
    _assert_none(lambda module, target: _is_shared(module) and _domain(target) is not None)


def test_the_erasure_assets_reach_other_domains_through_asset_keys():
    def rule(module: str, target: str) -> bool:
        resource = target.split(".")[3:4] == ["resources"]
        return _domain(module) == "privacy" and _domain(target) not in (None, "privacy") and not resource

    _assert_none(rule)


def test_ml_imports_neither_dagster_nor_orchestration():
    def rule(module: str, target: str) -> bool:
        return module.split(".")[0] == "ml" and target.split(".")[0] in ("dagster", "dagster_dbt", "orchestration")

    _assert_none(rule)


def test_production_code_never_imports_the_sample_generator():
    def rule(module: str, target: str) -> bool:
        generator = target == "orchestration.sample_data" or target.startswith("orchestration.sample_data.")
        return generator and not module.startswith("orchestration.sample_data") and module != "orchestration.cli"

    _assert_none(rule)


def test_the_sample_generator_imports_no_domain():
    def rule(module: str, target: str) -> bool:
        return module.startswith("orchestration.sample_data") and _domain(target) is not None

    _assert_none(rule)


def test_a_domain_registers_its_own_assets():
    """A domain's definitions.py registers the assets of its own domain, not another's."""

    def rule(module: str, target: str) -> bool:
        return (
            _is_composition_root(module)
            and _domain(module) is not None
            and target.endswith(".assets")
            and _domain(target) not in (None, _domain(module))
        )

    _assert_none(rule)


def test_only_composition_roots_import_definitions():
    """A domain's definitions.py is what the code location merges; nothing but a root reads it."""

    def rule(module: str, target: str) -> bool:
        return (
            _domain(target) is not None
            and target.endswith(".definitions")
            and _domain(target) != _domain(module)
            and not _is_composition_root(module)
        )

    _assert_none(rule)


# Installed only by `make install-dev` (the dev, spark and production extras); `make run` has none.
EXTRAS_ONLY = (
    "dagster_postgres",
    "psycopg2",
    "pyspark",
    "pyhive",
    "recordlinkage",
    "lifetimes",
    "playwright",
    "pytest",
    "dbt.adapters.spark",
)

LEAN_SESSION = """
import importlib.abc, sys
from pathlib import Path

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {extras!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra that `make run` does not install)")
        return None

sys.meta_path.insert(0, Absent())
from orchestration.cli import ensure_dagster_home
ensure_dagster_home(Path({home!r}))
import orchestration.definitions, orchestration.api.app, orchestration.services
print("lean ok")
"""


def test_what_make_run_does_needs_none_of_the_extras(tmp_path):
    """`make run` installs requirements.lock only: the CLI, the code location, the API and the
    instance set-up it runs must import without the dev, spark and production extras."""
    import subprocess
    import sys

    script = LEAN_SESSION.format(extras=EXTRAS_ONLY, home=str(tmp_path / "dagster_home"))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("lean ok")
