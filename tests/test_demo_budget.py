"""`promptcam demo --time-budget`: the schedule chosen from timed steps fits the budget, a budget too small for one
epoch is refused with the minimum, summary.json records the schedule, and the flag has its range. A fake step timer
and a fake clock stand in for the machine; the demo runs use a tiny random DINOv2."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from modeling_promptcam import cli
from modeling_promptcam.data import CLASSES
from modeling_promptcam.data.masks import resize_mask
from modeling_promptcam.data.synthetic import draw_bird
from modeling_promptcam.demo import BudgetTooSmall, DemoOptions, plan_schedule, run_demo
from modeling_promptcam.demo import timing as timing_module
from modeling_promptcam.demo.budget import PATCH_GRIDS, PLANNED_SHARE, fixed_schedule, ladder
from modeling_promptcam.demo.run import cpu_bf16_arguments
from modeling_promptcam.demo.timing import ExpectedEndCallback

IMAGE_SIZE = 112  # an 8 x 8 patch grid with patch 14
RECIPE_STEPS = 13 * 32  # the demo's recipe: 13 epochs of 512 images in batches of 16
# seconds a step on a 2-core CPU without native bf16 (the machine: 4.2 s at 224 px); the smaller sides scale
# with their tokens (patches + CLS + 8 prompts)
SLOW_CPU = {224: 4.2, 168: 4.2 * 153 / 265, 140: 4.2 * 109 / 265}
FAST_CPU = {224: 1.3, 168: 1.3 * 153 / 265, 140: 1.3 * 109 / 265}  # native bf16: 1.3 s at 224 px


class FakeMachine:
    """A step timer and a clock: timing a side costs the warm-up step and two timed steps of the clock's time."""

    def __init__(self, seconds: dict[int, float]):
        self.seconds, self.now, self.timed = seconds, 1000.0, []

    def clock(self) -> float:
        return self.now

    def timer(self, side: int) -> float:
        self.timed.append(side)
        self.now += 3 * self.seconds[side]
        return self.seconds[side]


def plan(budget: float, machine: FakeMachine, **overrides):
    settings = dict(
        sizes=(224, 168, 140),
        patch_size=14,
        train_images=8 * DemoOptions().train_per_class,  # the demo's recipe: 8 classes, 13 epochs of 32 steps
        batch_size=16,
        epochs=DemoOptions().epochs,
        warmup_epochs=1,
        learning_rate=3e-3,
        min_learning_rate=1e-6,
        bf16=False,
        clock=machine.clock,
    )
    return plan_schedule(budget, machine.timer, **{**settings, **overrides})


@pytest.mark.parametrize("machine_seconds", [SLOW_CPU, FAST_CPU], ids=["float32-cpu", "bf16-cpu"])
@pytest.mark.parametrize("budget", [2, 5, 10, 15, 40])
def test_the_chosen_schedule_fits_the_budget(machine_seconds, budget):
    machine = FakeMachine(machine_seconds)
    schedule = plan(budget, machine)
    step = machine_seconds[schedule.image_size]
    # the steps, and the timing already spent, fit the budget with the planned margin
    assert schedule.timing_s == pytest.approx(3 * sum(machine_seconds[side] for side in machine.timed))
    assert schedule.steps * step <= PLANNED_SHARE * (budget * 60 - schedule.timing_s) + 1e-9
    assert schedule.timing_s + schedule.expected_training_s <= budget * 60
    assert schedule.expected_training_s == pytest.approx(schedule.steps * step)
    assert schedule.steps_per_epoch == 32 and schedule.epochs == pytest.approx(schedule.steps / 32, abs=1e-3)
    assert schedule.steps_per_epoch <= schedule.steps <= RECIPE_STEPS  # at least an epoch, never more than the recipe
    if schedule.steps < RECIPE_STEPS:
        # the recipe fits no side: the fastest side is taken, and one step more would not fit there
        assert schedule.image_size == 140 and machine.timed == [224, 168, 140]
        assert (schedule.steps + 1) * step > PLANNED_SHARE * (budget * 60 - schedule.timing_s)
    else:
        # the largest side that holds the recipe: every larger side was timed and did not hold it
        assert machine.timed[-1] == schedule.image_size
        spent = 0.0
        for side in machine.timed[:-1]:
            spent += 3 * machine_seconds[side]
            assert RECIPE_STEPS * machine_seconds[side] > PLANNED_SHARE * (budget * 60 - spent)
    assert schedule.measured_step_seconds == {side: machine_seconds[side] for side in machine.timed}


def test_the_largest_side_that_holds_the_recipe_is_chosen():
    # bf16 CPU, the default 11 min: 416 steps of 1.3 s = 9.0 min at 224 px
    fast = plan(DemoOptions().time_budget, FakeMachine(FAST_CPU))
    assert (fast.image_size, fast.steps, fast.patches, fast.warmup_steps) == (224, RECIPE_STEPS, 256, 32)
    assert "fit 11 min at 224 px" in fast.reason
    # float32 CPU: 224 px needs 29 min, 168 px 17 min; with 20 min the recipe fits at 168 px
    machine = FakeMachine(SLOW_CPU)
    middle = plan(20, machine)
    assert (middle.image_size, middle.steps, middle.patch_grid) == (168, RECIPE_STEPS, 12) and machine.timed == [
        224,
        168,
    ]
    assert "at 224 px they would take 29.1 min" in middle.reason
    # with 11 min none holds it: 140 px, and the warm-up keeps its share (1 of 13 epochs) of the fewer steps
    short = plan(11, FakeMachine(SLOW_CPU))
    assert short.image_size == 140 and short.steps < RECIPE_STEPS
    assert short.warmup_steps == round(short.steps / 13)
    assert f"for the {short.steps} steps that fit" in short.reason
    assert short.training_arguments() == {
        "max_steps": short.steps,
        "warmup_steps": short.warmup_steps,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": 1e-6},
    }


@pytest.mark.parametrize("budget", [0.1, 0.5, 1.0])
def test_a_budget_too_small_for_one_epoch_is_refused_with_the_minimum(budget):
    machine = FakeMachine(SLOW_CPU)
    with pytest.raises(BudgetTooSmall, match="too small for one epoch") as refused:
        plan(budget, machine)
    message = str(refused.value)
    given = float(re.search(r"give --time-budget ([0-9.]+) or more", message).group(1))
    assert given == refused.value.minimum_minutes > budget
    assert "32 steps of 16 images" in message
    # the minimum is enough: the same machine fits one epoch (at least) in it
    assert plan(given, FakeMachine(SLOW_CPU)).steps >= 32
    if machine.timed == [224, 168, 140]:
        # every side was timed: the minimum is the fastest side's, and 0.1 min less does not hold an epoch
        assert "at 140 px" in message and "spent the budget" not in message
        with pytest.raises(BudgetTooSmall):
            plan(round(given - 0.1, 1), FakeMachine(SLOW_CPU))
    else:
        # 6 s: timing 224 px (12.6 s) spent it; the minimum comes from 224 px, more than enough
        assert budget == 0.1 and machine.timed == [224] and "at 224 px" in message


def test_timing_stops_when_it_has_spent_the_budget():
    """On a machine so slow that timing 224 px spends the budget, the smaller sides are not timed (each would spend
    more of it); the refusal's minimum, from what was measured, still holds an epoch."""
    crawling = {side: 20 * seconds for side, seconds in SLOW_CPU.items()}  # 84 s a step at 224 px
    machine = FakeMachine(crawling)
    with pytest.raises(BudgetTooSmall, match="which spent the budget before 168 px") as refused:
        plan(3, machine)
    assert machine.timed == [224]
    assert "at 224 px" in str(refused.value)
    assert plan(refused.value.minimum_minutes, FakeMachine(crawling)).steps >= 24


def test_bad_timer_values_and_sizes_are_refused():
    with pytest.raises(ValueError, match="positive time"):
        plan(10, FakeMachine({224: 0.0, 168: 1.0, 140: 1.0}))
    with pytest.raises(ValueError, match="largest first"):
        plan(10, FakeMachine(SLOW_CPU), sizes=(140, 224))
    with pytest.raises(ValueError, match="minutes > 0"):
        plan(0, FakeMachine(SLOW_CPU))


def test_the_ladder_of_sides():
    assert ladder(224, 14) == (224, 168, 140)  # 256, 144, 100 patches
    assert ladder(224, 16) == (224, 192, 160)
    assert ladder(448, 14) == (448, 224, 168, 140)
    assert ladder(168, 14) == (168, 140)
    assert ladder(IMAGE_SIZE, 14) == (IMAGE_SIZE,)
    assert ladder(224, 14, fixed=True) == (224,)
    schedule = fixed_schedule(
        image_size=224,
        patch_size=14,
        train_images=384,
        batch_size=16,
        epochs=18,
        warmup_epochs=1,
        learning_rate=3e-3,
        min_learning_rate=1e-6,
        bf16=False,
    )
    assert (schedule.steps, schedule.warmup_steps, schedule.time_budget_min) == (432, 24, None)


@pytest.mark.parametrize("grid", PATCH_GRIDS)
def test_every_trait_stays_larger_than_a_patch_at_every_side_of_the_ladder(grid):
    """The ladder's smallest side still leaves each drawn trait more than one patch of area, as the evaluation sees it
    (the 224 px mask resized to the side trained at)."""
    side = grid * 14
    smallest = math.inf
    for class_index, trait in enumerate(CLASSES):
        if trait.part == "none":
            continue
        for index in range(6):
            _, mask = draw_bird(class_index, np.random.default_rng([0, 1, class_index, index]), 224)
            smallest = min(smallest, resize_mask(mask, (side, side)).sum() / 14**2)
    assert smallest > 1.0, f"a trait covers only {smallest:.2f} patches at {side} px"


def test_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    monkeypatch.setattr(timing_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for avx512_bf16, amx, native in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert timing_module.cpu_computes_bf16_natively() is native
        assert cpu_bf16_arguments() == ({"use_cpu": True, "bf16": True} if native else {})


def test_the_progress_shows_the_expected_end_time():
    class State:
        max_steps, global_step = 20, 0

    now = [1_000_000.0]
    lines = []
    callback = ExpectedEndCallback(planned_s=40.0, write=lines.append, clock=lambda: now[0])
    state = State()
    callback.on_train_begin(None, state, None)
    for step in range(1, 21):
        now[0] += 2.5  # 2.5 s a step: 50 s in all, 10 more than planned
        state.global_step = step
        callback.on_step_end(None, state, None)
    assert len(lines) == 11  # the start, then every tenth of the steps
    at = ExpectedEndCallback._at
    assert lines[1] == (
        f"[demo] step 2/20: expected end of training {at(1_000_000 + 50)} (in 0.8 min, planned {at(1_000_000 + 40)})"
    )
    assert lines[-1].startswith(f"[demo] step 20/20: expected end of training {at(1_000_050)} (in 0.0 min")


# ----------------------------------------------------------------------------------------------- the demo itself
@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=IMAGE_SIZE
    )
    folder = tmp_path_factory.mktemp("backbone")
    Dinov2Model(config).save_pretrained(folder)
    return str(folder)


def test_summary_records_the_schedule_the_trainer_followed(tiny_backbone, tmp_path, capsys):
    # 16 training images in batches of 8: 2 steps an epoch, 40 for the recipe's 20 epochs; at 0.1 s a step a budget of
    # 3 s holds only about 28 of them
    timed = []

    def fake_timer(side):
        timed.append(side)
        return 0.1

    options = DemoOptions(
        output_dir=str(tmp_path),
        backbone=tiny_backbone,
        train_per_class=2,
        val_per_class=1,
        epochs=20,
        warmup_epochs=2,
        batch_size=8,
        image_size=IMAGE_SIZE,
        report_images_per_class=1,
        time_budget=0.05,
        cpu_bf16=False,  # float32 whatever the CPU, so the recorded schedule does not depend on the machine
    )
    summary = run_demo(options, step_timer=fake_timer)
    written = json.loads((tmp_path / "summary.json").read_text())["schedule"]
    assert timed == [IMAGE_SIZE]
    assert written == summary["schedule"]
    steps = written["steps"]
    assert steps == math.floor(PLANNED_SHARE * (3 - written["timing_s"]) / 0.1 + 1e-9) < 40
    assert written["expected_training_s"] == pytest.approx(steps * 0.1, abs=0.05)
    assert written["image_size"] == IMAGE_SIZE and written["patch_grid"] == 8 and written["patches"] == 64
    assert written["warmup_steps"] == round(steps * 2 / 20) and written["steps_per_epoch"] == 2
    assert written["time_budget_min"] == 0.05 and written["measured_step_seconds"] == {str(IMAGE_SIZE): 0.1}
    assert written["lr_scheduler"] == "cosine_with_min_lr" and written["bf16"] is False
    assert written["reason"] and written["smallest_trait_patches"] > 0
    printed = capsys.readouterr().out
    assert f"schedule: {steps} steps" in printed and "Why:" in printed
    assert f"step {steps}/{steps}: expected end of training" in printed  # the Trainer ran exactly those steps
    assert summary["settings"]["time_budget"] == 0.05
    report = (tmp_path / "report.html").read_text()
    assert (
        f"trained for {steps} steps ({written['epochs']:g} epochs) at {IMAGE_SIZE} px, time budget 0.05 min" in report
    )


def test_no_budget_trains_the_given_epochs(tiny_backbone, tmp_path):
    def no_timing(side):
        raise AssertionError("nothing is timed without a budget")

    options = DemoOptions(
        output_dir=str(tmp_path),
        backbone=tiny_backbone,
        train_per_class=1,
        val_per_class=1,
        epochs=2,
        warmup_epochs=0,
        batch_size=8,
        image_size=IMAGE_SIZE,
        report_images_per_class=1,
        time_budget=0,
    )
    schedule = run_demo(options, step_timer=no_timing)["schedule"]
    assert (schedule["steps"], schedule["time_budget_min"], schedule["image_size"]) == (2, None, IMAGE_SIZE)


def test_cli_prints_the_schedule_it_trained(tiny_backbone, tmp_path, capsys):
    arguments = ["demo", "--out", str(tmp_path / "d"), "--backbone", tiny_backbone, "--image-size", str(IMAGE_SIZE)]
    arguments += ["--train-per-class", "1", "--val-per-class", "1", "--epochs", "3", "--time-budget", "0"]
    assert cli.main(arguments) == 0
    assert f"; 3 steps at {IMAGE_SIZE} px, " in capsys.readouterr().out.splitlines()[-1]


def test_cli_refuses_a_budget_too_small_before_drawing_the_data(tiny_backbone, tmp_path, capsys):
    out = tmp_path / "d"
    arguments = ["demo", "--out", str(out), "--backbone", tiny_backbone, "--image-size", str(IMAGE_SIZE)]
    assert cli.main([*arguments, "--time-budget", "0.00001"]) == 1  # the real timer: 0.6 ms holds no epoch
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: --time-budget 1e-05 min is too small for one epoch")
    assert re.search(r"give --time-budget [0-9.]+ or more", error)
    assert not (out / "data").exists() and not (out / "training").exists()


@pytest.mark.parametrize("value", ["-1", "1441", "nan", "ten"])
def test_cli_time_budget_range(value, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--time-budget", value])
    assert exited.value.code == 2
    assert "--time-budget" in capsys.readouterr().err


def test_cli_time_budget_help_and_default(capsys):
    _, (options,) = cli.parse_command_line(["demo"])
    assert options.time_budget == 11.0 and options.image_size == 224 and options.epochs == 13
    _, (options,) = cli.parse_command_line(["demo", "--time-budget", "3.5"])
    assert options.time_budget == 3.5
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--time-budget TIME_BUDGET" in text and "a finite number in [0, 1440]) (default: 11.0)" in text
    with pytest.raises(ValueError, match="time_budget must be a finite number in \\[0, 1440\\]"):
        DemoOptions(time_budget=-2)


def test_a_backbone_with_fixed_position_embeddings_keeps_its_side(tmp_path):
    """ViT (like CLIP and SigLIP) has position embeddings of one grid: the budget times and trains only its side;
    DINOv2 gets the whole ladder; a folder of no supported backbone is refused by name."""
    from transformers import BertConfig, ViTConfig

    from modeling_promptcam.demo import choose_schedule

    ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=16
    ).save_pretrained(tmp_path / "vit")
    Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=14).save_pretrained(
        tmp_path / "dinov2"
    )
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "bert")
    machine = FakeMachine({224: 5.0, 168: 5.0 * 153 / 265, 140: 5.0 * 109 / 265})
    options = DemoOptions(time_budget=11)
    vit = choose_schedule(options, str(tmp_path / "vit"), bf16=False, step_timer=machine.timer)
    assert machine.timed == [224] and vit.image_size == 224 and vit.patch_grid == 14 and vit.steps < RECIPE_STEPS
    machine.timed.clear()
    dinov2 = choose_schedule(options, str(tmp_path / "dinov2"), bf16=False, step_timer=machine.timer)
    assert machine.timed == [224, 168, 140] and dinov2.image_size == 140
    with pytest.raises(ValueError, match="'bert' model; the demo trains on one of vit, dinov2"):
        choose_schedule(options, str(tmp_path / "bert"), bf16=False, step_timer=machine.timer)
