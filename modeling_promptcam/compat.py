"""Keeping old spellings working: option fields that were renamed for consistency (`lr` -> `learning_rate`, `out` /
`out_dir` -> `output_dir`) still accept their old keyword, with a DeprecationWarning. The one place for that rule."""

from __future__ import annotations

import functools
import warnings


def renamed_fields(**renames: str):
    """Class decorator for an options dataclass: `old=new` pairs whose old keyword the constructor still accepts
    (and whose old attribute name still reads and writes the new field), each use warning once per call site."""

    def decorate(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{cls.__name__}: give {new}= (or its old name {old}=), not both.")
                    warnings.warn(
                        f"{cls.__name__}({old}=...) is deprecated; use {new}=... instead.", DeprecationWarning, 2
                    )
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for old, new in renames.items():
            setattr(cls, old, _alias(cls.__name__, old, new))
        return cls

    return decorate


def _alias(owner: str, old: str, new: str) -> property:
    def read(self):
        warnings.warn(f"{owner}.{old} is deprecated; read {owner}.{new} instead.", DeprecationWarning, 2)
        return getattr(self, new)

    def write(self, value):
        warnings.warn(f"{owner}.{old} is deprecated; set {owner}.{new} instead.", DeprecationWarning, 2)
        setattr(self, new, value)

    return property(read, write, doc=f"Deprecated alias of `{new}`.")


__all__ = ["renamed_fields"]
