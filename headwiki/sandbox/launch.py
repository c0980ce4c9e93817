"""Starting the sandbox: input checks, the `marimo run` command line, and the app's reading of it (torch-free)."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwiki.db.store import head_label
from headwiki.errors import HeadwikiError
from headwiki.sandbox import APP_THREAD_ENV
from headwiki.start_token import AUTO

APP = Path(__file__).with_name("app.py")  # the marimo notebook shipped in the package (`marimo edit` opens it too)
HOST = "127.0.0.1"
DEFAULT_PORT = 2718
MIN_PORT, MAX_PORT = 1024, 65535


def app_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the marimo process runs in: `environ` plus APP_THREAD_ENV where `environ` does not set them."""
    return {**APP_THREAD_ENV, **environ}


@dataclass(frozen=True)
class AppArgs:
    """What the notebook needs to open: the --model value, the DB, the dataset, the item subset, the device."""

    model: str
    db: str
    dataset: str
    max_items: int | None = None
    seed: int = 0
    device: str = "cpu"
    heads: str = ""  # head labels toggled at start, comma-separated (L0H4,L1H2)
    bos: str = AUTO  # the start token choice (headwiki.start_token), as the DB's ablate pass used

    def as_cli(self) -> list[str]:
        """The arguments after `--` on the marimo command line (read back by :func:`app_args`)."""
        out = ["--model", self.model, "--db", self.db, "--dataset", self.dataset, "--seed", str(self.seed), "--device", self.device,
               "--bos", self.bos]
        out += ["--max-items", str(self.max_items)] if self.max_items is not None else []
        return out + (["--heads", self.heads] if self.heads else [])


def app_args(cli: Mapping[str, Any]) -> AppArgs:
    """AppArgs from marimo's `mo.cli_args()` (values arrive as strings or numbers); a missing --db is an error."""
    def get(name: str) -> str | None:
        v = cli.get(name)
        return None if v is None else str(v[-1] if isinstance(v, (list, tuple)) else v)

    model, db = get("model") or "toy", get("db")
    if not db:
        raise HeadwikiError("the sandbox app needs --db: start it with `headwiki sandbox --model M --db D`")
    from headwiki.ablation.items import default_dataset

    max_items = get("max-items")
    return AppArgs(model=model, db=db, dataset=get("dataset") or default_dataset(model),
                   max_items=int(max_items) if max_items else None, seed=int(get("seed") or 0), device=get("device") or "cpu",
                   heads=get("heads") or "", bos=get("bos") or AUTO)


def parse_heads(text: str | None) -> tuple[tuple[int, int], ...]:
    """'L0H4,L1H2' -> ((0, 4), (1, 2)) sorted and unique; a one-line HeadwikiError for anything else."""
    out = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.fullmatch(r"L(\d+)H(\d+)", part.strip())
        if m is None:
            raise HeadwikiError(f"--heads {part.strip()!r} is not a head label: use labels like L0H4, separated by commas")
        out.add((int(m[1]), int(m[2])))
    return tuple(sorted(out))


def check_heads_fit(heads: tuple[tuple[int, int], ...], n_layers: int, n_heads: int, model_id: str) -> None:
    bad = [(L, h) for L, h in heads if not (L < n_layers and h < n_heads)]
    if bad:
        raise HeadwikiError(f"--heads {head_label(*bad[0])} is outside {model_id} ({n_layers} layers x {n_heads} heads)")


def check_port(port: int) -> None:
    if not MIN_PORT <= port <= MAX_PORT:
        raise HeadwikiError(f"--port {port} is out of range: use a port from {MIN_PORT} to {MAX_PORT} (default {DEFAULT_PORT})")


def check_marimo() -> None:
    if importlib.util.find_spec("marimo") is None:
        raise HeadwikiError("the sandbox needs marimo, which is not installed: pip install 'headwiki[sandbox]'")


def marimo_command(args: AppArgs, port: int, edit: bool = False, headless: bool = False) -> list[str]:
    """`python -m marimo run|edit APP --host 127.0.0.1 --port P [--headless] -- <AppArgs>` (never another host)."""
    cmd = [sys.executable, "-m", "marimo", "edit" if edit else "run", str(APP), "--host", HOST, "--port", str(port), "--no-sandbox"]
    if headless:
        cmd.append("--headless")
    return cmd + ["--", *args.as_cli()]
