"""Properties of blob keys: no string names a file outside the blob store's two hex levels."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.blobs import FileBlobStore, validate_key
from crawler.errors import BadInput

pytestmark = pytest.mark.unit

ROOT = Path("/srv/blobs")
HEX64 = re.compile(r"[0-9a-f]{64}")

keys = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEF./\\\x00\n", min_size=60, max_size=70),
    st.binary(max_size=40).map(lambda data: hashlib.sha256(data).hexdigest()),
    st.tuples(st.binary(max_size=8), st.sampled_from(["/..", "\n", "/", "\x00", " ", "../"])).map(
        lambda pair: hashlib.sha256(pair[0]).hexdigest() + pair[1]
    ),
    st.sampled_from(["../" * 30 + "etc/passwd", "/" + "a" * 64, "." * 64, "A" * 64]),
)


@settings(max_examples=300, deadline=None)
@given(key=keys)
def test_a_key_names_a_file_two_hex_levels_below_the_root_or_is_refused(key: str) -> None:
    """Property: FileBlobStore.path refuses (BadInput) every string but 64 lowercase hex
    digits, and a key it accepts is a file exactly `<root>/ab/cd/<key>`."""
    store = FileBlobStore(ROOT)
    try:
        path = store.path(key)
    except BadInput:
        assert not HEX64.fullmatch(key)
        with pytest.raises(BadInput):
            validate_key(key)
        return
    assert HEX64.fullmatch(key)
    assert path == ROOT / key[:2] / key[2:4] / key
    assert path.resolve().is_relative_to(ROOT.resolve())
