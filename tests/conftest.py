import os
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))
# The precision probe's cache of this test session (CLI subprocesses inherit it): tests replace
# kernels (test_fast_mode.exact_int_mm) and must not leave their timings in the user's cache.
_probe_cache_dir = tempfile.mkdtemp(prefix="lrm-test-probe-")
os.environ["LRM_PROBE_CACHE"] = os.path.join(_probe_cache_dir, "precision-probe.json")


@pytest.fixture
def tiny_model():
    from lrm.model.lrm import LRM
    from lrm.model.presets import tiny

    torch.manual_seed(0)
    return LRM(tiny()).eval()


@pytest.fixture
def model_dir(tmp_path, tiny_model):
    """The seeded toy model saved as a model folder (config.json + model.safetensors)."""
    path = tmp_path / "model"
    tiny_model.save_pretrained(path)
    return path
