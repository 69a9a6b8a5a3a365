"""OpenCLIP (BioCLIP) vision towers -> transformers CLIPVisionModel, checked against OpenCLIP's forward pass."""

import json

import pytest
import torch

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.convert import NotAnOpenClipCheckpointError, convert_open_clip_vision

WIDTH, LAYERS, HEADS, PATCH, GRID, MLP = 32, 2, 4, 8, 4, 64


def open_clip_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random OpenCLIP ViT vision tower (`visual.*`, the layout of open_clip_pytorch_model.bin)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2, offset=0.0):
        return offset + scale * torch.randn(*shape, generator=g)

    sd = {
        "visual.conv1.weight": rand(WIDTH, 3, PATCH, PATCH),
        "visual.class_embedding": rand(WIDTH, scale=1.0),
        "visual.positional_embedding": rand(GRID * GRID + 1, WIDTH),
        "visual.ln_pre.weight": rand(WIDTH, offset=1.0),
        "visual.ln_pre.bias": rand(WIDTH),
        "visual.ln_post.weight": rand(WIDTH, offset=1.0),
        "visual.ln_post.bias": rand(WIDTH),
        "visual.proj": rand(WIDTH, 16),
    }
    for i in range(LAYERS):
        p = f"visual.transformer.resblocks.{i}."
        sd.update(
            {
                p + "ln_1.weight": rand(WIDTH, offset=1.0),
                p + "ln_1.bias": rand(WIDTH),
                p + "attn.in_proj_weight": rand(3 * WIDTH, WIDTH),
                p + "attn.in_proj_bias": rand(3 * WIDTH),
                p + "attn.out_proj.weight": rand(WIDTH, WIDTH),
                p + "attn.out_proj.bias": rand(WIDTH),
                p + "ln_2.weight": rand(WIDTH, offset=1.0),
                p + "ln_2.bias": rand(WIDTH),
                p + "mlp.c_fc.weight": rand(MLP, WIDTH),
                p + "mlp.c_fc.bias": rand(MLP),
                p + "mlp.c_proj.weight": rand(WIDTH, MLP),
                p + "mlp.c_proj.bias": rand(WIDTH),
            }
        )
    return sd


def open_clip_forward(sd, pixels, activation):
    """OpenCLIP's VisionTransformer forward written out: tokens before ln_post, and ln_post of the CLS token."""
    x = torch.nn.functional.conv2d(pixels, sd["visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat((cls, x), dim=1) + sd["visual.positional_embedding"]
    x = torch.nn.functional.layer_norm(x, (WIDTH,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    act = (lambda t: t * torch.sigmoid(1.702 * t)) if activation == "quick_gelu" else torch.nn.functional.gelu
    for i in range(LAYERS):
        p = f"visual.transformer.resblocks.{i}."
        h = torch.nn.functional.layer_norm(x, (WIDTH,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        attention = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        with torch.no_grad():
            attention.in_proj_weight.copy_(sd[p + "attn.in_proj_weight"])
            attention.in_proj_bias.copy_(sd[p + "attn.in_proj_bias"])
            attention.out_proj.weight.copy_(sd[p + "attn.out_proj.weight"])
            attention.out_proj.bias.copy_(sd[p + "attn.out_proj.bias"])
        x = x + attention(h, h, h, need_weights=False)[0]
        h = torch.nn.functional.layer_norm(x, (WIDTH,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = torch.nn.functional.linear(
            act(torch.nn.functional.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])),
            sd[p + "mlp.c_proj.weight"],
            sd[p + "mlp.c_proj.bias"],
        )
        x = x + h
    pooled = torch.nn.functional.layer_norm(x[:, 0], (WIDTH,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return x, pooled


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_converted_tower_reproduces_open_clip(activation):
    sd = open_clip_state_dict()
    model = convert_open_clip_vision(sd, num_heads=HEADS, activation=activation)
    pixels = torch.randn(2, 3, GRID * PATCH, GRID * PATCH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens, pooled = open_clip_forward(sd, pixels, activation)
        output = model(pixels)
    torch.testing.assert_close(output.last_hidden_state, tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(output.pooler_output, pooled, atol=1e-5, rtol=0)


def test_cli_writes_a_folder_prompt_cam_trains_on(tmp_path, capsys):
    torch.save(open_clip_state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": True}}))
    out = tmp_path / "bioclip-hf"
    code = cli_main(
        ["backbone", "bioclip", "--checkpoint", str(tmp_path / "open_clip_pytorch_model.bin"), "--out", str(out)]
        + ["--num-heads", str(HEADS), "--open-clip-config", str(tmp_path / "open_clip_config.json")]
    )
    assert code == 0 and "quick_gelu" in capsys.readouterr().out
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 32, "width": 32} and processor["resample"] == 3
    assert processor["image_mean"][0] == pytest.approx(0.48145466)
    converted = convert_open_clip_vision(
        tmp_path / "open_clip_pytorch_model.bin", num_heads=HEADS, activation="quick_gelu"
    )

    config = PromptCamConfig(
        backbone_config=converted.config.to_dict() | {"model_type": "clip_vision_model"}, num_labels=3
    )
    model = PromptCamForImageClassification.from_pretrained(out, config=config)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, converted.state_dict()[name]), name
    assert model(torch.randn(1, 3, 32, 32), output_trait_maps=True).trait_maps.shape == (1, 3, HEADS, GRID, GRID)


def test_not_an_open_clip_checkpoint(tmp_path, capsys):
    sd = open_clip_state_dict()
    del sd["visual.ln_pre.weight"]
    with pytest.raises(NotAnOpenClipCheckpointError, match="missing visual.ln_pre.weight"):
        convert_open_clip_vision(sd)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.bin")
    assert (
        cli_main(["backbone", "bioclip", "--checkpoint", str(tmp_path / "other.bin"), "--out", str(tmp_path / "o")])
        == 1
    )
    assert "Not an OpenCLIP ViT checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_heads=5 does not divide the width 32"):
        convert_open_clip_vision(open_clip_state_dict(), num_heads=5)
