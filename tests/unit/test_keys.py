"""user_uuids: only a safe alphabet and a bounded length reach a Redis key, and a refused one is
named in a short message."""

import pytest

from crawler.errors import BadAccount, BadRule
from crawler.keys import MAX_USER_UUID_LENGTH, Keys, check_user_uuid
from crawler.rules import Rule

pytestmark = pytest.mark.unit

HUGE = "u" * 5_000_000


def test_a_user_uuid_up_to_the_limit_is_taken() -> None:
    longest = "a" * MAX_USER_UUID_LENGTH

    assert MAX_USER_UUID_LENGTH == 128
    assert check_user_uuid(longest) == longest
    assert Keys().lease(longest) == f"crawler:lease:{{{longest}}}"


@pytest.mark.parametrize(("user_uuid", "length"), [("a" * 129, "129"), (HUGE, "5,000,000")])
def test_a_longer_user_uuid_is_refused_in_a_short_message(user_uuid: str, length: str) -> None:
    with pytest.raises(BadAccount) as refused:
        check_user_uuid(user_uuid)

    message = str(refused.value)
    assert f"is {length} characters long (at most 128)" in message
    assert len(message) < 200


def test_keys_and_rules_refuse_it_too() -> None:
    with pytest.raises(BadAccount):
        Keys().uids(HUGE)
    with pytest.raises(BadRule, match=r"rule r: user_uuid .* is 5,000,000 characters long"):
        Rule.from_document({"_id": "r", "user_uuid": HUGE})


@pytest.mark.parametrize("user_uuid", ["{" * 100, b"x" * 1000, ["u"] * 1000])
def test_any_refused_value_is_quoted_short(user_uuid: object) -> None:
    with pytest.raises(BadAccount, match="is not a usable id") as refused:
        check_user_uuid(user_uuid)

    assert len(str(refused.value)) < 200
