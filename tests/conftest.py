"""Shared fixtures: offline environment, the shared real checkpoint, random-init model directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_STORIES = REPO.parent / "shared" / "models" / "stories260k"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def stories_dir() -> Path:
    """../shared/models/stories260k: a real pretrained tiny Llama nobody on this project trained."""
    if not (SHARED_STORIES / "config.json").exists():
        pytest.skip(f"../shared is absent ({SHARED_STORIES} not found): the real-checkpoint tests need it")
    return SHARED_STORIES


@pytest.fixture(scope="session")
def random_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from headwiki.random_models import write_random_model

    return write_random_model(tmp_path_factory.mktemp("rand_gpt2") / "rand-gpt2", arch="gpt2", n_layers=2, n_heads=4)


@pytest.fixture(scope="session")
def random_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from headwiki.random_models import write_random_model

    return write_random_model(
        tmp_path_factory.mktemp("rand_llama") / "rand-llama", arch="llama", n_layers=2, n_heads=4, n_kv_heads=2
    )
