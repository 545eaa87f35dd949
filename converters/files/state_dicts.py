"""Which state dict of a training checkpoint to use.

A training script saves more than the weights: timm's
`{'state_dict', 'state_dict_ema', 'optimizer', 'epoch', ...}`, an EMA model
beside the raw one (`model_ema`), a `model` entry with an `optimizer`. Any
entry that is a mapping of tensors is a candidate state dict. Without a
choice, the first of `DEFAULT_ORDER` present is taken (as always), and when
the file holds several candidates the choice is said (`StateDictChoice.note`)
so nobody converts the raw weights believing they hold the EMA ones;
`--weights-key NAME` (`weights_key=`) picks any entry by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from converters.files.tensor_check import show
from converters.table.errors import CheckpointError

# Taken without being asked for, in this order: the official code's, then the usual training scripts'.
DEFAULT_ORDER = ("state_dict", "model", "model_state_dict")
OPTION = "--weights-key"
HELP = ("which state dict of a training checkpoint to use (state_dict, state_dict_ema, model_ema, model, ...); "
        f"default: the first of {', '.join(DEFAULT_ORDER)} present, said when the file holds several")


def add_argument(parser) -> None:
    """The one definition of --weights-key, for every command that reads weights."""
    parser.add_argument(OPTION, dest="weights_key", metavar="NAME", help=HELP)


def _is_tensor(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, Mapping)


def _is_state_dict(v) -> bool:
    return isinstance(v, Mapping) and bool(v) and all(isinstance(k, str) and _is_tensor(x) for k, x in v.items())


@dataclass
class StateDictChoice:
    """The entry a checkpoint's weights were taken from."""

    key: Optional[str] = None  # None: the file is a bare state dict
    candidates: List[str] = field(default_factory=list)  # every entry holding a state dict, in file order
    asked: bool = False  # chosen with --weights-key / weights_key=

    @property
    def note(self) -> Optional[str]:
        """What to tell the user: which entry, and how to choose another,
        whenever there was a choice to make."""
        if self.key is None:
            return None
        if self.asked:
            return f"took the state dict '{self.key}' ({OPTION})"
        others = [c for c in self.candidates if c != self.key]
        if not others:
            return None if self.key in DEFAULT_ORDER else f"took the state dict '{self.key}', the only one in the file"
        return (f"took the state dict '{self.key}', one of {len(self.candidates)} in the file "
                f"({', '.join(self.candidates)}); {OPTION} {others[0]} (or another name) takes another")

    def to_dict(self) -> dict:
        return {"key": self.key, "candidates": list(self.candidates), "asked": self.asked, "note": self.note}


def _names(keys) -> str:
    return ", ".join(show(k, 40) for k in keys) or "none"


def choose(obj, source: str, weights_key: Optional[str] = None) -> Tuple[object, StateDictChoice]:
    """(the chosen state dict, or `obj` itself when it is bare; the choice)."""
    if not isinstance(obj, Mapping):
        if weights_key is not None:
            raise CheckpointError(source, f"holds no entries to choose from with {OPTION} {weights_key} (found "
                                          f"{type(obj).__name__})")
        return obj, StateDictChoice()
    candidates = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v)]
    if weights_key is not None:
        if weights_key not in obj:
            if not candidates and _is_state_dict(obj):
                raise CheckpointError(source, f"is a bare state dict (tensors at the top level), with no entry "
                                              f"'{show(weights_key, 40)}' to choose; drop {OPTION}")
            raise CheckpointError(source, f"has no entry '{show(weights_key, 40)}' ({OPTION}); the state dicts "
                                          f"it holds: {_names(candidates)} (all entries: {_names(list(obj)[:12])})")
        value = obj[weights_key]
        if not isinstance(value, Mapping):
            raise CheckpointError(source, f"entry '{show(weights_key, 40)}' ({OPTION}) is not a state dict (found "
                                          f"{type(value).__name__}); the state dicts it holds: {_names(candidates)}")
        return value, StateDictChoice(weights_key, candidates, asked=True)
    for key in DEFAULT_ORDER:
        if key in obj and isinstance(obj[key], Mapping):
            return obj[key], StateDictChoice(key, candidates)
    if len(candidates) == 1:
        return obj[candidates[0]], StateDictChoice(candidates[0], candidates)
    if len(candidates) > 1:
        raise CheckpointError(source, f"holds {len(candidates)} state dicts ({_names(candidates)}) and none of "
                                      f"the usual names ({', '.join(DEFAULT_ORDER)}); choose one with "
                                      f"{OPTION} NAME")
    return obj, StateDictChoice()


__all__ = ["DEFAULT_ORDER", "HELP", "OPTION", "StateDictChoice", "add_argument", "choose"]
