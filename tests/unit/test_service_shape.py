"""Every service has the same shape (README, "How it is built"): a folder with ``service.py`` (the nameko class,
its one entry point) and ``config.yml``; a service that keeps data also ``models.py``, ``repository.py``,
``schemas.py`` and ``rules.py``, every table it keeps is declared in its own folder, so that the folder shows
what it owns, and its entrypoints write no SQL: they ask the repository."""
import ast
import importlib
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from shiori.commands.serve import SERVICE_NAMES, service_class
from shiori.db import Database

REPO = Path(__file__).resolve().parents[2]
KEEPS_DATA = ("catalog", "loans", "notices", "patrons", "statistics")
GATEWAYS = ("gateway", "opac")
SQL_BUILDERS = {"select", "update", "delete", "insert", "text"}


def databases(name):
    cls = service_class(name)
    return [value for value in vars(cls).values() if isinstance(value, Database)]


def test_the_services_are_the_ones_readme_describes():
    assert sorted(SERVICE_NAMES) == sorted(KEEPS_DATA + GATEWAYS)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(f"  {name}/" in readme for name in SERVICE_NAMES)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_service_has_its_entry_point_and_configuration(name):
    folder = REPO / "services" / name
    assert (folder / "service.py").is_file() and (folder / "config.yml").is_file()
    assert service_class(name).__module__ == f"services.{name}.service"


@pytest.mark.parametrize("name", KEEPS_DATA)
def test_a_service_that_keeps_data_has_its_models_repository_schemas_and_rules(name):
    folder = REPO / "services" / name
    assert [file for file in ("models.py", "repository.py", "schemas.py", "rules.py")
            if not (folder / file).is_file()] == []
    assert databases(name), f"{name} keeps no database"


@pytest.mark.parametrize("name", KEEPS_DATA)
def test_every_table_a_service_keeps_is_declared_in_its_own_folder(name):
    own_metadata = []
    for path in sorted((REPO / "services" / name).glob("*.py")):
        module = importlib.import_module(f"services.{name}.{path.stem}")
        own_metadata += [value.metadata for value in vars(module).values()
                         if isinstance(value, type) and value.__module__ == module.__name__
                         and isinstance(getattr(value, "metadata", None), MetaData)]
    assert [sorted(database.metadata.tables) for database in databases(name)
            if not any(database.metadata is metadata for metadata in own_metadata)] == []


@pytest.mark.parametrize("name", KEEPS_DATA)
def test_the_entrypoints_write_no_sql_but_the_health_probe(name):
    tree = ast.parse((REPO / "services" / name / "service.py").read_text(encoding="utf-8"))
    statements = [f"line {node.lineno}: {ast.unparse(node)[:60]}" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in SQL_BUILDERS and ast.unparse(node) != "select(1)"]
    assert statements == []


@pytest.mark.parametrize("name", GATEWAYS)
def test_a_gateway_keeps_no_database(name):
    assert databases(name) == []
