"""The notices service's rules: the pause between tries, the library a notice speaks for, its titles."""
from datetime import date

from services.notices.rules import notice_library, retry_pause, titles_about


def test_a_failed_notice_waits_twice_as_long_each_time_up_to_the_longest_pause():
    assert [retry_pause(attempts, 60, 3600) for attempts in range(1, 9)] == \
        [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_notice_speaks_for_the_library_it_is_about_else_the_patrons_own():
    assert notice_library({"library": "east", "date": "2026-12-10"}, "main") == "east"
    assert notice_library({"items": 2, "date": "2026-12-10"}, "main") == "main"


def test_a_ready_hold_notice_names_the_holds_ready_at_its_pickup_library_only():
    holds = [{"title": "坊っちゃん", "status": "ready", "pickup_library": "main"},
             {"title": "こころ", "status": "ready", "pickup_library": "east"},
             {"title": "三四郎", "status": "waiting", "pickup_library": "main"}]
    assert titles_about("hold_ready", {"library": "main"}, holds, date(2026, 12, 3)) == ["坊っちゃん"]


def test_reminders_name_the_loans_due_that_day_or_overdue_today():
    loans = [{"title": "坊っちゃん", "due_date": "2026-12-01"}, {"title": "こころ", "due_date": "2026-12-03"},
             {"title": "三四郎", "due_date": "2026-12-05"}]
    assert titles_about("due_soon", {"date": "2026-12-05"}, loans, date(2026, 12, 3)) == ["三四郎"]
    assert titles_about("overdue", {"date": "2026-12-01"}, loans, date(2026, 12, 3)) == ["坊っちゃん"]
