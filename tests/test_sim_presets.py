"""Engine presets and configs, and the progress reporter."""

import io
import json

import pytest

from autellix.sim.presets import EngineConfig, get_preset, load_engine_config
from autellix.sim.progress import Progress


def test_a100_preset_numbers():
    cfg = get_preset("a100-llama8b")
    full = cfg.step_base + cfg.step_per_token * 256 + cfg.step_per_kv_token * 256 * 600
    assert 0.03 < full < 0.05  # ~38 ms for a full decode batch
    assert 5000 < 256 / full < 8000  # output tokens/s
    assert cfg.max_running == 256 and cfg.kv_tokens == 400_000


def test_cpu_vllm_preset_is_the_fitted_tiny_engine():
    cfg = get_preset("cpu-vllm")
    assert cfg.name == "cpu-vllm" and cfg.max_running == 8 and cfg.multi_step == 1
    one = cfg.step_base + cfg.step_per_token + cfg.step_per_kv_token * 256
    eight = cfg.step_base + cfg.step_per_token * 8 + cfg.step_per_kv_token * 8 * 256
    assert 0.004 < one < 0.010 and 0.008 < eight < 0.020  # measured decode steps: ~6 ms, ~12 ms


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown engine preset"):
        get_preset("h100")


def test_engine_config_from_json_and_validation(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"name": "fit", "step_base": 0.002, "step_per_token": 1e-4, "kv_tokens": 5000}))
    cfg = load_engine_config(path)
    assert cfg.name == "fit" and cfg.kv_tokens == 5000 and cfg.max_running == 256
    path.write_text(json.dumps({"step_bsae": 1}))
    with pytest.raises(ValueError, match="unknown engine config field 'step_bsae'"):
        load_engine_config(path)
    with pytest.raises(ValueError, match="preemption"):
        EngineConfig(preemption="drop")
    with pytest.raises(ValueError, match="token_budget"):
        EngineConfig(max_running=512, token_budget=256)


def test_progress_prints_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress("sim", stream=out, delay=0.0, every=0.0)
    p(5, 10, 12.0)
    p(10, 10, 20.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sim: 5/10 programs (50%)") and "10/10" in lines[-1]
    quiet = io.StringIO()
    Progress("sim", stream=quiet, enabled=False)(1, 1, 0.0)
    assert quiet.getvalue() == ""
