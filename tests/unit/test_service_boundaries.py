"""One direction between services (issue 12): a service imports another's errors and nothing else of it (shared
words are in ``shiori/``), the services and the kernel in ``shiori/`` never import the operators' commands
(``shiori.commands``), and the analyser of the catalogue's text is loaded by the catalogue alone."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(path.parent.name for path in (REPO / "services").glob("*/service.py"))
# The public catalogue's gateway is the staff gateway's public half in a process of its own: it serves the very
# same routes (services/gateway/public.py) and its pages the same way (services/gateway/pages.py), so it takes
# them from there.
SHARED_ROUTES = {("opac", "services.gateway.public"), ("opac", "services.gateway.pages")}


def imported_modules(path):
    """The absolute module names a file imports, with their line numbers (``from a import b`` counts as
    ``a.b`` too, since ``b`` may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def crossing(service, module):
    """Whether ``module`` is another service's code that is not its errors module."""
    parts = module.split(".")
    if parts[0] != "services" or len(parts) < 2 or parts[1] in (service, "__init__"):
        return False
    if len(parts) == 2:  # "from services.catalog import errors" is judged by its "services.catalog.errors"
        return False
    return parts[2] != "errors" and (service, ".".join(parts[:3])) not in SHARED_ROUTES


def test_services_import_nothing_of_one_another_but_errors():
    crossings = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for service in SERVICES
        for path in sorted((REPO / "services" / service).rglob("*.py"))
        for module, line in imported_modules(path)
        if crossing(service, module)
    ]
    assert crossings == []


def test_the_boundary_check_sees_a_crossing_import():
    assert crossing("loans", "services.catalog.schemas.ITEM_TYPES")
    assert crossing("gateway", "services.catalog.imports")
    assert not crossing("gateway", "services.catalog.errors")
    assert not crossing("loans", "services.loans.schemas")


def test_neither_services_nor_the_kernel_import_the_operators_commands():
    kernel_and_services = [*sorted((REPO / "shiori").glob("*.py")), *sorted((REPO / "services").rglob("*.py"))]
    kernel_and_services.remove(REPO / "shiori" / "__main__.py")  # python -m shiori: the commands' entry point
    reaching = [f"{path.relative_to(REPO)}:{line} imports {module}" for path in kernel_and_services
                for module, line in imported_modules(path)
                if module == "shiori.commands" or module.startswith("shiori.commands.")]
    assert reaching == []


def test_only_the_catalogue_loads_the_analyser():
    others = [service for service in SERVICES if service != "catalog"]
    probe = "; ".join([
        "import importlib, sys",
        *(f"importlib.import_module('services.{service}.service')" for service in others),
        "print('sudachipy' in sys.modules)",
    ])
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["False"]


def test_the_catalogue_builds_its_analyser_when_it_first_reads_a_text():
    probe = "; ".join([
        "import sys",
        "import services.catalog.service",
        "from services.catalog.text import reading",
        "print('sudachipy' in sys.modules)",
        "print(reading('夏目漱石'))",
        "print('sudachipy' in sys.modules)",
    ])
    built = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert built.stdout.split() == ["False", "なつめそうせき", "True"]
