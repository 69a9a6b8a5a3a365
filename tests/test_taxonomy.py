"""Taxonomy keys: the table and its checks, node and level training end to end on a tiny hierarchical folder,
prediction (top-down equals walking the saved node models by hand), saving and loading (and its refusals), the keys,
both commands, and the synthetic taxonomy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_promptcam import PromptCamTaxonomy, load_prompt_adapter
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.data.images import open_rgb
from modeling_promptcam.taxonomy import (
    ROOT,
    TaxonomyError,
    TaxonomyFolderError,
    plan_units,
    read_taxonomy,
    run_taxonomy_training,
)
from modeling_promptcam.taxonomy.key import class_key, explain_taxonomy, plot_taxonomy_key
from modeling_promptcam.training import TrainOptions, run_training
from tests.helpers.taxonomy import SPECIES, write_hierarchical_folder, write_taxonomy_table
from tests.helpers.training import write_tiny_backbone

FAST = dict(epochs=4, warmup_epochs=1, batch_size=8, learning_rate=0.05, image_size=32)
CLASSES = sorted(SPECIES)
# chance at each level of the tiny folder's validation split (its groups are balanced by species)
CHANCE = {"family": 0.5, "genus": 1 / 3, "species": 1 / 5}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxonomy")
    write_hierarchical_folder(root / "data", train_per_class=10, val_per_class=4)
    write_taxonomy_table(root / "taxonomy.csv")
    write_tiny_backbone(root / "backbone")
    write_tiny_backbone(root / "other_backbone", seed=1)
    return root


def train_arguments(workspace, output, *more):
    return [
        "train",
        "--backbone",
        str(workspace / "backbone"),
        "--data-dir",
        str(workspace / "data"),
        "--output-dir",
        str(output),
        "--epochs",
        str(FAST["epochs"]),
        "--warmup-epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--image-size",
        "32",
        "--taxonomy",
        str(workspace / "taxonomy.csv"),
        *more,
    ]


@pytest.fixture(scope="module")
def node_run(workspace):
    """The node-mode run, trained through `promptcam train --taxonomy` (the command itself is under test)."""
    output = workspace / "node_run"
    code = cli_main(train_arguments(workspace, output))
    assert code == 0
    return output


@pytest.fixture(scope="module")
def level_run(workspace):
    options = TrainOptions(
        backbone=str(workspace / "backbone"),
        data_dir=str(workspace / "data"),
        output_dir=str(workspace / "lvl"),
        taxonomy=str(workspace / "taxonomy.csv"),
        taxonomy_mode="level",
        **FAST,
    )
    summary = run_taxonomy_training(options, progress=False)
    return workspace / "lvl", summary


def validation_images(workspace):
    paths = sorted((workspace / "data" / "val").glob("*/*.png"))
    return [open_rgb(path) for path in paths], [path.parent.name for path in paths]


# ----------------------------------------------------------------------------------------------------- the table
def test_a_table_is_read_from_either_end_and_as_tsv(tmp_path):
    taxonomy = read_taxonomy(write_taxonomy_table(tmp_path / "t.csv"), CLASSES)
    assert taxonomy.levels == ("family", "genus", "species")
    assert taxonomy.classes == tuple(CLASSES)
    assert taxonomy.ancestors("g_dark") == {"family": "Greens", "genus": "Viridis", "species": "g_dark"}
    assert taxonomy.children(None, ROOT) == ("Greens", "Reds")
    assert taxonomy.children("family", "Greens") == ("Caerul", "Viridis")
    # root first in the header, and tab-separated: the same taxonomy
    rows = {name: (genus, family) for name, (genus, family, _) in SPECIES.items()}
    lines = ["family\tgenus\tspecies"] + [f"{f}\t{g}\t{s}" for s, (g, f) in rows.items()]
    (tmp_path / "t.tsv").write_text("\n".join(lines))
    assert read_taxonomy(tmp_path / "t.tsv", CLASSES).to_dict() == taxonomy.to_dict()
    # --levels picks and orders the columns
    two = read_taxonomy(tmp_path / "t.csv", CLASSES, levels=("family", "species"))
    assert two.levels == ("family", "species") and two.children("family", "Reds") == ("r_dark", "r_light")


def test_a_table_that_is_not_a_tree_names_the_rows(tmp_path):
    rows = dict(SPECIES)
    rows["g_dark"] = ("Viridis", "Reds", None)  # Viridis now under Greens (row 4) and Reds (row 5)
    with pytest.raises(TaxonomyError) as error:
        read_taxonomy(write_taxonomy_table(tmp_path / "t.csv", rows), CLASSES)
    message = str(error.value)
    assert "not a tree" in message and "'Viridis'" in message
    assert "Greens (rows 4)" in message and "Reds (rows 5)" in message and "exactly one parent" in message


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda rows: rows.pop("r_dark"), "class(es) with images are not in the table: r_dark"),
        (lambda rows: rows.update(extra=("Rubus", "Reds", None)), "no images: extra (row 7)"),
        (lambda rows: rows.update({"r_dark ": ("Rubus", "Reds", None)}), "more than once: r_dark (rows 3, 7)"),
        (lambda rows: rows.update(r_dark=("", "Reds", None)), "row 3: empty genus"),
    ],
)
def test_table_errors_name_the_rows_and_the_fix(tmp_path, change, expected):
    rows = dict(SPECIES)
    change(rows)
    with pytest.raises(TaxonomyError) as error:
        read_taxonomy(write_taxonomy_table(tmp_path / "t.csv", rows), CLASSES)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "header, levels, expected",
    [
        ("species,genus,genus", None, "level names appear more than once: genus"),
        ("species,,family", None, "level 2 has an empty name"),
        (None, ("order", "species"), "--levels names order"),
    ],
)
def test_header_errors(tmp_path, header, levels, expected):
    path = write_taxonomy_table(tmp_path / "t.csv", header=header or "species,genus,family")
    with pytest.raises(TaxonomyError) as error:
        read_taxonomy(path, CLASSES, levels)
    assert expected in str(error.value)


def test_short_rows_and_missing_files_are_errors(tmp_path):
    (tmp_path / "t.csv").write_text("species,genus,family\nr_dark,Rubus\n")
    with pytest.raises(TaxonomyError, match="row 2: 2 cells but the header has 3"):
        read_taxonomy(tmp_path / "t.csv")
    with pytest.raises(TaxonomyError, match="does not exist"):
        read_taxonomy(tmp_path / "missing.csv")


def test_single_group_levels_and_nodes_are_skipped_by_name(tmp_path):
    taxonomy = read_taxonomy(write_taxonomy_table(tmp_path / "t.csv"), CLASSES)
    units, skipped = plan_units(taxonomy, "node")
    assert [(u.level, u.parent, u.classes) for u in units] == [
        ("family", ROOT, ("Greens", "Reds")),
        ("genus", "Greens", ("Caerul", "Viridis")),
        ("species", "Rubus", ("r_dark", "r_light")),
        ("species", "Viridis", ("g_dark", "g_light")),
    ]
    assert skipped == [
        "family Reds has a single genus (Rubus): nothing to learn, skipped",
        "genus Caerul has a single species (b_light): nothing to learn, skipped",
    ]
    one_order = {name: (genus, family, None) for name, (genus, family, _) in SPECIES.items()}
    path = tmp_path / "o.csv"
    path.write_text(
        "species,genus,family,order\n" + "\n".join(f"{s},{g},{f},Passeriformes" for s, (g, f, _) in one_order.items())
    )
    units, skipped = plan_units(read_taxonomy(path, CLASSES), "level")
    assert [u.level for u in units] == ["family", "genus", "species"]
    assert skipped == ["level order has a single group (Passeriformes): nothing to learn, skipped"]


def test_a_node_whose_children_have_too_few_images_stops_before_training(workspace, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(workspace / "data", data)
    for path in sorted((data / "train" / "b_light").glob("*.png"))[1:]:
        path.unlink()
    options = TrainOptions(
        backbone=str(workspace / "backbone"),
        data_dir=str(data),
        output_dir=str(tmp_path / "run"),
        taxonomy=str(workspace / "taxonomy.csv"),
        **FAST,
    )
    with pytest.raises(TaxonomyError) as error:
        run_taxonomy_training(options, progress=False)
    assert "fewer than 2 training images" in str(error.value) and "node Greens" in str(error.value)
    assert "Caerul (1)" in str(error.value)
    assert not (tmp_path / "run" / "models").exists()  # nothing was trained


# ----------------------------------------------------------------------------------------------------- training
def test_node_mode_learns_every_level_and_writes_one_adapter_per_node(node_run):
    summary = json.loads((node_run / "training_summary.json").read_text())
    print("node mode, top-down validation accuracy:", summary["validation"]["top_down"])
    for level, chance in CHANCE.items():
        assert summary["validation"]["top_down"][level] > chance + 0.2, level
    final = node_run / "final"
    info = json.loads((final / "taxonomy.json").read_text())
    assert info["mode"] == "node" and [u["id"] for u in info["units"]] == [
        "root",
        "node-001-Greens",
        "node-002-Rubus",
        "node-003-Viridis",
    ]
    assert len(info["skipped"]) == 2 and info["fingerprint"]
    for unit in info["units"]:
        files = {path.name for path in (final / unit["id"]).iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "promptcam_config.json"} <= files
        assert "model.safetensors" not in files  # prompts only: the backbone is referenced, not copied
        # taxonomy models are one-vs-rest unless asked otherwise (docs/taxonomy.md, "Why one-vs-rest")
        config = json.loads((final / unit["id"] / "promptcam_config.json").read_text())
        assert config["classification_loss"] == "one_vs_rest", unit["id"]
    assert (final / "preprocessor_config.json").is_file()


def test_the_classification_loss_of_taxonomy_models_can_be_cross_entropy(workspace, tmp_path):
    output = tmp_path / "ce"
    arguments = train_arguments(
        workspace, output, "--taxonomy-mode", "level", "--classification-loss", "cross_entropy"
    )
    assert cli_main(arguments) == 0
    info = json.loads((output / "final" / "taxonomy.json").read_text())
    for unit in info["units"]:
        config = json.loads((output / "final" / unit["id"] / "promptcam_config.json").read_text())
        assert config["classification_loss"] == "cross_entropy", unit["id"]


def test_level_mode_learns_every_level_flat_and_top_down(level_run):
    _, summary = level_run
    validation = summary["validation"]
    print("level mode:", validation)
    for level, chance in CHANCE.items():
        assert validation["top_down"][level] > chance + 0.2, level
        assert validation["flat"][level] > chance + 0.2, level
    assert 0.0 <= validation["consistency"] <= 1.0
    assert [unit for unit in summary["models"]] == ["level-family", "level-genus", "level-species"]


def test_level_mode_predictions_carry_flat_levels_and_their_consistency(workspace, level_run):
    model = PromptCamTaxonomy.from_pretrained(level_run[0] / "final")
    images, _ = validation_images(workspace)
    for prediction in model.predict(images[:6]):
        assert set(prediction) == set(prediction.flat) == {"family", "genus", "species"}
        flat = {level: label for level, (label, _) in prediction.flat.items()}
        walks = model.taxonomy.ancestors(flat["species"])
        assert prediction.consistent == (walks == flat)
        # top-down: a path of the tree, its probability the product of the conditional choices
        path = model.taxonomy.ancestors(prediction["species"][0])
        assert {level: label for level, (label, _) in prediction.items()} == path
        assert prediction["species"][1] == pytest.approx(np.prod(list(prediction.conditional.values())))


def test_top_down_prediction_equals_walking_the_saved_node_models_by_hand(workspace, node_run):
    final = node_run / "final"
    taxonomy_model = PromptCamTaxonomy.from_pretrained(final)
    info = json.loads((final / "taxonomy.json").read_text())
    by_parent = {unit["parent"]: unit for unit in info["units"]}
    processor = taxonomy_model.image_processor
    images, _ = validation_images(workspace)
    predictions = taxonomy_model.predict(images)
    walked, loaded = 0, {}
    for image, prediction in zip(images, predictions):
        pixel_values = processor(image, return_tensors="pt").pixel_values
        parent, above, probability, expected = ROOT, None, 1.0, {}
        for level in ("family", "genus", "species"):
            unit = by_parent.get(parent)
            if unit is None or unit["level"] != level:  # a single child: chosen with probability 1
                (child,) = taxonomy_model.taxonomy.children(above, parent)
                choice = 1.0
            else:
                if unit["id"] not in loaded:  # each node's adapter on its own copy of the backbone
                    loaded[unit["id"]] = load_prompt_adapter(str(final / unit["id"]), str(workspace / "backbone"))
                model = loaded[unit["id"]]
                with torch.no_grad():
                    scores = model(pixel_values).logits.softmax(-1)[0]
                child, choice = model.config.id2label[int(scores.argmax())], float(scores.max())
                walked += 1
            probability *= choice
            expected[level] = (child, probability)
            parent, above = child, level
        assert [label for label, _ in prediction.values()] == [label for label, _ in expected.values()]
        for level in expected:
            assert prediction[level][1] == pytest.approx(expected[level][1], rel=1e-4, abs=1e-6)
    assert walked >= len(images) * 2  # every image passed through at least two node models


def test_save_and_load_round_trip(workspace, node_run, tmp_path):
    model = PromptCamTaxonomy.from_pretrained(node_run / "final")
    images, _ = validation_images(workspace)
    before = model.predict(images)
    model.save_pretrained(tmp_path / "copy")
    again = PromptCamTaxonomy.from_pretrained(tmp_path / "copy")
    after = again.predict(images)
    assert again.mode == "node" and [u.id for u in again.units] == [u.id for u in model.units]
    for first, second in zip(before, after):
        assert [label for label, _ in first.values()] == [label for label, _ in second.values()]
        assert [p for _, p in first.values()] == pytest.approx([p for _, p in second.values()], abs=1e-5)
    # one backbone in memory, shared by every node's model
    backbones = {id(member.backbone) for member in again.models.values()}
    assert len(backbones) == 1
    # pixel_values work as well as PIL images
    pixel_values = again.image_processor(images[:2], return_tensors="pt").pixel_values
    for first, second in zip(again.predict(pixel_values), after[:2]):
        assert [label for label, _ in first.values()] == [label for label, _ in second.values()]
        assert [p for _, p in first.values()] == pytest.approx([p for _, p in second.values()], abs=1e-5)


def test_loading_refuses_adapters_that_do_not_match_or_another_backbone(workspace, node_run, tmp_path):
    broken = tmp_path / "missing"
    shutil.copytree(node_run / "final", broken)
    shutil.rmtree(broken / "node-002-Rubus")
    with pytest.raises(TaxonomyFolderError, match="do not match its taxonomy: node-002-Rubus/adapter_config.json"):
        PromptCamTaxonomy.from_pretrained(broken)

    dropped = tmp_path / "dropped"
    shutil.copytree(node_run / "final", dropped)
    info = json.loads((dropped / "taxonomy.json").read_text())
    info["units"] = info["units"][:-1]
    (dropped / "taxonomy.json").write_text(json.dumps(info))
    with pytest.raises(TaxonomyFolderError, match="no model for node Viridis"):
        PromptCamTaxonomy.from_pretrained(dropped)

    with pytest.raises(TaxonomyFolderError, match="other weights than the backbone"):
        PromptCamTaxonomy.from_pretrained(node_run / "final", backbone=str(workspace / "other_backbone"))

    moved = tmp_path / "moved"
    shutil.copytree(node_run / "final", moved)
    config = json.loads((moved / "root" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(workspace / "other_backbone")
    (moved / "root" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(TaxonomyFolderError, match="trained on another backbone"):
        PromptCamTaxonomy.from_pretrained(moved)

    with pytest.raises(FileNotFoundError, match="not a taxonomy folder"):
        PromptCamTaxonomy.from_pretrained(workspace / "backbone")


# ----------------------------------------------------------------------------------------------------- keys
def test_the_key_of_an_image_follows_the_predicted_path(workspace, node_run):
    model = PromptCamTaxonomy.from_pretrained(node_run / "final")
    images, _ = validation_images(workspace)
    image = images[0]
    key = model.explain(image, stop=2)
    prediction = model.predict([image])[0]
    assert key.prediction == dict(prediction)
    assert [step.level for step in key.steps] == ["family", "genus", "species"]
    for step in key.steps:
        if step.decided:
            unit = model.unit_for(step.level, step.parent)
            assert set(step.siblings) == set(unit.classes) - {step.chosen}
            assert step.trait_maps.shape == (4, 4, 4)  # tiny backbone: 4 heads, 32 px / 8 px patches
            assert len(step.ranking.top_traits) == 2 and sorted(step.ranking.ranked_heads) == [0, 1, 2, 3]
            assert step.ranking.target_class == unit.classes.index(step.chosen)
    figure = plot_taxonomy_key(key)
    assert len([axis for axis in figure.axes if axis.images]) == sum(1 + 2 for s in key.steps if s.decided)
    assert explain_taxonomy(model, image.convert("L"), stop=1).steps[0].ranking.stop == 1


def test_the_key_of_a_class_counts_recurring_heads(workspace, node_run):
    model = PromptCamTaxonomy.from_pretrained(node_run / "final")
    paths = sorted((workspace / "data" / "val" / "g_dark").glob("*.png"))
    key = class_key(model, [open_rgb(path) for path in paths], "g_dark", stop=1)
    assert [(level.level, level.group) for level in key.levels] == [
        ("family", "Greens"),
        ("genus", "Viridis"),
        ("species", "g_dark"),
    ]
    for level in key.levels:
        assert sum(level.head_counts.values()) == len(paths)  # one top trait per image (stop=1)
        assert all(level.head_counts[head] >= len(paths) / 2 for head in level.recurring)
        assert 0 <= level.correct <= len(paths)
    with pytest.raises(ValueError, match="unknown class 'nope'"):
        class_key(model, [open_rgb(paths[0])], "nope")


def test_taxonomy_key_command_writes_figures_and_the_report(workspace, node_run, tmp_path, capsys):
    images = sorted((workspace / "data" / "val" / "r_dark").glob("*.png"))[:2]
    out = tmp_path / "keys"
    arguments = ["taxonomy-key", "--model", str(node_run / "final"), *map(str, images), "--out", str(out)]
    code = cli_main([*arguments, "--class-key", "r_dark", "--stop", "1"])
    assert code == 0
    assert "Wrote the keys of 2 of 2 image(s)" in capsys.readouterr().out
    for path in images:
        assert Image.open(out / path.stem / "taxonomy_key.png").size[0] > 100
    assert (out / "class_key_r_dark.png").is_file()
    report = (out / "report.html").read_text()
    assert "Class key: r_dark" in report and report.count("data:image/png;base64") == 3
    assert "path probability" in report and "top traits (heads)" in report

    code = cli_main(
        ["taxonomy-key", "--model", str(node_run / "final"), str(tmp_path / "gone.png"), "--out", str(out)]
    )
    assert code == 1
    assert f"error: {tmp_path / 'gone.png'}: no such file" in capsys.readouterr().err

    code = cli_main(["taxonomy-key", "--model", str(workspace / "backbone"), str(images[0]), "--out", str(out)])
    assert code == 1
    assert "not a taxonomy folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------- commands
def test_train_command_prints_per_level_accuracy_and_resume_skips_finished_nodes(
    workspace, node_run, tmp_path, capsys, caplog
):
    capsys.readouterr()
    copy = tmp_path / "run"
    shutil.copytree(node_run, copy)
    with caplog.at_level("WARNING", logger="modeling_promptcam.taxonomy.training"):
        code = cli_main(train_arguments(workspace, copy, "--resume"))
    assert code == 0
    out = capsys.readouterr().out
    assert "skipped: family Reds has a single genus (Rubus)" in out
    assert "Top-down validation accuracy per level: family " in out and f"taxonomy in {copy / 'final'}" in out
    skipped = [record.getMessage() for record in caplog.records if "already trained (--resume)" in record.getMessage()]
    assert len(skipped) == 4 and "taxonomy 4/4: node Viridis (2 species children) already trained" in skipped[-1]
    assert "0 remain" in skipped[-1]


def test_taxonomy_min_steps_raises_the_epochs_of_small_models_only(workspace, tmp_path, capsys):
    """Every model takes at least --taxonomy-min-steps optimizer steps, and less than one epoch more; --epochs stays
    the floor; a resume with another floor is refused (the plan records it)."""
    output = tmp_path / "run"
    arguments = train_arguments(workspace, output, "--taxonomy-min-steps", "20")
    arguments[arguments.index("--epochs") + 1] = "2"
    assert cli_main(arguments) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    batch = 8
    epochs = {}
    for unit_id, model in summary["models"].items():
        steps_per_epoch = -(-model["train_images"] // batch)
        assert 20 <= model["steps"] < 20 + steps_per_epoch, (unit_id, model["steps"], steps_per_epoch)
        assert model["steps"] == model["recipe"]["epochs"] * steps_per_epoch
        epochs[model["train_images"]] = model["recipe"]["epochs"]
    # the root (50 images: 7 steps an epoch) needs 3 epochs, a 20-image node (3 steps an epoch) 7
    assert epochs == {50: 3, 30: 5, 20: 7}
    capsys.readouterr()
    changed = train_arguments(workspace, output, "--taxonomy-min-steps", "30", "--resume")
    assert cli_main(changed) == 1
    assert "was started with another taxonomy or mode" in capsys.readouterr().err
    # without a taxonomy the floor would be ignored: refused before anything is read
    flat = train_arguments(workspace, tmp_path / "flat", "--taxonomy-min-steps", "20")
    flat = flat[: flat.index("--taxonomy")] + flat[flat.index("--taxonomy") + 2 :]
    assert cli_main(flat) == 1
    assert "error: --taxonomy-min-steps applies to taxonomy training only" in capsys.readouterr().err
    assert not (tmp_path / "flat").exists()
    # so is a taxonomy mode (level would otherwise be dropped without a word)
    flat_mode = flat[: flat.index("--taxonomy-min-steps")] + ["--taxonomy-mode", "level"]
    assert cli_main(flat_mode) == 1
    assert "error: --taxonomy-mode level applies to taxonomy training only" in capsys.readouterr().err
    assert not (tmp_path / "flat").exists()


def test_train_command_bad_taxonomy_input(workspace, tmp_path, capsys):
    arguments = train_arguments(workspace, tmp_path / "run")[:-2]
    assert cli_main([*arguments, "--taxonomy", str(tmp_path / "missing.csv")]) == 1
    assert f"error: --taxonomy {tmp_path / 'missing.csv'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_code:  # a --levels that cannot be read is a usage error
        cli_main([*arguments, "--levels", "family,,species"])
    assert exit_code.value.code == 2
    assert "give comma-separated level names" in capsys.readouterr().err
    # an image folder needs the table: --levels alone names the columns of a --dataset
    assert cli_main([*arguments, "--levels", "family,species"]) == 1
    assert "--data-dir needs --taxonomy FILE" in capsys.readouterr().err


def test_train_command_refuses_a_table_that_is_not_a_tree(workspace, tmp_path, capsys):
    rows = dict(SPECIES)
    rows["g_dark"] = ("Viridis", "Reds", None)
    table = write_taxonomy_table(tmp_path / "bad.csv", rows)
    arguments = train_arguments(workspace, tmp_path / "run")[:-2] + ["--taxonomy", str(table)]
    assert cli_main(arguments) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a tree" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "models").exists()


# ----------------------------------------------------------------------------------------------------- synthetic
def test_the_synthetic_taxonomy_is_deterministic_and_each_level_has_its_own_trait(tmp_path, capsys):
    from modeling_promptcam.data.synthetic import TAXONOMY_LEVELS, draw_taxonomy_bird, level_mask_path

    arguments = ["synthetic", "--taxonomy", "--train-per-class", "2", "--val-per-class", "1", "--image-size", "64"]
    assert cli_main([*arguments, "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "3-level taxonomy of 8 species" in capsys.readouterr().out
    assert cli_main([*arguments, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    first = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert first == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    for relative in first:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    classes = sorted(p.name for p in (tmp_path / "a" / "train").iterdir())
    taxonomy = read_taxonomy(tmp_path / "a" / "taxonomy.csv", classes)
    assert taxonomy.levels == ("family", "genus", "species") and len(taxonomy.classes) == 8
    image = sorted((tmp_path / "a" / "train" / "striped_tufted_forktail").glob("*.png"))[0]
    masks = {level: np.asarray(Image.open(level_mask_path(tmp_path / "a", level, image))) > 0 for level in CHANCE}
    assert all(mask.any() for mask in masks.values())
    assert not (masks["family"] & masks["species"]).any()  # the wing and the tail are apart

    # a level's choice changes the image only inside that level's trait masks (the same random draw otherwise)
    drawn = {path: draw_taxonomy_bird(path, np.random.default_rng(3)) for path in [(0, 0, 0), (1, 0, 0), (0, 1, 0)]}
    for changed, path in ((0, (1, 0, 0)), (1, (0, 1, 0))):
        level = TAXONOMY_LEVELS[changed].name
        differs = np.any(np.asarray(drawn[(0, 0, 0)][0], np.int16) != np.asarray(drawn[path][0], np.int16), axis=-1)
        assert differs.any()
        assert not (differs & ~(drawn[(0, 0, 0)][1][level] | drawn[path][1][level])).any(), level


def test_both_choices_of_every_synthetic_level_are_forms_of_one_part():
    """A node's two children differ in the shape or pattern of the same part: neither can be told apart by the
    absence of the other's trait, so a head that decides must look at that part (docs/taxonomy.md)."""
    from modeling_promptcam.data.synthetic import TAXONOMY_LEVELS, draw_taxonomy_bird

    for depth, level in enumerate(TAXONOMY_LEVELS):
        masks = []
        for choice in (0, 1):
            path = [0] * len(TAXONOMY_LEVELS)
            path[depth] = choice
            masks.append(draw_taxonomy_bird(path, np.random.default_rng(5), 112)[1][level.name])
        overlap = (masks[0] & masks[1]).sum() / min(masks[0].sum(), masks[1].sum())
        assert overlap > 0.5, (level.name, overlap)
        others = [
            m
            for name, m in draw_taxonomy_bird([0] * 3, np.random.default_rng(5), 112)[1].items()
            if name != level.name
        ]
        assert not any((masks[0] & other).any() for other in others), level.name


def test_draw_traits_names_an_unknown_shape_and_a_contradiction():
    from modeling_promptcam.data.synthetic_drawing import draw_traits

    with pytest.raises(ValueError, match=r"tail='curly' is not a tail shape: choose one of plain, forked, pointed"):
        draw_traits(np.random.default_rng(0), 64, tail="curly")
    with pytest.raises(ValueError, match=r"crest='mohawk' is not a crest shape: choose one of spikes, tuft"):
        draw_traits(np.random.default_rng(0), 64, crest="mohawk")
    with pytest.raises(ValueError, match="fork=True and tail='pointed' contradict each other"):
        draw_traits(np.random.default_rng(0), 64, fork=True, tail="pointed")


def test_a_taxonomy_from_dataset_columns_names_the_examples_that_break_the_tree():
    import datasets

    from modeling_promptcam.taxonomy import taxonomy_from_columns

    names = ["a1", "a2", "b1"]
    features = datasets.Features({"family": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    rows = {"family": ["A", "A", "A", "B", "B"], "label": [0, 0, 1, 2, 2]}
    taxonomy = taxonomy_from_columns(datasets.Dataset.from_dict(rows, features=features), ("family", "species"), names)
    assert taxonomy.levels == ("family", "species") and taxonomy.children("family", "A") == ("a1", "a2")
    rows["family"][1] = "B"  # example 1 puts a1 under B
    with pytest.raises(TaxonomyError, match=r"'a1' is under family A \(examples 0\), B \(examples 1\)"):
        taxonomy_from_columns(datasets.Dataset.from_dict(rows, features=features), ("family", "species"), names)
    with pytest.raises(TaxonomyError, match="has no column order"):
        taxonomy_from_columns(datasets.Dataset.from_dict(rows, features=features), ("order", "species"), names)


def test_run_training_refuses_taxonomy_options_instead_of_ignoring_them(workspace, tmp_path):
    options = TrainOptions(
        backbone=str(workspace / "backbone"),
        data_dir=str(workspace / "data"),
        output_dir=str(tmp_path / "run"),
        taxonomy=str(workspace / "taxonomy.csv"),
        **FAST,
    )
    with pytest.raises(ValueError, match="run_taxonomy_training"):
        run_training(options)
    with pytest.raises(ValueError, match="No taxonomy given"):
        run_taxonomy_training(TrainOptions(backbone="b", data_dir="d", output_dir=str(tmp_path / "x")))


def test_train_command_reads_the_levels_from_dataset_columns_end_to_end(workspace, tmp_path, capsys):
    """`promptcam train --dataset DIR --levels family,genus,species`: the taxonomy comes from the dataset's columns,
    every level is learnt, and the saved folder holds the same tree as the table of the image folder."""
    import datasets

    features = datasets.Features(
        {
            "img": datasets.Image(),
            "species": datasets.ClassLabel(names=CLASSES),
            "genus": datasets.Value("string"),
            "family": datasets.Value("string"),
        }
    )
    splits = {}
    for split, folder in (("train", "train"), ("validation", "val")):
        paths = sorted((workspace / "data" / folder).glob("*/*.png"))
        rows = {
            "img": [str(path) for path in paths],
            "species": [CLASSES.index(path.parent.name) for path in paths],
            "genus": [SPECIES[path.parent.name][0] for path in paths],
            "family": [SPECIES[path.parent.name][1] for path in paths],
        }
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "dataset"))

    arguments = train_arguments(workspace, tmp_path / "run")[:-2]  # without --taxonomy FILE
    arguments[arguments.index("--data-dir") : arguments.index("--data-dir") + 2] = [
        "--dataset",
        str(tmp_path / "dataset"),
        "--image-column",
        "img",
        "--label-column",
        "species",
    ]
    code = cli_main([*arguments, "--levels", "family,genus,species"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    for level, chance in CHANCE.items():
        assert summary["validation"]["top_down"][level] > chance + 0.2, level
    model = PromptCamTaxonomy.from_pretrained(tmp_path / "run" / "final")
    table = read_taxonomy(workspace / "taxonomy.csv", CLASSES)
    assert model.taxonomy.levels == table.levels == ("family", "genus", "species")
    for species in CLASSES:
        assert model.taxonomy.ancestors(species) == table.ancestors(species)
    images, _ = validation_images(workspace)
    for prediction in model.predict(images[:4]):
        assert set(prediction) == {"family", "genus", "species"}
        ancestors = table.ancestors(prediction["species"][0])
        assert all(prediction[level][0] == ancestors[level] for level in ("family", "genus"))

    # a level the dataset lacks is an error naming the columns it has, before any training
    bad = [*arguments]
    bad[bad.index("--output-dir") + 1] = str(tmp_path / "bad")
    code = cli_main([*bad, "--levels", "order,species"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: " in err and "has no column order (columns: img, species, genus, family)" in err
    assert not (tmp_path / "bad" / "models").exists()
