"""The network's shapes, gradients, ablation switches and checkpoint round trip (tiny resnet18 models, CPU)."""
import pytest
import torch

from fer_explain.attention import ChannelAttention, SpatialAttention, create_attention
from fer_explain.checkpoint import load_checkpoint, save_checkpoint
from fer_explain.config import ModelConfig, Preprocessing
from fer_explain.errors import UserError
from fer_explain.model import build_model
from fer_explain.sequence import map_to_tokens

VARIANTS = [dict(variant=v, channel_attention=c, spatial_attention=s)
            for v in ("full", "baseline")
            for c, s in (("channel", "spatial"), ("none", "spatial"), ("channel", "none"))]


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(0)
    return torch.randn(2, 3, 224, 224)


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda k: "-".join(k.values()))
def test_shapes_of_every_variant(kw, x):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", **kw)).eval()
    with torch.no_grad():
        out = model.forward_all(x)
    assert out.logits.shape == (2, 8)
    assert out.tokens.shape == (2, 49, 512)
    if kw["spatial_attention"] == "none":
        assert out.spatial_attention is None
    else:
        assert out.spatial_attention.shape == (2, 7, 7)
        assert 0 <= out.spatial_attention.min() and out.spatial_attention.max() <= 1
    if kw["variant"] == "full":
        assert out.sequence_outputs.shape == (2, 49, 512)
    else:
        assert out.sequence_outputs is None
    assert torch.allclose(out.probabilities.sum(-1), torch.ones(2))
    assert torch.allclose(model(x), out.logits)
    assert torch.allclose(model.forward_tokens(out.tokens), out.logits, atol=1e-5)


@pytest.mark.parametrize("variant", ["full", "baseline"])
def test_every_parameter_receives_a_gradient(variant, x):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", variant=variant)).train()
    model(x).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_tokens_are_row_major():
    grid = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)
    tokens = map_to_tokens(grid)
    assert tokens.shape == (1, 12, 2)
    assert tokens[0, 0].tolist() == grid[0, :, 0, 0].tolist()  # top-left first
    assert tokens[0, 5].tolist() == grid[0, :, 1, 1].tolist()  # row 1, column 1
    assert tokens[0, 11].tolist() == grid[0, :, 2, 3].tolist()  # bottom-right last


def test_attention_equations_by_hand():
    torch.manual_seed(0)
    f = torch.rand(1, 32, 7, 7)
    ca = ChannelAttention(32, reduction=4)
    expected = torch.sigmoid(ca.mlp(f.mean((2, 3), keepdim=True)) + ca.mlp(f.amax((2, 3), keepdim=True)))
    assert torch.allclose(ca(f), f * expected)
    sa = SpatialAttention(7)
    pooled = torch.cat([f.mean(1, keepdim=True), f.max(1, keepdim=True).values], 1)
    assert torch.allclose(sa(f), f * torch.sigmoid(sa.conv(pooled)))


def test_attention_factory():
    assert create_attention("none", 64) is None
    assert isinstance(create_attention("Channel", 64), ChannelAttention)
    assert isinstance(create_attention("spatial", 64), SpatialAttention)
    with pytest.raises(ValueError):
        create_attention("cbam-ish", 64)
    with pytest.raises(ValueError):
        ModelConfig(variant="transformer")


def test_paper_sizes_resnet50():
    """resnet50 + Bi-LSTM has ~30.6M parameters (not the paper's 46.1M); the baseline drops the Bi-LSTM."""
    full = sum(p.numel() for p in build_model(ModelConfig()).parameters())
    base = sum(p.numel() for p in build_model(ModelConfig(variant="baseline")).parameters())
    assert 30.0e6 < full < 31.0e6
    lstm = 4 * 256 * (2048 + 256 + 2) * 2 + 4 * 256 * (512 + 256 + 2) * 2
    assert full - base == lstm + 512 * 512 - 2048 * 512  # Bi-LSTM in, the head's first layer narrower


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_checkpoint_round_trip(tmp_path, x, dtype):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18")).eval()
    pre = Preprocessing(grayscale=False, source_size=100)
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", model, pre, {"validation": {"accuracy": 0.5}},
                           dtype=dtype)
    assert path.with_suffix(".json").is_file()
    ckpt = load_checkpoint(tmp_path / "run")  # a run directory works as well as the file
    assert ckpt.config == model.config and ckpt.preprocessing == pre
    assert ckpt.metadata["validation"]["accuracy"] == 0.5
    assert not ckpt.model.training
    with torch.no_grad():
        if dtype is None:
            assert torch.equal(ckpt.model(x), model(x))
        else:
            assert torch.allclose(ckpt.model(x).softmax(-1), model(x).softmax(-1), atol=2e-3)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    model = build_model(ModelConfig(backbone="resnet18", variant="baseline"))
    path = save_checkpoint(tmp_path / "m.safetensors", model, Preprocessing())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    # config says full, weights are a baseline's
    import json
    from safetensors.torch import load_file, save_file
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["model_config"]["variant"] = "full"
    save_file(load_file(str(path)), str(tmp_path / "mismatch.safetensors"), metadata={"fer_explain": json.dumps(meta)})
    with pytest.raises(UserError, match="do not match its config"):
        load_checkpoint(tmp_path / "mismatch.safetensors")
    meta["model_config"]["variant"] = "baseline"
    meta["classes"] = list(reversed(meta["classes"]))
    save_file(load_file(str(path)), str(tmp_path / "classes.safetensors"), metadata={"fer_explain": json.dumps(meta)})
    with pytest.raises(UserError, match="classes"):
        load_checkpoint(tmp_path / "classes.safetensors")


@pytest.mark.parametrize("problem, message", [
    ("pickle", "checkpoints are .safetensors files"), ("hub_spec", "hf://owner/repo/path/to/file.safetensors"),
    ("foreign", "not a fer-explain checkpoint"), ("bad_json", "not valid JSON"),
    ("no_config", "model config or preprocessing is invalid"), ("unknown_backbone", "cannot build the model")])
def test_a_file_that_is_not_a_usable_checkpoint_is_a_user_error_naming_why(problem, message, tmp_path):
    """What a user may point --checkpoint at by mistake: each is one UserError (the CLIs print it as one line and
    exit 2, the app shows it), never a stack trace."""
    import json
    import re

    from safetensors.torch import load_file, save_file

    model = build_model(ModelConfig(backbone="resnet18", variant="baseline"))
    good = save_checkpoint(tmp_path / "good.safetensors", model, Preprocessing())
    weights, meta = load_file(str(good)), json.loads(good.with_suffix(".json").read_text())
    spec = tmp_path / f"{problem}.safetensors"
    if problem == "pickle":
        spec = tmp_path / "model.pt"
        torch.save(model.state_dict(), spec)
    elif problem == "hub_spec":
        spec = "hf://owner/model.safetensors"
    elif problem == "foreign":  # e.g. a backbone's ImageNet weights
        save_file(weights, str(spec))
    elif problem == "bad_json":
        save_file(weights, str(spec), metadata={"fer_explain": "{not json"})
    elif problem == "no_config":
        save_file(weights, str(spec), metadata={"fer_explain": json.dumps({k: v for k, v in meta.items()
                                                                            if k != "model_config"})})
    else:  # written by a later version that knows another backbone
        meta["model_config"]["backbone"] = "resnet1000"
        save_file(weights, str(spec), metadata={"fer_explain": json.dumps(meta)})
    with pytest.raises(UserError, match=re.escape(message)):
        load_checkpoint(spec)


def test_backbone_weights_from_file(tmp_path):
    """A torchvision-layout state dict (safetensors or .pth) initialises the backbone; a foreign one is refused."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18
    torch.manual_seed(1)
    reference = resnet18()
    save_file(reference.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    for f in ("r18.safetensors", "r18.pth"):
        model = build_model(ModelConfig(backbone="resnet18"), backbone_weights=tmp_path / f)
        assert torch.equal(model.backbone[0].weight, reference.conv1.weight)
        assert torch.equal(model.backbone[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    with pytest.raises(UserError, match="not a torchvision mobilenet_v2"):
        build_model(ModelConfig(backbone="mobilenet_v2"), backbone_weights=tmp_path / "r18.safetensors")


IMAGENET_MOBILENET = (__import__("pathlib").Path(__file__).resolve().parents[2]
                      / "shared/weights/mobilenet_v2_imagenet1k_v1.safetensors")


@pytest.mark.shared_data
@pytest.mark.skipif(not IMAGENET_MOBILENET.is_file(), reason="../shared/weights absent")
def test_imagenet_mobilenet_weights_load():
    from safetensors.torch import load_file
    model = build_model(ModelConfig(backbone="mobilenet_v2"), backbone_weights=IMAGENET_MOBILENET)
    state = load_file(str(IMAGENET_MOBILENET))
    assert torch.equal(model.backbone[0][0].weight, state["features.0.0.weight"])
