"""docs/services.md says who calls whom and which events go where; this reads the same off the code (each
service's RPC proxies, event publishers and subscriptions), so the page cannot drift from it."""
import re
from pathlib import Path

import pytest
from nameko.events import EventHandler

from shiori.events import EventPublisher
from shiori.commands.provision import dependencies_of, entrypoints_of
from shiori.rpc import ServiceRpc
from shiori.commands.serve import SERVICE_NAMES, service_class

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "services.md").read_text(encoding="utf-8")
NOTHING = "—"


def from_code(name):
    cls = service_class(name)
    return {
        "calls": {dependency.target_service for dependency in dependencies_of(cls)
                  if isinstance(dependency, ServiceRpc)},
        "publishes": {event for dependency in dependencies_of(cls) if isinstance(dependency, EventPublisher)
                      for event in dependency.catalogue},
        "subscribes to": {f"{entrypoint.source_service}.{entrypoint.event_type}"
                          for _attribute, entrypoint in entrypoints_of(cls) if isinstance(entrypoint, EventHandler)},
    }


def from_page():
    rows = {}
    for line in PAGE.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in SERVICE_NAMES:
            rows[cells[0]] = {column: set() if cell == NOTHING else
                              {re.sub(r"\s*\(.*\)$", "", item.strip()) for item in cell.split(",")}
                              for column, cell in zip(("calls", "publishes", "subscribes to"), cells[1:])}
    return rows


def arrows(kind):
    return set(re.findall(rf"^\s*(\w+) {re.escape(kind)} (\w+)\s*$", PAGE, flags=re.M))


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_the_page_says_what_each_service_calls_publishes_and_hears(name):
    assert from_page().get(name) == from_code(name)


def test_the_picture_draws_every_call_and_every_event_path():
    code = {name: from_code(name) for name in SERVICE_NAMES}
    assert arrows("-->") == {(name, target) for name in SERVICE_NAMES for target in code[name]["calls"]}
    assert arrows("-.->") == {(subscription.split(".")[0], name) for name in SERVICE_NAMES
                              for subscription in code[name]["subscribes to"]}


def cycle_in(calls):
    """A path of calls that comes back to where it started (as a list of names), or None."""
    done, path = set(), []

    def visit(name):
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        path.append(name)
        found = next((cycle for target in sorted(calls.get(name, ())) if (cycle := visit(target))), None)
        path.pop()
        done.add(name)
        return found

    return next((cycle for name in sorted(calls) if (cycle := visit(name))), None)


def test_a_cycle_of_calls_is_found_however_long():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"a"}}) == ["a", "a"]
    assert cycle_in({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_service_calls_back_to_itself_through_others():
    """Two pools waiting on each other can run into the RPC deadline under load (issue 12): calls go one way."""
    assert cycle_in({name: from_code(name)["calls"] for name in SERVICE_NAMES}) is None
