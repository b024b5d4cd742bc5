"""Shared fixtures for the unit tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the tests use small tensors, and with two xdist workers on two cores
    more threads only oversubscribe (small-tensor work then stalls 10-20x). Restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A data cache holding the small All-in-One-5 build (``small_training.small_data``), so each
    training run loads it instead of rebuilding."""
    from small_training import small_data

    path = tmp_path_factory.mktemp("data_cache")
    small_data(path)
    return path
