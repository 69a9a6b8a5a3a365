"""The machine-dependent half of the demo's time budget (the pure half is `demo/budget.py`): whether this CPU computes
bf16 natively, a timer of one real training step, and a `TrainerCallback` that shows when training will end."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import datetime

import torch
from transformers import TrainerCallback

from ..data.synthetic import class_names
from ..training.backbone import build_model
from ..training.options import TrainOptions

X86 = ("x86_64", "amd64", "i386", "i686")


def cpu_computes_bf16_natively() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware: AVX512-BF16 or AMX on x86, the BF16 extension on Arm.

    oneDNN's own check (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) also answers yes on x86 CPUs with AVX-512 but
    without BF16 (Skylake-X, Cascade Lake), where bf16 is emulated and a step is no faster than float32, so on x86
    the CPU's flags decide; elsewhere (Arm) oneDNN's check is the flag check.
    """
    if platform.machine().lower() in X86:
        flags = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(bool(flag()) for flag in flags if flag is not None)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TrainingStepTimer:
    """Seconds of one training step of the demo's model on this machine: forward, backward and an AdamW update of a
    batch of `batch_size` random images at a given side, under the same bf16 autocast as training when `bf16`.

    The model is built once (the backbone's weights, new prompts and head, as training builds it) and reused for
    every side; each side runs `warmup_steps` untimed steps first (the first step at a new shape sets up kernels),
    then the median of `timed_steps` timed ones is its time. What training adds (loading the images, logging) is
    left out; `demo/budget.py` plans only part of the budget for that reason. `compile_step` runs the step under
    `torch.compile` (benchmarks/bench_demo_step.py measures that lever; the demo does not compile).
    """

    def __init__(
        self,
        backbone: str,
        batch_size: int,
        learning_rate: float,
        prompt_mode: str,
        bf16: bool,
        warmup_steps: int = 1,
        timed_steps: int = 2,
        seed: int = 0,
        compile_step: bool = False,
    ):
        options = TrainOptions(
            backbone=backbone, data_dir=None, output_dir="", prompt_mode=prompt_mode, learning_rate=learning_rate
        )
        from transformers.utils import logging as transformers_logging

        torch.manual_seed(seed)
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # the load report of new prompts and head: training prints it
        try:
            self.model, _ = build_model(options, options.recipe(), class_names())
        finally:
            transformers_logging.set_verbosity(verbosity)
        self.model.train()
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=learning_rate)
        self.batch_size, self.bf16 = batch_size, bf16
        self.warmup_steps, self.timed_steps = warmup_steps, timed_steps
        self.num_labels = self.model.config.num_labels
        self.generator = torch.Generator().manual_seed(seed)
        if compile_step:
            self._step = torch.compile(self._step)

    @property
    def patch_size(self) -> int:
        return int(self.model.config.backbone_config.patch_size)

    def _step(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, image_size: int) -> float:
        pixel_values = torch.randn(self.batch_size, 3, image_size, image_size, generator=self.generator)
        labels = torch.randint(0, self.num_labels, (self.batch_size,), generator=self.generator)
        for _ in range(self.warmup_steps):
            self._step(pixel_values, labels)
        times = []
        for _ in range(self.timed_steps):
            started = time.perf_counter()
            self._step(pixel_values, labels)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def close(self) -> None:
        """Free the timing model before training builds its own."""
        del self.model, self.optimizer


class ExpectedEndCallback(TrainerCallback):
    """Shows, about every tenth of the training, the step reached and the clock time training is expected to end
    (from the steps so far), beside the time the schedule planned."""

    def __init__(self, planned_s: float | None = None, write=None, clock=time.time):
        from tqdm.auto import tqdm

        self.planned_s, self.clock = planned_s, clock
        self.write = write or tqdm.write  # above the progress bar, not through it
        self.lines: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()
        if self.planned_s is not None:
            self.say(f"training starts; planned end {self._at(self.started + self.planned_s)}")

    def on_step_end(self, args, state, control, **kwargs):
        every = max(1, state.max_steps // 10)
        if state.global_step % every and state.global_step != state.max_steps:
            return
        now = self.clock()
        remaining = (now - self.started) / state.global_step * (state.max_steps - state.global_step)
        planned = "" if self.planned_s is None else f", planned {self._at(self.started + self.planned_s)}"
        self.say(
            f"step {state.global_step}/{state.max_steps}: expected end of training {self._at(now + remaining)} "
            f"(in {remaining / 60:.1f} min{planned})"
        )

    def say(self, text: str) -> None:
        self.lines.append(text)
        self.write(f"[demo] {text}")

    @staticmethod
    def _at(seconds: float) -> str:
        return datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


__all__ = ["ExpectedEndCallback", "TrainingStepTimer", "cpu_computes_bf16_natively"]
