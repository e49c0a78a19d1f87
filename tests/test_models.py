"""ModelConfig schema, presets as traceable data, loading by name or path, and bad input."""

import re
from importlib import resources

import pytest
import yaml
from pydantic import ValidationError

from costmodel.models import ModelConfig, list_models, load_model, model_from_yaml

REQUIRED_PRESETS = {
    "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-175b", "llama2-7b", "llama2-13b", "llama2-70b",
    "llama3-8b", "llama3-70b", "mistral-7b", "codellama-34b",
}

LLAMA_LIKE = dict(
    name="toy", source="test fixture", vocab_size=1000, d_model=256, n_layers=2, n_heads=8, ffn_dim=688,
    ffn_type="swiglu", norm_type="rmsnorm", attn_bias=False, mlp_bias=False, tied_embeddings=False,
    position_embedding="rope", max_seq_len=512,
)


def _preset_text(name: str) -> str:
    return resources.files("costmodel").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")


def test_required_presets_are_listed():
    assert REQUIRED_PRESETS <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", list_models())
def test_preset_loads_and_names_itself(name):
    cfg = load_model(name)
    assert cfg.name == name
    assert cfg.source.strip()
    assert cfg.n_heads % cfg.n_kv_heads == 0


@pytest.mark.parametrize("name", list_models())
def test_every_preset_number_has_its_source_beside_it(name):
    """A number nobody can trace is a bug: every field line but name/source carries a comment."""
    data = yaml.safe_load(_preset_text(name))
    for line in _preset_text(name).splitlines():
        m = re.match(r"^([a-z_]+):", line)
        if not m or m.group(1) in ("name", "source"):
            continue
        assert "#" in line, f"{name}: {m.group(1)} has no source comment"
    assert set(data) <= set(ModelConfig.model_fields)


def test_defaults_kv_heads_and_head_dim():
    cfg = ModelConfig(**LLAMA_LIKE)
    assert cfg.n_kv_heads == 8
    assert cfg.head_dim == 32
    assert cfg.q_dim == 256 and cfg.kv_dim == 256


def test_gqa_shapes_from_preset():
    cfg = load_model("llama2-70b")  # Touvron et al. 2023 §2.2: 8 KV heads, 64 query heads
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (64, 8, 128)
    assert load_model("mistral-7b").sliding_window == 4096  # Jiang et al. 2023 Table 1


def test_load_model_from_user_yaml(tmp_path):
    text = yaml.safe_dump({**LLAMA_LIKE, "name": "mine", "n_kv_heads": 2})
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert load_model(path) == load_model(str(path)) == model_from_yaml(text)
    assert load_model(path).n_kv_heads == 2


def test_load_model_accepts_a_config():
    cfg = load_model("gpt2")
    assert load_model(cfg) is cfg


def test_unknown_name_lists_the_accepted_names():
    with pytest.raises(ValueError) as exc:
        load_model("llama-9000")
    first_line = str(exc.value).splitlines()[0]
    assert "llama-9000" in first_line
    for name in list_models():
        assert name in first_line


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        ({"d_model": -4}, "d_model", "greater than 0"),
        ({"n_layers": 0}, "n_layers", "greater than 0"),
        ({"ffn_type": "relu"}, "ffn_type", "'gelu_mlp' or 'swiglu'"),
        ({"norm_type": "batchnorm"}, "norm_type", "'layernorm' or 'rmsnorm'"),
        ({"position_embedding": "sinusoid"}, "position_embedding", "'learned', 'rope', 'alibi' or 'none'"),
        ({"n_layers": 2.5}, "n_layers", "valid integer"),
        ({"d_model": True}, "d_model", "valid integer"),
        ({"sliding_window": 0}, "sliding_window", "greater than 0"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_field_names_field_value_and_allowed(change, field, fragment):
    with pytest.raises(ValidationError) as exc:
        ModelConfig(**{**LLAMA_LIKE, **change})
    text = str(exc.value)
    assert field in text and fragment in text
    assert repr(next(iter(change.values()))) in text or str(next(iter(change.values()))) in text


def test_kv_heads_must_divide_heads():
    with pytest.raises(ValidationError) as exc:
        ModelConfig(**{**LLAMA_LIKE, "n_kv_heads": 3})
    assert "n_heads (8) must be a multiple of n_kv_heads (3)" in str(exc.value)


def test_head_dim_needed_when_heads_do_not_divide_width():
    # GPT-3 13B (Brown et al. 2020 Table 2.1): d_model 5140, 40 heads of 128 -> head_dim must be explicit.
    with pytest.raises(ValidationError, match="give head_dim explicitly"):
        ModelConfig(**{**LLAMA_LIKE, "d_model": 5140, "n_heads": 40})
    assert ModelConfig(**{**LLAMA_LIKE, "d_model": 5140, "n_heads": 40, "head_dim": 128}).q_dim == 5120


def test_source_is_required():
    data = dict(LLAMA_LIKE)
    del data["source"]
    with pytest.raises(ValidationError, match="source"):
        ModelConfig(**data)


def test_model_from_yaml_rejects_non_mapping():
    with pytest.raises(ValueError, match="mapping"):
        model_from_yaml("- just\n- a list\n")
    with pytest.raises(ValueError, match="does not parse"):
        model_from_yaml("name: [unclosed\n")


def test_config_is_immutable():
    cfg = load_model("gpt2")
    with pytest.raises(ValidationError):
        cfg.d_model = 1
