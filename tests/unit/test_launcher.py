"""How many processes ``make run`` starts for each service (SHIORI_REPLICAS), and how it starts one again when
it exits: real processes, each a short Python program in place of a service."""
import sys
import time

import pytest

from shiori.commands import launcher
from shiori.commands.launcher import STARTUP_EXITS, Backoff, System, how_it_ended

# The suite runs monkey-patched, where a fork warns; the launcher itself never runs under eventlet.
pytestmark = pytest.mark.filterwarnings("ignore:Using fork:DeprecationWarning")

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


def test_the_wait_before_a_restart_doubles_from_half_a_second_to_thirty():
    backoff = Backoff()
    assert [backoff.wait_after(uptime=1) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_process_that_ran_a_minute_waits_half_a_second_again():
    backoff = Backoff()
    assert [backoff.wait_after(uptime=59) for _ in range(4)] == [0.5, 1, 2, 4]
    assert [backoff.wait_after(uptime=60), backoff.wait_after(uptime=3)] == [0.5, 1]


@pytest.mark.parametrize("returncode, said", [(3, "exited with code 3"), (0, "exited with code 0"),
                                              (-9, "was killed by SIGKILL"), (-11, "was killed by SIGSEGV"),
                                              (-50, "was killed by signal 50")])
def test_how_a_process_ended_is_told_by_its_code_or_signal(returncode, said):
    assert how_it_ended(returncode) == said


EXITS = "import sys; sys.exit(3)"
KILLED = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
SERVES = "import time; time.sleep(60)"
# Exits the first time it is started, then serves: the marker file, its argument, says it has run before.
EXITS_ONCE = ("import pathlib, sys, time\nmarker = pathlib.Path(sys.argv[1])\nif not marker.exists():\n"
              "    marker.touch()\n    sys.exit(3)\ntime.sleep(60)")


class StandInSystem(System):
    """Runs a short Python program in place of each service."""

    def __init__(self, tmp_path, **programs):
        super().__init__({"SHIORI_DATA_DIR": str(tmp_path)})
        self.programs = programs

    def command(self, service):
        program = self.programs[service]
        return [sys.executable, "-c", *([program] if isinstance(program, str) else program)]


@pytest.fixture
def stand_ins(tmp_path):
    systems = []

    def make(**programs):
        systems.append(StandInSystem(tmp_path, **programs))
        return systems[-1]

    yield make
    for system in systems:
        system.stop()


def exited(process):
    process.popen.wait(timeout=10)
    return process.started_at + 5  # as if noticed after five seconds' run: no steady run, no fresh back-off


def test_a_process_that_exits_is_started_again_after_its_wait_while_the_others_keep_running(stand_ins, capsys):
    system = stand_ins(loans=EXITS, catalog=SERVES)
    system.start("loans")
    system.start("catalog")
    loans, catalog = system.processes["loans"], system.processes["catalog"]
    first, now = loans.popen, exited(loans)

    system.supervise(now)
    assert loans.exits == 1 and loans.restart_at == now + 0.5
    system.supervise(now + 0.4)
    assert loans.popen is first
    system.supervise(now + 0.5)
    assert loans.popen is not first and loans.restart_at is None

    second_exit = exited(loans)
    system.supervise(second_exit)
    assert loans.exits == 2 and loans.restart_at == second_exit + 1
    assert catalog.popen.poll() is None and catalog.exits == 0

    said = "loans exited with code 3; starting it again in 0.5 s (exits so far: 1"
    assert said in capsys.readouterr().err
    assert said in (system.data_dir / "logs" / "launcher.log").read_text()

    system.stop()
    assert catalog.popen.poll() is not None


def test_a_killed_replica_is_told_by_its_name_and_signal_and_started_again(stand_ins, capsys):
    system = stand_ins(catalog=KILLED)
    system.start("catalog", replica=2)
    replica = system.processes["catalog-2"]
    now = exited(replica)
    system.supervise(now)
    assert "catalog-2 was killed by SIGKILL; starting it again in 0.5 s" in capsys.readouterr().err
    first = replica.popen
    system.supervise(now + 0.5)
    assert replica.popen is not first and replica.popen.args == system.command("catalog")


def test_no_process_is_started_again_once_a_stop_is_asked_for(stand_ins, capsys):
    system = stand_ins(loans=EXITS)
    system.start("loans")
    loans = system.processes["loans"]
    now = exited(loans)
    system.supervise(now)
    capsys.readouterr()
    system.stopping = True
    system.supervise(now + 60)
    assert loans.popen.returncode == 3 and loans.restart_at == now + 0.5
    assert capsys.readouterr().err == ""


def test_a_process_that_exits_once_while_the_system_starts_is_started_again(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "TICK_SECONDS", 0.05)
    system = stand_ins(loans=[EXITS_ONCE, str(tmp_path / "ran-before")], catalog=SERVES)
    system.start("loans")
    system.start("catalog")
    loans = system.processes["loans"]
    # Healthy once loans serves again: the start-up has waited for it.
    monkeypatch.setattr(system, "healthy", lambda: loans.exits == 1 and loans.restart_at is None
                        and loans.popen.poll() is None)
    assert system.wait_until_healthy()
    assert system.exits() == {"loans": 1}


def test_a_process_that_keeps_exiting_while_the_system_starts_fails_the_start_early(stand_ins, monkeypatch):
    monkeypatch.setattr(launcher, "TICK_SECONDS", 0.05)
    system = stand_ins(loans=EXITS, catalog=SERVES)
    system.start("loans")
    system.start("catalog")
    monkeypatch.setattr(system, "healthy", lambda: False)
    started = time.monotonic()
    assert not system.wait_until_healthy()
    assert system.exits() == {"loans": STARTUP_EXITS}
    assert time.monotonic() - started < 10  # 0.5 and 1 s of back-off, not STARTUP_SECONDS
