"""The house's layering, checked on the source: who may import whom, and how long a module may grow.

``schemas`` (the contract) and ``access`` (Kafka topics and security, secret masking) sit at the bottom;
``connectors`` and ``streams`` build on them and never on each other; the CLI package ``haltwatch`` sits on
top and nothing imports it. Inside ``connectors`` the family-neutral modules import no chain family's package,
except the one dispatcher that turns ``--family`` into a connector.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("evm", "solana", "bitcoin", "tron")
MAY_IMPORT = {
    "schemas": {"schemas"},
    "access": {"access", "schemas"},
    "connectors": {"connectors", "access", "schemas"},
    "streams": {"streams", "access", "schemas"},
}
FAMILY_DISPATCHER = "connectors/run_feed.py"
"""Imports each family inside ``feed_for``, when a connector of that family is asked for."""
MAX_LINES = 400


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> list[tuple[str, int]]:
    """Every absolute module name ``path`` imports (at any depth: a lazy import counts too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_their_own_layer_and_those_below(package: str) -> None:
    ours = set(MAY_IMPORT) | {"haltwatch"}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in modules(package) for name, line in imported(path)
             if name.split(".")[0] in ours and name.split(".")[0] not in MAY_IMPORT[package]]
    assert wrong == []


def test_family_neutral_connector_modules_import_no_chain_family() -> None:
    shared = [p for p in (ROOT / "connectors").glob("*.py") if str(p.relative_to(ROOT)) != FAMILY_DISPATCHER]
    assert shared, "connectors/ has family-neutral modules"
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in shared for name, line in imported(path)
             if name.split(".")[:2] in (["connectors", family] for family in FAMILIES)]
    assert wrong == []


def test_one_chain_family_imports_no_other() -> None:
    wrong = []
    for family in FAMILIES:
        others = [f for f in FAMILIES if f != family]
        for path in modules(f"connectors/{family}"):
            wrong += [f"{path.relative_to(ROOT)}:{line} imports {name}" for name, line in imported(path)
                      if name.split(".")[:2] in (["connectors", other] for other in others)]
    assert wrong == []


@pytest.mark.parametrize("package", ["streams", "connectors", "access", "schemas", "haltwatch"])
def test_no_module_grows_past_the_house_limit(package: str) -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules(package) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
