"""Starting the sandbox: input checks, the `marimo run` command line, and the app's reading of it (torch-free)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwiki.errors import HeadwikiError

APP = Path(__file__).with_name("app.py")  # the marimo notebook shipped in the package (`marimo edit` opens it too)
HOST = "127.0.0.1"
DEFAULT_PORT = 2718
MIN_PORT, MAX_PORT = 1024, 65535


@dataclass(frozen=True)
class AppArgs:
    """What the notebook needs to open: the --model value, the DB, the dataset, the item subset, the device."""

    model: str
    db: str
    dataset: str
    max_items: int | None = None
    seed: int = 0
    device: str = "cpu"

    def as_cli(self) -> list[str]:
        """The arguments after `--` on the marimo command line (read back by :func:`app_args`)."""
        out = ["--model", self.model, "--db", self.db, "--dataset", self.dataset, "--seed", str(self.seed), "--device", self.device]
        return out + (["--max-items", str(self.max_items)] if self.max_items is not None else [])


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
                   max_items=int(max_items) if max_items else None, seed=int(get("seed") or 0), device=get("device") or "cpu")


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
