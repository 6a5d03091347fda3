import pytest

from crawler.download import Wanted, plan
from crawler.mime import AttachmentPart

pytestmark = pytest.mark.unit


def wanted(uid: int, part: str, size: int) -> Wanted:
    attachment = AttachmentPart(
        part, "application/pdf", "base64", size, "x.pdf", None, False, False
    )
    return Wanted(uid, attachment, ("r",))


def test_messages_wanting_the_same_parts_share_a_command() -> None:
    items = [wanted(uid, "2", 100) for uid in (1, 2, 3)] + [wanted(4, "3", 100)]
    commands, big = plan(items, budget=1000, stream_size=500)
    assert commands == [([1, 2, 3], ("2",)), ([4], ("3",))]
    assert big == []


def test_several_parts_of_one_message_go_in_one_command() -> None:
    commands, _ = plan([wanted(1, "2", 10), wanted(1, "3", 10)], budget=1000, stream_size=500)
    assert commands == [([1], ("2", "3"))]


def test_the_budget_splits_commands_but_never_leaves_one_empty() -> None:
    items = [wanted(uid, "2", 400) for uid in range(1, 6)]
    commands, _ = plan(items, budget=1000, stream_size=500)
    assert commands == [([1, 2], ("2",)), ([3, 4], ("2",)), ([5], ("2",))]
    commands, _ = plan([wanted(1, "2", 450), wanted(1, "3", 450)], budget=100, stream_size=500)
    assert commands == [([1], ("2", "3"))]


def test_parts_bigger_than_the_stream_size_stream_on_their_own() -> None:
    huge = wanted(9, "2", 10_000)
    commands, big = plan([huge, wanted(1, "2", 10)], budget=1000, stream_size=500)
    assert commands == [([1], ("2",))]
    assert big == [huge]
