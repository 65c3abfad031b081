"""benchmarks.e2e's statement report: what a burst spent, from two readings of pg_stat_statements."""

from __future__ import annotations

from benchmarks.e2e import top_statements


def test_the_burst_statements_most_time_first_and_the_idle_ones_left_out() -> None:
    before = {1: ("SELECT  claim", 10, 5.0), 2: ("SELECT idle", 4, 100.0), 3: ("INSERT ingest", 2, 1.0)}
    after = {1: ("SELECT  claim", 30, 65.0), 2: ("SELECT idle", 4, 100.0), 3: ("INSERT ingest", 7, 91.0)}
    after[4] = ("UPDATE\n    new", 3, 7.5)  # first run during the burst
    assert top_statements(before, after) == [
        ("INSERT ingest", 5, 90.0),
        ("SELECT claim", 20, 60.0),
        ("UPDATE new", 3, 7.5),
    ]
    assert top_statements(before, after, top=1) == [("INSERT ingest", 5, 90.0)]
