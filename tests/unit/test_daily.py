"""The rolling 24-hour download count (crawler/daily.py)."""

from crawler import daily

H, DAY = 3600, 86400
T = 1_700_000_000  # not on an hour


def test_a_bucket_counts_for_a_full_day_after_its_hour_ends() -> None:
    hour = daily.hour_of(T)
    assert hour % H == 0 and hour <= T < hour + H
    window = {str(hour): 100}
    assert daily.used(window, hour + H + DAY - 1) == 100
    assert daily.used(window, hour + H + DAY) == 0
    assert daily.expired(window, hour + H + DAY) == [str(hour)]
    assert daily.expired(window, T) == []


def test_blocked_when_the_next_batch_could_pass_the_limit() -> None:
    window = {str(daily.hour_of(T)): 900}
    assert not daily.blocked(window, T, 100, 1000)
    assert daily.blocked(window, T, 101, 1000)
    assert not daily.blocked({}, T, 5000, 1000)  # an empty window always lets one batch go


def test_resume_at_is_when_enough_of_the_oldest_hours_left_the_window() -> None:
    first, second = daily.hour_of(T) - 5 * H, daily.hour_of(T)
    window = {str(second): 300, str(first): 600}
    assert daily.resume_at(window, T, 100, 1000) == T  # not blocked: now
    assert daily.resume_at(window, T, 200, 1000) == first + H + DAY
    assert daily.resume_at(window, T, 800, 1000) == second + H + DAY
    assert daily.resume_at(window, T, 5000, 1000) == second + H + DAY  # all gone: one goes
