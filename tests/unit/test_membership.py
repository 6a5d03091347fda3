"""Static shards: from settings, honcho's process name or a StatefulSet pod name."""

from typing import Any

import pytest

from config import Settings
from crawler.errors import ConfigError
from workers.membership import static_shard

pytestmark = pytest.mark.unit


def settings(**fields: Any) -> Settings:
    return Settings(**{"process_name": None, "hostname": None, **fields})


@pytest.mark.parametrize(
    ("fields", "shard"),
    [
        ({}, None),
        ({"process_name": "worker.3", "hostname": "crawler-1"}, None),  # no count: automatic
        ({"client_id": 2, "client_count": 4}, (2, 4)),
        ({"client_count": 4, "process_name": "worker.1"}, (0, 4)),  # honcho numbers from 1
        ({"client_count": 4, "process_name": "worker.4"}, (3, 4)),
        ({"client_count": 3, "hostname": "crawler-0"}, (0, 3)),  # pods number from 0
        ({"client_count": 3, "hostname": "crawler-2", "process_name": "worker.1"}, (0, 3)),
        ({"client_id": 1, "client_count": 3, "hostname": "crawler-2"}, (1, 3)),
    ],
)
def test_the_shard_comes_from_the_first_source_that_names_it(
    fields: dict[str, Any], shard: tuple[int, int] | None
) -> None:
    assert static_shard(settings(**fields)) == shard


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"client_id": 1}, "CRAWLER_CLIENT_ID needs CRAWLER_CLIENT_COUNT"),
        ({"client_count": 2}, "CRAWLER_CLIENT_COUNT needs CRAWLER_CLIENT_ID"),
        ({"client_count": 2, "hostname": "db-host"}, "CRAWLER_CLIENT_COUNT needs"),
        ({"client_id": 2, "client_count": 2}, "client id 2 is not in 0..1"),
        ({"client_count": 2, "process_name": "worker.3"}, "client id 2 is not in 0..1"),
        ({"client_count": 2, "process_name": "worker.0"}, "client id -1 is not in 0..1"),
    ],
)
def test_a_bad_shard_is_a_configuration_error(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        static_shard(settings(**fields))
