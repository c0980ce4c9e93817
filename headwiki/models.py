"""Load any model (hub name, local HF directory, or the embedded toy) as a TransformerBridge.

One function, :func:`load_model`, serves every source so that the toy model and a user's
checkpoint go through exactly the same code path as ``gpt2``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headwiki.checkpoints import checkpoint_id, read_marker, split_revision, step_of_revision
from headwiki.errors import HeadwikiError
from headwiki.start_token import AUTO, StartToken, check_choice, resolve_start_token
from headwiki.kernels import speed_up
from headwiki.progress import log

TOY_NAME = "toy"
TOY_DIR = Path(__file__).resolve().parent / "toy" / "model"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class ModelInfo:
    """What a pass needs to know (and store) about the model it ran on."""

    name: str  # identifier stored as models.model_id ("toy", "gpt2", "my_model")
    source: str  # "toy" | "local" | "hub" | "gguf"
    path: str  # local directory, .gguf file or hub id it was loaded from
    revision: str  # hub commit hash, or sha256 (16 hex) of the local weight files
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    n_ctx: int
    d_vocab: int
    n_params: int
    positional_embedding: str
    dtype: str
    device: str
    fingerprint: str = ""  # sha256 (16 hex) of config + weights: the same model_id must always mean the same model
    quantization: str = ""  # GGUF sources: file type and tensor types, e.g. "MOSTLY_Q4_1 (tensors: Q4_1 x210, ...)"
    file_sha256: str = ""  # GGUF sources: sha256 of the .gguf file
    dequantized_dtype: str = ""  # GGUF sources: the float dtype the quantized weights were expanded to
    series: str = ""  # a checkpoint series (training run or hub repo) this model is one step of (headwiki.checkpoints)
    step: int | None = None  # its training step within the series
    seed: int | None = None  # the training seed, where the model directory declares it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LoadedModel:
    """A booted bridge and its :class:`ModelInfo`."""

    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    info: ModelInfo
    start: StartToken  # the token at position 0 of every sequence a pass feeds it (`--bos`)


def resolve_device(device: str | None) -> str:
    """'auto'/None -> 'cuda' when available else 'cpu'; anything else is validated and returned."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HeadwikiError(f"--device {device} requested but CUDA is not available: use --device cpu or auto")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise HeadwikiError(f"unknown --device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise HeadwikiError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _weights_hash(directory: Path) -> str:
    """sha256 (first 16 hex digits) over the weight files of a local HF directory."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _cached_hub_revision(name: str, revision: str | None = None) -> str | None:
    """The commit hash of `name` (at `revision`: a branch, tag or commit) in the local HF cache, or None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(found, str):
        return Path(found).parent.name
    return None


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Ask the hub endpoint through huggingface_hub's own HTTP client, so HTTPS_PROXY / HTTP_PROXY, HF_ENDPOINT
    and its certificate settings apply exactly as for the download; any HTTP answer means reachable. An offline
    machine fails in seconds, not minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
        return True
    except Exception:  # connection refused, DNS, proxy or TLS failure, timeout: the client's own error types
        return False


MAX_MODEL_ID = 200


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long for the file system: not a path then
        return False


def split_model_id(spec: str) -> tuple[str | None, str]:
    """'NAME=SOURCE' -> (NAME, SOURCE); anything else (or an existing path containing '=') -> (None, spec)."""
    if "=" not in spec or _exists(Path(spec).expanduser()):
        return None, spec
    name, _, rest = spec.partition("=")
    name = name.strip()
    if not name or not rest.strip():
        raise HeadwikiError(f"--model {spec!r}: use NAME=SOURCE with both parts, e.g. --model my-ckpt=./checkpoint")
    if len(name) > MAX_MODEL_ID or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise HeadwikiError(f"model id {name[:40]!r}... must be at most {MAX_MODEL_ID} printable characters: pick a shorter NAME in NAME=SOURCE")
    return name, rest.strip()


def model_fingerprint(path: str, revision: str) -> str:
    """sha256 (16 hex) over the weights revision and the model's config.json (names/versions dropped)."""
    digest = hashlib.sha256(str(revision).encode())
    config = Path(path) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            data = {k: v for k, v in data.items() if k not in ("_name_or_path", "transformers_version", "_commit_hash")}
            digest.update(json.dumps(data, sort_keys=True).encode())
        except (ValueError, UnicodeDecodeError, AttributeError):
            digest.update(config.read_bytes())
    return digest.hexdigest()[:16]


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def check_local_model(directory: Path) -> None:
    """Cheap checks of a local model directory before loading it: a JSON config naming its model_type,
    and at least one non-empty weight file."""
    config = directory / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HeadwikiError(f"{config} is not valid JSON ({str(exc).splitlines()[0][:120]}): fix or re-save the model directory") from None
    except OSError as exc:
        raise HeadwikiError(f"cannot read {config} ({exc.strerror}): check the model directory") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise HeadwikiError(f"{config} has no model_type (e.g. \"gpt2\", \"llama\"): re-save the model with save_pretrained")
    weights = [p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not weights and not any(directory.glob("*.gguf")):
        raise HeadwikiError(f"{directory} has no weight files (*.safetensors, *.bin): copy the weights beside config.json")
    empty = [p.name for p in weights if p.stat().st_size == 0]
    if empty:
        raise HeadwikiError(f"weight file {directory / empty[0]} is empty: copy the weights again")


def resolve_source(spec: str) -> tuple[str, str, str]:
    """Map a --model value to (name, source, path). Local directories and .gguf files win over hub ids.

    'NAME=SOURCE' stores SOURCE under the model id NAME (two directories both called `checkpoint`
    need two names); otherwise the id is 'toy', the hub id, the directory's name or the .gguf file's stem."""
    from headwiki.gguf_source import GGUF_SUFFIX, read_gguf_meta

    chosen, spec = split_model_id(spec)
    if chosen is not None:
        _, source, path = resolve_source(spec)
        return chosen, source, path
    if spec == TOY_NAME:
        if not (TOY_DIR / "config.json").exists():
            raise HeadwikiError(f"the embedded toy model is missing at {TOY_DIR}: reinstall headwiki or run `headwiki toy train`")
        return TOY_NAME, "toy", str(TOY_DIR)
    path = Path(spec).expanduser()
    if path.suffix == GGUF_SUFFIX and not path.is_dir():
        meta = read_gguf_meta(path)  # missing, truncated or unsupported: one line, before any load
        return meta.path.stem, "gguf", str(meta.path)
    if path.is_dir():
        ggufs = sorted(path.glob(f"*{GGUF_SUFFIX}"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            meta = read_gguf_meta(ggufs[0])
            return meta.path.stem, "gguf", str(meta.path)
        if not (path / "config.json").exists() and len(ggufs) > 1:
            raise HeadwikiError(f"{spec} holds {len(ggufs)} .gguf files: pass one of them (--model {ggufs[0]})")
        if not (path / "config.json").exists():
            raise HeadwikiError(f"{spec} is a directory but has no config.json: pass a HuggingFace-format model directory")
        marker = read_marker(path)
        if "series" in marker and "step" in marker:
            return checkpoint_id(marker["series"], marker["step"]), "local", str(path.resolve())
        return path.resolve().name, "local", str(path.resolve())
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise HeadwikiError(f"--model {spec} is a file, not a model directory: pass the folder that holds config.json and the weights")
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise HeadwikiError(f"model directory {spec} does not exist: check the path")
    split_revision(spec)  # REPO@REVISION (a hub checkpoint): both parts present
    return spec, "hub", spec


def load_model(spec: str = TOY_NAME, device: str | None = "auto", dtype: str = "float32", name: str | None = None,
               bos: str = AUTO) -> LoadedModel:
    """Boot `spec` (toy | local dir | .gguf file or a dir holding one | hub id) on `device` and describe it.

    `bos`: the start token choice (headwiki.start_token), resolved against the model's tokenizer.

    Hub ids honour the HF cache and HF_HUB_OFFLINE; a model that is neither cached nor
    downloadable raises HeadwikiError with the fix.
    """
    from transformer_lens.model_bridge import TransformerBridge

    check_choice(bos)
    model_name, source, path = resolve_source(spec)
    device_str = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    gguf_meta = None
    if source == "gguf":
        from headwiki.gguf_source import read_gguf_meta

        gguf_meta = read_gguf_meta(path)
        revision = gguf_meta.sha256[:16]
    elif source == "hub":
        repo, hub_rev = split_revision(path)
        revision = _cached_hub_revision(repo, hub_rev)
        if revision is None and not _hub_reachable():
            what = f"model '{repo}'" + (f" at revision {hub_rev}" if hub_rev else "")
            raise HeadwikiError(
                f"{what} is not in the HuggingFace cache and the hub is unreachable: "
                f"run once with internet access to cache it, or pass a local directory (--model ./my_model)"
            )
    else:
        check_local_model(Path(path))
        revision = _weights_hash(Path(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _quiet_loaders()
            if gguf_meta is not None:
                from headwiki.gguf_source import load_gguf_hf

                log(f"dequantizing {Path(path).name} ({gguf_meta.quantization}) to {dtype}")
                hf_model, tokenizer = load_gguf_hf(gguf_meta, torch_dtype)
                bridge = TransformerBridge.boot_transformers(path, hf_model=hf_model, tokenizer=tokenizer,
                                                             device=device_str, dtype=torch_dtype)
            elif source == "hub":
                extra = {"revision": hub_rev} if hub_rev else {}
                bridge = TransformerBridge.boot_transformers(repo, device=device_str, dtype=torch_dtype, **extra)
            else:
                bridge = TransformerBridge.boot_transformers(path, device=device_str, dtype=torch_dtype)
    except HeadwikiError:
        raise
    except Exception as exc:
        if source != "hub":  # local files: the files are the problem, not the network
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise HeadwikiError(
                f"could not load the model in {path} ({type(exc).__name__}: {first}): check its config.json, "
                "weight and tokenizer files (re-save with save_pretrained)"
            ) from exc
        if not isinstance(exc, OSError):
            raise
        raise HeadwikiError(
            f"could not load model '{path}' ({str(exc).splitlines()[0]}): run once with internet access "
            f"to cache it, or pass a local directory (--model ./my_model)"
        ) from exc
    if source == "hub" and revision is None:
        revision = _cached_hub_revision(repo, hub_rev) or hub_rev or "unknown"
    check_tokenizer(bridge, path)
    speed_up(bridge)
    bridge.eval()
    info = describe(bridge, name or model_name, source, path, revision, dtype, device_str)
    info = dataclasses.replace(info, fingerprint=model_fingerprint(path, info.revision))
    if source == "hub" and hub_rev:
        info = dataclasses.replace(info, series=repo, step=step_of_revision(hub_rev))
    elif source in ("local", "toy"):
        marker = read_marker(path)
        info = dataclasses.replace(info, series=marker.get("series", ""), step=marker.get("step"), seed=marker.get("seed"))
    if gguf_meta is not None:
        info = dataclasses.replace(info, quantization=gguf_meta.quantization, file_sha256=gguf_meta.sha256,
                                   dequantized_dtype=dtype)
    return LoadedModel(bridge=bridge, info=info, start=resolve_start_token(bridge.tokenizer, info.d_vocab, bos))


def check_tokenizer(bridge: Any, path: str) -> None:
    """Refuse a model without a usable tokenizer, or whose tokenizer can produce ids past its embedding
    (a tokenizer from another model: such ids fail inside the first forward, or silently read other rows)."""
    tokenizer = getattr(bridge, "tokenizer", None)
    n_tokens = len(tokenizer) if tokenizer is not None else 0
    d_vocab = int(bridge.cfg.d_vocab)
    if n_tokens < 2:
        raise HeadwikiError(f"the model in {path} has no usable tokenizer ({n_tokens} tokens): put its tokenizer files "
                            "(tokenizer.json, or vocab.json and merges.txt) beside config.json")
    if n_tokens > d_vocab:
        raise HeadwikiError(f"the tokenizer in {path} has {n_tokens} tokens but the model's embedding has {d_vocab} rows: "
                            "the tokenizer belongs to another model; put the model's own tokenizer files beside config.json")


def describe(bridge: Any, name: str, source: str, path: str, revision: str, dtype: str, device: str) -> ModelInfo:
    """Build the ModelInfo record from a booted bridge's config."""
    cfg = bridge.cfg
    n_heads = int(cfg.n_heads)
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    n_params = sum(p.numel() for p in bridge.original_model.parameters())
    return ModelInfo(
        name=name,
        source=source,
        path=path,
        revision=str(revision),
        architecture=str(cfg.architecture or type(bridge.original_model).__name__),
        n_layers=int(cfg.n_layers),
        n_heads=n_heads,
        n_kv_heads=int(n_kv),
        d_model=int(cfg.d_model),
        d_head=int(cfg.d_head),
        n_ctx=int(cfg.n_ctx),
        d_vocab=int(cfg.d_vocab),
        n_params=int(n_params),
        positional_embedding=str(getattr(cfg, "positional_embedding_type", "unknown")),
        dtype=dtype,
        device=device,
    )


def _quiet_loaders() -> None:
    """Silence HF's per-load progress bars and info chatter; headwiki draws its own progress."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a hard dependency of transformer-lens
        pass
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
