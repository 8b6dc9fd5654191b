"""The uninterrupted tiny RSO run, made once for the Trainer's tests."""

import pytest

from .helpers import rso_trainer


@pytest.fixture(scope="session")
def rso_ref(tmp_path_factory):
    """The uninterrupted run: no checkpoints (writing them must not change anything either), but a metrics log."""
    t = rso_trainer(metrics_log=tmp_path_factory.mktemp("ref") / "ref.jsonl")
    t.fit()
    return t
