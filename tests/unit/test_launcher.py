"""How many processes ``make run`` starts for each service (SHIORI_REPLICAS)."""
import pytest

from shiori.commands.launcher import System

POSTGRESQL = "postgresql+psycopg2://shiori@127.0.0.1:5432/catalog"


def replicas(tmp_path, **environ):
    return System({"SHIORI_DATA_DIR": str(tmp_path), **environ}).replicas()


def test_every_service_runs_once_unless_told_otherwise(tmp_path):
    counts = replicas(tmp_path, SHIORI_CATALOG_DATABASE_URL=POSTGRESQL)
    assert counts["catalog"] == counts["gateway"] == counts["opac"] == counts["loans"] == 1


def test_the_catalogue_on_postgresql_may_run_as_several_processes(tmp_path):
    counts = replicas(tmp_path, SHIORI_REPLICAS=" catalog=3", SHIORI_CATALOG_DATABASE_URL=POSTGRESQL)
    assert counts["catalog"] == 3 and counts["loans"] == 1


@pytest.mark.parametrize("setting", ["catalog", "catalog=0", "catalog=two", "catalog=17", "gateway=2", "notices=2",
                                     "library=2"])
def test_a_count_that_cannot_run_is_refused(tmp_path, setting):
    with pytest.raises(ValueError, match="SHIORI_REPLICAS: .* is not <service>=<1 to 16> for one of catalog"):
        replicas(tmp_path, SHIORI_REPLICAS=setting, SHIORI_CATALOG_DATABASE_URL=POSTGRESQL)


def test_replicas_on_sqlite_are_refused_since_sqlite_has_one_writer(tmp_path):
    with pytest.raises(ValueError, match="SQLite, which has one writer"):
        replicas(tmp_path, SHIORI_REPLICAS="catalog=2")
    assert replicas(tmp_path, SHIORI_REPLICAS="catalog=1")["catalog"] == 1
