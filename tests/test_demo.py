"""The web demo's work function (no Gradio needed) and, when Gradio is installed, its UI."""

import numpy as np
import pytest
import torch

from lrm.demo import DemoSession, build_ui
from lrm.errors import LRMError
from lrm.pipeline import Reconstructor


@pytest.fixture
def session(tiny_model, tmp_path):
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    planes = rec.encode(np.full((128, 128, 3), 0.5, np.float32))
    rec.inference.mesh_threshold = float(torch.quantile(rec.density_fn(planes)(torch.rand(4096, 3) * 2 - 1), 0.8))
    rec.inference.render_size = 16
    return DemoSession(rec, tmp_path)


def test_predict_writes_mesh_and_video(session):
    image = np.zeros((64, 64, 4), np.uint8)
    image[16:48, 20:44] = [30, 200, 40, 255]
    result = session.predict(image, remove_bg=True, mesh_resolution=32, video_frames=3)
    assert result.glb.is_file() and result.obj.is_file()
    assert result.video is not None and result.video.is_file()
    assert result.preview.shape == (128, 128, 3)
    assert "encode" in result.message and "video" in result.message


def test_predict_without_image_is_a_clear_error(session):
    with pytest.raises(LRMError, match="upload an image"):
        session.predict(None)


def test_ui_builds(session):
    pytest.importorskip("gradio")
    ui = build_ui(session)
    assert ui is not None
