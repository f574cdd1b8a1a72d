"""Saved weights follow the umask (safetensors alone writes 0600) and are written atomically."""

import os
import stat

import torch

from lrm.hub import load_model
from lrm.model.lrm import LRM
from lrm.model.presets import tiny


def test_saved_model_follows_the_umask(tmp_path):
    model = LRM(tiny())
    old = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "team")
        os.umask(0o077)
        model.save_pretrained(tmp_path / "private")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "team" / "model.safetensors") == 0o644
    assert mode(tmp_path / "private" / "model.safetensors") == 0o600
    assert not list(tmp_path.rglob("*.tmp"))
    again = load_model(tmp_path / "team")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_saved_model_gets_a_card_with_its_licence(tmp_path):
    cfg = tiny()
    cfg.license = "CC-BY-NC-4.0"
    LRM(cfg).save_pretrained(tmp_path / "m")
    text = (tmp_path / "m" / "README.md").read_text()
    header = text.split("---")[1]
    assert "license: cc-by-nc-4.0" in header and "library_name: lrm" in header
    assert "lrm reconstruct photo.png" in text
    (tmp_path / "m" / "README.md").write_text("my own card\n")
    LRM(cfg).save_pretrained(tmp_path / "m")  # a hand-written card is kept
    assert (tmp_path / "m" / "README.md").read_text() == "my own card\n"
    cfg.license = "Custom-1.0"
    LRM(cfg).save_pretrained(tmp_path / "other")
    assert "license: other\nlicense_name: Custom-1.0" in (tmp_path / "other" / "README.md").read_text()
