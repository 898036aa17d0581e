"""Which exceptions are the user's mistake, and the one-message form the CLI prints for them.

The ``wsae-lens`` app (:mod:`wsae_lens.cli.app`) runs every command under :func:`user_error_of`: an
exception it classifies as a user error is printed as ``Error: ...`` (naming the field or file and the
fix) and the command exits with code 2; anything else propagates with its traceback (an internal error).
``--debug`` or ``WSAE_LENS_DEBUG=1`` re-raises user errors too, so their traceback is shown.

User errors, in the order they are checked:

1. :class:`UserError`, raised deliberately (``field`` and ``fix`` are printed with it);
2. click usage errors (``typer.BadParameter`` raised by a command, a missing argument, ...);
3. file-system errors (``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError``,
   ``PermissionError``, ``FileExistsError``) and a hub model or dataset that cannot be loaded
   (:class:`wsae_lens.pipeline.loading.HubUnavailableError`, whose message names the offline default);
4. unreadable files: YAML / JSON syntax errors, a file that is not safetensors, not a torch tensor
   file, or not text, raised while an input is read (under one of :data:`INPUT_FUNCTIONS` or directly
   in a command's own code; a JSON reply met while working is an internal error);
5. ``ValueError``, ``TypeError``, ``KeyError``, ``IndexError`` or ``RuntimeError`` raised *while inputs
   are read or validated*: the traceback passes through a config's ``__post_init__`` / ``from_dict``
   or one of the loaders in :data:`INPUT_FUNCTIONS` (SAELens's ``SAE.load_from_disk``, the runner-config
   reader, ...). The same exception types raised anywhere else are internal errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Iterator

DEBUG_ENV_VAR = "WSAE_LENS_DEBUG"
USER_ERROR_EXIT_CODE = 2

#: Functions (by module prefix) whose failures mean the input is wrong: config constructors and
#: validators, SAELens's loaders and the CLI's input readers. A ValueError / TypeError / KeyError /
#: IndexError / RuntimeError whose traceback passes through one of them is a user error.
INPUT_FUNCTIONS: dict[str, frozenset[str]] = {
    "sae_lens": frozenset({"__post_init__", "from_dict", "load_from_disk", "from_pretrained", "get_sae_class",
                           "get_sae_training_class"}),
    "wsae_lens": frozenset({
        "__post_init__", "from_dict", "validate_weighting", "validate_gamma", "load_gamma",
        "load_runner_config", "read_config_file", "runner_config_store", "comparison_config", "load_pretrained_sae",
        "to_weighted_topk", "resolve_activation_source", "sae_dirs_from", "_load_saes", "check_activation_width",
    }),
    "safetensors": frozenset({"load_file", "safe_open", "load"}),
    "torch.serialization": frozenset({"load"}),
}

#: Loaders whose argument is the file or folder being read (named in the message).
_PATH_ARGUMENTS = ("path", "filename", "cfg_filename", "path_or_repo", "directory", "config", "source",
                   "sae_dir", "activations", "f", "file")

_SAE_FOLDER_FIX = (
    "pass a folder written by SAELens's save_model (cfg.json + sae_weights.safetensors); wsae_lens "
    "architectures load once `import wsae_lens` has registered them."
)
_MISSING_ARGS = re.compile(r"(\w+)\.__init__\(\) missing \d+ required (?:positional |keyword-only )?arguments?: (.+)")
_UNEXPECTED_ARG = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


class UserError(Exception):
    """A mistake in a command's input: printed as one message (no traceback), exit code 2.

    Args:
        message: what is wrong, naming the field or file.
        fix: how to correct it (printed on its own line), if the message does not already say.
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def format(self) -> str:
        """``Error: ...`` and, if known, ``Fix: ...``."""
        lines = [f"Error: {self.message}"]
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        return "\n".join(lines)


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _is_input_frame(frame: FrameType) -> bool:
    module = _module(frame)
    name = frame.f_code.co_name
    for prefix, names in INPUT_FUNCTIONS.items():
        if (module == prefix or module.startswith(prefix + ".")) and name in names:
            return True
    return False


def _owner_name(frame: FrameType) -> str | None:
    """The class whose config method this frame runs (``self`` or ``cls``), if any."""
    owner: Any = frame.f_locals.get("self", frame.f_locals.get("cls"))
    if owner is None:
        return None
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def _path_in(frame: FrameType) -> str | None:
    for name in _PATH_ARGUMENTS:
        value = frame.f_locals.get(name)
        if not isinstance(value, (str, Path)) or not str(value):
            continue
        try:
            if Path(value).exists():
                return str(value)
        except (OSError, ValueError):  # not a path at all (too long, a NUL byte, ...)
            continue
    return None


def _file_being_read(exc: BaseException) -> str | None:
    """The innermost existing file or folder that a frame of the traceback was reading, if any."""
    for frame in reversed(list(_frames(exc.__traceback__))):
        module = _module(frame)
        if module.startswith(("wsae_lens", "sae_lens", "safetensors", "torch.serialization")):
            path = _path_in(frame)
            if path is not None:
                return path
    return None


def _with_file(message: str, path: str | None) -> str:
    return message if path is None or path in message else f"{path}: {message}"


def _config_message(exc: BaseException, owner: str | None) -> tuple[str, str | None]:
    """The message (and fix) of a ValueError / TypeError raised by a config's validation."""
    text = str(exc)
    missing = _MISSING_ARGS.search(text)
    if isinstance(exc, TypeError) and missing:
        return f"{missing.group(1)} is missing the required field(s) {missing.group(2)}.", "add them to the config."
    unexpected = _UNEXPECTED_ARG.search(text)
    if isinstance(exc, TypeError) and unexpected:
        return (f"{unexpected.group(1)} has no field {unexpected.group(2)!r}.",
                "remove it or correct its spelling (see the class's fields in the API reference).")
    return (f"invalid {owner}: {text}" if owner else text), None


def _registry_message(exc: KeyError) -> UserError:
    from sae_lens.registry import SAE_CLASS_REGISTRY

    return UserError(
        f"unknown SAE architecture {exc.args[0]!r}; registered: {sorted(SAE_CLASS_REGISTRY)}.",
        fix="correct `architecture` (wsae_lens's architectures are registered by `import wsae_lens`).",
    )


def _raised_reading_inputs(exc: BaseException) -> bool:
    """Whether a parse error comes from reading an input: under an input function, or directly in CLI code
    (a command parsing its own file), not from data met while working (e.g. an LLM's JSON reply)."""
    frames = list(_frames(exc.__traceback__))
    if any(_is_input_frame(frame) for frame in frames):
        return True
    ours = [frame for frame in frames if _module(frame).startswith(("wsae_lens", "sae_lens"))]
    return bool(ours) and _module(ours[-1]).startswith("wsae_lens.cli")


def _is_hub_unavailable(exc: BaseException) -> bool:
    try:
        from wsae_lens.pipeline.loading import HubUnavailableError
    except ImportError:  # pragma: no cover - moved: then it is not classified
        return False
    return isinstance(exc, HubUnavailableError)


def _parse_error_types() -> tuple[type[BaseException], ...]:
    import json
    import pickle

    import yaml

    types: list[type[BaseException]] = [yaml.YAMLError, json.JSONDecodeError, pickle.UnpicklingError, UnicodeDecodeError]
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors ships with torch/transformers
        pass
    return tuple(types)


def user_error_of(exc: BaseException) -> UserError | None:
    """The :class:`UserError` that ``exc`` stands for, or ``None`` if it is an internal error.

    Click usage errors are not converted here (the app prints them with click's own usage line).
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)):
        if exc.filename is None:  # raised with a message of its own (it says what is missing)
            return UserError(str(exc))
        return UserError(f"{exc.strerror}: {exc.filename}", fix="check the path (and that the file is readable).")
    if _is_hub_unavailable(exc):
        return UserError(str(exc))
    if isinstance(exc, _parse_error_types()) and _raised_reading_inputs(exc):
        path = _file_being_read(exc)
        what = type(exc).__name__
        return UserError(_with_file(f"cannot read the file ({what}: {exc})", path),
                         fix="pass a file of the expected format (see the command's --help).")
    if not isinstance(exc, (ValueError, TypeError, KeyError, IndexError, RuntimeError)):
        return None
    input_frames = [frame for frame in _frames(exc.__traceback__) if _is_input_frame(frame)]
    if not input_frames:
        return None
    innermost = input_frames[-1]
    if isinstance(exc, KeyError) and innermost.f_code.co_name in ("get_sae_class", "get_sae_training_class"):
        return _registry_message(exc)
    config_frames = [f for f in input_frames if f.f_code.co_name in ("__post_init__", "from_dict")]
    path = next((p for p in map(_path_in, reversed(input_frames)) if p is not None), None)
    if isinstance(exc, (ValueError, TypeError)) and config_frames:
        message, fix = _config_message(exc, _owner_name(config_frames[-1]))
        return UserError(_with_file(message, path), fix=fix)
    if isinstance(exc, KeyError):
        message = f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    else:
        message = str(exc)
    loader = input_frames[0].f_code.co_name
    fix = _SAE_FOLDER_FIX if loader in ("load_from_disk", "load_pretrained_sae", "_load_saes") else None
    return UserError(_with_file(message, path), fix=fix)
