import pytest
import torch
from hypothesis import HealthCheck, settings

# One Hypothesis profile for the whole suite: the same examples on every run and machine, no example
# database written anywhere. Tests set only how many examples they draw.
settings.register_profile("fastai_aum", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastai_aum")


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path_factory, monkeypatch):
    """Every test runs in a fresh working directory of its own, so nothing reads or writes the checkout
    (fastai's `models/`, the command's default `--out`)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
