"""The copies under tests/data/ are the spec's files, byte for byte.

The suite reads its vectors and the SARIF schema from tests/data/ so a plain clone runs
it; this test catches a copy that fell behind ../shared/spec (the contract) wherever that
folder sits beside the checkout.
"""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_SPEC, SPEC

COPIES = ["token-vectors.json", "partner-vectors.json", "sarif-schema-2.1.0.json"]


@pytest.mark.parametrize("name", COPIES)
def test_copy_is_valid_json(name: str) -> None:
    assert json.loads((SPEC / name).read_bytes())


@pytest.mark.skipif(not SHARED_SPEC.is_dir(),
                    reason=f"{SHARED_SPEC} is absent (a plain clone): nothing to compare with")
@pytest.mark.parametrize("name", COPIES)
def test_copy_equals_the_spec(name: str) -> None:
    assert (SPEC / name).read_bytes() == (SHARED_SPEC / name).read_bytes(), (
        f"tests/data/{name} differs from {SHARED_SPEC / name}: copy the spec's file again")
