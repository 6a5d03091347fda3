"""pytest fixtures: MongoDB, as mongomock, as the embedded stand-in over TCP, or a real server.

`mongo_db` runs a test once per backend, each time in a database of its own that is dropped
afterwards. The `real` backend runs only where `MONGODB_URL` points at a MongoDB server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import mongomock
import pymongo
import pytest
from pymongo.database import Database

from standins.embedded_mongo import EmbeddedMongo

REAL_MONGODB_URL = os.environ.get("MONGODB_URL", "")
MONGO_BACKENDS = ("mongomock", "embedded", "real")

MongoClient = pymongo.MongoClient[dict[str, Any]]


@pytest.fixture(scope="session")
def embedded_mongo() -> Iterator[EmbeddedMongo]:
    """One running stand-in for the whole session; tests keep apart by database name."""
    with EmbeddedMongo() as server:
        yield server


# The clients live one test each: a client's monitor threads draw request ids from the global
# `random`, which Hypothesis takes for randomness in its strategies if they run meanwhile.


@pytest.fixture
def embedded_mongo_client(embedded_mongo: EmbeddedMongo) -> Iterator[MongoClient]:
    """A pymongo client of the session's stand-in, closed after the test."""
    client: MongoClient = pymongo.MongoClient(embedded_mongo.uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def real_mongo_client() -> Iterator[MongoClient]:
    """A pymongo client of the real MongoDB at MONGODB_URL, closed after the test; skips where
    there is none."""
    if not REAL_MONGODB_URL:
        pytest.skip("MONGODB_URL is not set: no real MongoDB to run the contract against")
    client: MongoClient = pymongo.MongoClient(REAL_MONGODB_URL, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture(params=MONGO_BACKENDS)
def mongo_db(request: pytest.FixtureRequest) -> Iterator[Database[dict[str, Any]]]:
    """A fresh database on each backend; dropped at the end of the test."""
    client: MongoClient
    if request.param == "mongomock":
        client = mongomock.MongoClient()
    else:
        client = request.getfixturevalue(f"{request.param}_mongo_client")
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield client[name]
    client.drop_database(name)
