"""Deprecated import path: `modeling_promptcam.small_datasets` moved out of the package, to
`benchmarks/small_datasets.py` of the source repository (it reads benchmark data; it is not part of the library).

In a source checkout (an editable install) this module still loads it from there, with a DeprecationWarning; an
installed package has no benchmarks/ and raises ImportError saying where the reader went."""

import importlib.util
import warnings
from pathlib import Path

_SOURCE = Path(__file__).resolve().parent.parent / "benchmarks" / "small_datasets.py"
if not _SOURCE.is_file():
    raise ImportError(
        "modeling_promptcam.small_datasets moved to benchmarks/small_datasets.py of the source repository; run the "
        "benchmarks from a checkout (python benchmarks/bench_accuracy.py) and import it from there."
    )
_spec = importlib.util.spec_from_file_location("benchmarks.small_datasets", _SOURCE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
__all__ = sorted({*_module.__all__, "FASHION_MNIST_DIR"})
globals().update({name: getattr(_module, name) for name in __all__})

warnings.warn(
    "modeling_promptcam.small_datasets is deprecated; it lives in benchmarks/small_datasets.py of the repository.",
    DeprecationWarning,
    stacklevel=2,
)
