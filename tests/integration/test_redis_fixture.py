import pytest
import redis

pytestmark = pytest.mark.integration


def test_prefix_is_private_and_cleaned(redis_server: redis.Redis, redis_prefix: str) -> None:
    redis_server.set(f"{redis_prefix}k", "v")
    assert redis_server.get(f"{redis_prefix}k") == b"v"
    assert redis_prefix.startswith("test:")
