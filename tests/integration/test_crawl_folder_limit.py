"""Gmail's IMAP settings can cap a folder at 1,000 to 10,000 messages: IMAP then shows only the
newest. A crawl that finds All Mail exactly that full says the account may be cut short."""

import pytest

from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

RAW = build_message("tiny")


def test_all_mail_exactly_at_a_folder_size_limit_is_flagged_and_unflagged(world: World) -> None:
    account = world.add_account("alice@example.com", "u1")
    for _ in range(999):
        account.add_message(RAW)
    world.iterate()
    assert world.status("u1").get("folder_warning") is None  # 999: no limit looks like that

    account.add_message(RAW)
    world.make_due("u1")
    world.iterate()
    warning = world.status("u1")["folder_warning"]
    assert "exactly 1,000 messages" in warning and "Folder size limits" in warning

    account.add_message(build_message(attachments={"a.pdf": b"%PDF-1"}))
    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "idle"}
    assert world.status("u1")["folder_warning"] is None
    assert [doc["filename"] for doc in world.stored("u1").values()] == ["a.pdf"]
