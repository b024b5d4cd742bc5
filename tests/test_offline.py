"""No code path downloads anything: the data build and the notebooks' helpers run with the
network forbidden (every socket connection raises)."""

import socket

import pytest
import torch

from drdd_edu import toydata
from drdd_edu.data import SOURCES, build_all_in_one5, load_source_image


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_sources_and_build_work_offline(no_network, tmp_path):
    for name in SOURCES:
        img = load_source_image(name)
        assert img.ndim == 3 and img.shape[2] == 3
    data = build_all_in_one5(size=32, max_patches_per_image=4, cache_dir=tmp_path, progress=False)
    assert data.train_clean.shape[0] > 0 and data.target_clean.shape[0] > 0
    for name in toydata.BUNDLED_IMAGES:
        assert toydata.bundled_image(name, 16).shape == (1, 3, 16, 16)
    assert torch.isfinite(toydata.toy_points(8)).all()
