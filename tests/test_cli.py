"""`lrm reconstruct` end to end, and bad inputs giving one clear line + exit code 2."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrm.cli.main import main
from lrm.errors import LRMError


@pytest.fixture
def rgba_image(tmp_path):
    """A red disc on a transparent background."""
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 40) ** 2 < 30**2
    img = np.zeros((96, 96, 4), np.uint8)
    img[disc] = [220, 30, 30, 255]
    path = tmp_path / "disc.png"
    Image.fromarray(img, "RGBA").save(path)
    return path


def _mesh_threshold(model) -> float:
    """A threshold inside the toy model's density range so its mesh is non-empty."""
    from lrm.pipeline import Reconstructor

    rec = Reconstructor(model, device="cpu", dtype="fp32")
    planes = rec.encode(np.full((128, 128, 3), 0.5, np.float32))
    grid = torch.rand(4096, 3) * 2 - 1
    return float(torch.quantile(rec.density_fn(planes)(grid), 0.8))


def test_reconstruct_end_to_end(tmp_path, model_dir, rgba_image, tiny_model, capsys):
    thr = _mesh_threshold(tiny_model)
    out = tmp_path / "out"
    code = main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--mesh-resolution",
                 "32", "--mesh-threshold", f"{thr}", "--views", "2", "--render-size", "16", "--video",
                 "--video-frames", "3", "--dtype", "fp32"])
    assert code == 0, capsys.readouterr().err
    folder = out / "disc"
    assert (folder / "input.png").is_file()
    assert (folder / "mesh.glb").is_file()
    assert sorted(p.name for p in (folder / "views").iterdir()) == ["view_000.png", "view_001.png"]
    assert (folder / "turntable.mp4").is_file() or (folder / "turntable.gif").is_file()
    err = capsys.readouterr().err
    assert "encode" in err and "mesh" in err  # the per-stage timing line
    # the files hold what the API computes for the same photo and settings
    import trimesh

    from lrm.cameras import world_to_view_frame
    from lrm.pipeline import Reconstructor

    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    rec.inference.mesh_threshold, rec.inference.render_size = thr, 16
    want = rec.reconstruct(rgba_image, mesh_resolution=32)
    got = trimesh.load(folder / "mesh.glb", process=False, force="mesh")
    assert len(got.faces) == len(want.mesh.faces) > 0
    size = (folder / "mesh.glb").stat().st_size / 1e6
    assert f"| {len(got.faces):,} faces, {size:.2f} MB" in err  # the timing line reports the mesh
    frame = world_to_view_frame(rec.inference.front_azimuth).numpy()
    # 1e-4 is 1/600 of a grid cell: the CLI may run on another thread count, so float sums differ
    # by ~1e-7 and a vertex on an edge where the field is nearly flat moves by up to ~2e-5
    np.testing.assert_allclose(got.vertices, want.mesh.vertices @ frame.T, atol=1e-4)
    seen = np.asarray(Image.open(folder / "input.png").convert("RGB"), np.float32) / 255
    assert np.abs(seen - want.image).max() <= 1 / 255 + 1e-6  # "what the model saw", 8-bit
    views = rec.render_views(want.planes, *rec.orbit(2))["rgb"]
    png = np.asarray(Image.open(folder / "views" / "view_001.png").convert("RGB"), np.float32) / 255
    assert np.abs(png - views[1]).max() <= 1 / 255 + 1e-6
    # a rerun skips the finished image
    assert main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir)]) == 0
    assert "skipping 1" in capsys.readouterr().err
    # an image whose run was killed before its completion record is redone, and so is one that
    # now asks for more than was written
    (folder / ".lrm-done.json").unlink()
    small = ["--mesh-resolution", "32", "--mesh-threshold", f"{thr}", "--render-size", "16", "--dtype", "fp32"]
    assert main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), *small]) == 0
    assert "skipping" not in capsys.readouterr().err and (folder / ".lrm-done.json").is_file()
    assert main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--views", "3", *small]) == 0
    assert "skipping" not in capsys.readouterr().err and len(list((folder / "views").iterdir())) == 3


def test_no_surface_keeps_what_was_made_and_fails(tmp_path, model_dir, rgba_image, capsys):
    """An iso-level no density reaches: one line naming the cause and what was kept, exit 2; the
    image's folder holds input.png and the views but no completion record, so a rerun retries."""
    out = tmp_path / "out"
    args = ["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--mesh-resolution", "24",
            "--mesh-threshold", "1e9", "--views", "2", "--render-size", "16", "--dtype", "fp32"]
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lrm: error")]
    assert code == 2 and len(err) == 1 and "no surface" in err[0] and "input.png, views kept" in err[0], err
    folder = out / "disc"
    assert (folder / "input.png").is_file() and len(list((folder / "views").glob("*.png"))) == 2
    assert not (folder / ".lrm-done.json").exists() and not list(folder.glob("mesh.*"))
    assert main(args) == 2 and "no surface" in capsys.readouterr().err  # retried, not skipped as done


def test_a_box_filling_surface_is_an_error_with_outputs_kept(tmp_path, model_dir, rgba_image, tiny_model, capsys):
    """An iso-level below almost all of the field's density: the mesh hugs the box's six walls.
    That is not a mesh of the object: one-line error, exit 2, outputs kept, not marked done."""
    from lrm.cli.reconstruct import fills_box
    from lrm.pipeline import Reconstructor

    assert fills_box(np.array([[-1, -1, -1], [1, 1, 1.0]]), 1.0) and not fills_box(np.array([[-1, -1, -1],
                                                                                             [1, 1, 0.5]]), 1.0)
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    planes = rec.encode(rec.preprocess(str(rgba_image)))
    low = float(torch.quantile(rec.density_fn(planes)(torch.rand(4096, 3) * 2 - 1), 0.05))
    out = tmp_path / "out"
    code = main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--mesh-resolution",
                 "24", "--mesh-threshold", f"{low}", "--dtype", "fp32"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lrm: error")]
    assert code == 2 and len(err) == 1 and "fills the field's whole box" in err[0], err
    folder = out / "disc"
    assert (folder / "input.png").is_file() and (folder / "mesh.glb").is_file()
    assert not (folder / ".lrm-done.json").exists()


def test_min_piece_drops_the_floaters(tmp_path, model_dir, rgba_image, tiny_model):
    """--min-piece 1 keeps only the largest piece of a mesh that has several (a random tiny model's
    noisy field); --min-piece 0 keeps them all."""
    import trimesh

    from lrm.mesh.components import piece_labels

    thr = _mesh_threshold(tiny_model)
    pieces = {}
    for f in ("0", "1"):
        out = tmp_path / f"out{f}"
        assert main(["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--mesh-resolution",
                     "32", "--mesh-threshold", f"{thr}", "--dtype", "fp32", "--min-piece", f, "--format", "ply"]) == 0
        mesh = trimesh.load(out / "disc" / "mesh.ply", process=False)
        pieces[f] = len(np.unique(piece_labels(np.asarray(mesh.faces), len(mesh.vertices))[mesh.faces[:, 0]]))
    assert pieces["0"] > 1 and pieces["1"] == 1, pieces


def test_output_names_stay_inside_and_never_collide():
    from lrm.cli.reconstruct import output_names

    names = output_names([Path("in") / n for n in ["a.jpg", "a.png", "a-2.png", "...png", "..png", "x y.png"]])
    assert names == ["a", "a-3", "a-2", "__", "_", "x_y"]  # a-2 stays a-2.png's; dots never mean "up"
    assert len(set(names)) == len(names)


def _assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lrm: error:"), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_bad_input_through_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lrm", "reconstruct", str(tmp_path / "missing.png"), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    _assert_one_line_error(proc.returncode, proc.stderr, "no such file")


def test_bad_inputs(tmp_path, model_dir, rgba_image, capsys):
    out = tmp_path / "out"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ([str(rgba_image), "-o", str(out), "--model", str(model_dir), "--foreground-ratio", "1.5"],
         "--foreground-ratio must be in (0, 1]"),
        ([str(rgba_image), "-o", str(out), "--model", str(model_dir), "--foreground-ratio", "0"],
         "--foreground-ratio must be in (0, 1]"),
        ([str(tmp_path / "missing.png"), "-o", str(out)], "no such file"),
        ([str(corrupt), "-o", str(out), "--model", str(model_dir)], "cannot read image"),
        ([str(empty), "-o", str(out), "--model", str(model_dir)], "cannot read image"),
        ([str(rgba_image), "-o", str(out), "--model", "no-such-model"], "unknown model"),
        ([str(rgba_image), "-o", str(blocker / "sub")], "not writable"),
        ([str(rgba_image), "-o", str(out), "--mesh-resolution", "4"], "--mesh-resolution"),
        ([str(rgba_image), "-o", str(out), "--target-faces", "50"], "--target-faces"),
    ]
    for args, fragment in cases:
        code = main(["reconstruct", *args])
        _assert_one_line_error(code, capsys.readouterr().err, fragment)
    assert not any(out.glob("*/mesh.*"))  # nothing half-written


def test_an_image_without_foreground_is_one_clear_error(tmp_path, model_dir, capsys, monkeypatch):
    """A fully transparent RGBA, and a photo in which background removal finds nothing: each a
    one-line error naming the cause (after the model's one-line load report), exit code 2."""
    from PIL import Image

    from lrm import preprocess

    clear, grey = tmp_path / "clear.png", tmp_path / "grey.png"
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(clear)
    Image.new("RGB", (32, 32), (128, 128, 128)).save(grey)
    monkeypatch.setattr(preprocess, "remove_background", lambda rgba, model: np.zeros_like(rgba))  # finds nothing
    for path, fragment in ((clear, "no foreground (its alpha channel is fully transparent)"),
                           (grey, "background removal found no object in the image; pass --no-remove-bg")):
        code = main(["reconstruct", str(path), "-o", str(tmp_path / "out"), "--model", str(model_dir)])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and err[-1].startswith("lrm: error:") and fragment in err[-1], err
        assert all(line.startswith("loaded ") for line in err[:-1]) and len(err) <= 2, err
    with pytest.raises(LRMError, match=r"foreground ratio must be in \(0, 1\], got 1.5"):
        preprocess.recenter(np.ones((4, 4, 4), np.float32), 1.5)


def test_zero_size_array_is_rejected():
    from lrm.errors import LRMError
    from lrm.preprocess import load_image

    with pytest.raises(LRMError, match="zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_decompression_bomb_and_bad_sizes_are_one_line_errors(tmp_path, model_dir, capsys):
    """A 10000 x 10000 PNG (~100 MP, a few hundred bytes compressed) is refused before decoding;
    --source-size 0 and a config.json with a zero width or a string for an int are refused too."""
    import json
    import shutil

    bomb = tmp_path / "bomb.png"
    Image.new("L", (10000, 10000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 200_000
    code = main(["reconstruct", str(bomb), "-o", str(tmp_path / "out"), "--model", str(model_dir)])
    _assert_one_line_error(code, capsys.readouterr().err, "decompression bomb")
    small = tmp_path / "small.png"
    Image.new("RGBA", (8, 8)).save(small)
    code = main(["reconstruct", str(small), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--source-size", "0"])
    _assert_one_line_error(code, capsys.readouterr().err, "--source-size must be in [8, 4096]")
    for section, key, value, fragment in [("encoder", "dim", 0, "encoder sizes must be > 0"),
                                          ("transformer", "layers", "4", "'4' is not a valid int"),
                                          ("field", "density", "relu", "is not one of 'softplus', 'exp'")]:
        bad = tmp_path / f"bad-{key}"
        shutil.copytree(model_dir, bad, dirs_exist_ok=True)
        cfg = json.loads((bad / "config.json").read_text())
        cfg[section][key] = value
        (bad / "config.json").write_text(json.dumps(cfg))
        code = main(["reconstruct", str(small), "-o", str(tmp_path / "out"), "--model", str(bad)])
        _assert_one_line_error(code, capsys.readouterr().err, fragment)


def test_skip_errors_finishes_the_folder(tmp_path, model_dir, rgba_image, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_broken.png").write_bytes(b"\x89PNG not really")
    (folder / "b_disc.png").write_bytes(rgba_image.read_bytes())
    args = ["reconstruct", str(folder), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--no-mesh",
            "--dtype", "fp32"]
    _assert_one_line_error(main(args), capsys.readouterr().err, "a_broken.png: cannot read image")
    assert not (tmp_path / "out" / "b_disc").exists()  # without the flag nothing starts
    assert main([*args, "--skip-errors"]) == 2
    err = capsys.readouterr().err
    assert "a_broken.png: cannot read image" in err and "1 image(s) skipped" in err
    assert (tmp_path / "out" / "b_disc" / "input.png").is_file() and not (tmp_path / "out" / "a_broken").exists()


def test_turntable_source_mesh_by_default_field_on_request(tmp_path, model_dir, rgba_image, tiny_model, capsys):
    """--video shows the reconstruction's coloured mesh (the frames the API rasterises);
    --video-source field re-renders the video from the field on a rerun (not skipped)."""
    import imageio.v2 as imageio

    from lrm.pipeline import Reconstructor
    from lrm.video import ffmpeg_available

    if not ffmpeg_available():
        pytest.skip("imageio-ffmpeg is not installed")
    thr = _mesh_threshold(tiny_model)
    out = tmp_path / "out"
    args = ["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--video", "--dtype", "fp32",
            "--video-frames", "3", "--video-size", "32", "--mesh-resolution", "24", "--mesh-threshold", f"{thr}"]
    assert main(args) == 0
    read = lambda: np.stack([f for f in imageio.get_reader(out / "disc" / "turntable.mp4")]).astype(np.float32) / 255  # noqa: E731
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    result = rec.reconstruct(rgba_image, mesh_resolution=24, mesh_threshold=thr, photo_colors=True)
    mesh_frames, field_frames = rec.turntable(result.planes, 3, 32, mesh=result.mesh), rec.turntable(result.planes, 3, 32)
    assert np.abs(mesh_frames - field_frames).mean() > 0.05  # the two sources differ visibly
    assert np.abs(read() - mesh_frames).mean() < 0.02  # H.264 at quality 8
    capsys.readouterr()
    assert main(args + ["--video-source", "field"]) == 0
    assert "skipping" not in capsys.readouterr().err
    assert np.abs(read() - field_frames).mean() < 0.02


def test_turntable_size_frames_and_progress(tmp_path, model_dir, rgba_image, tiny_model, capsys, monkeypatch):
    """--video writes --video-frames frames at 30 fps, 256 px by default (the tiny model renders
    32 px), the frames the API renders; LRM_PROGRESS=1 shows the turntable's bar (and, with
    --exact, the dense mesh grid's); a rerun with another --video-size redoes the video."""
    import imageio.v2 as imageio

    from lrm.pipeline import Reconstructor
    from lrm.video import ffmpeg_available

    if not ffmpeg_available():
        pytest.skip("imageio-ffmpeg is not installed")
    monkeypatch.setenv("LRM_PROGRESS", "1")
    out = tmp_path / "out"
    args = ["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--no-mesh", "--video",
            "--dtype", "fp32", "--video-frames"]
    assert main(args + ["2"]) == 0
    assert re.search(r"turntable: +\d+%.*\| \d/2 \[", capsys.readouterr().err)  # the frames' bar
    exact = ["reconstruct", str(rgba_image), "-o", str(tmp_path / "exact"), "--model", str(model_dir), "--exact",
             "--mesh-resolution", "24", "--mesh-threshold", f"{_mesh_threshold(tiny_model)}"]
    assert main(exact) == 0
    assert re.search(r"mesh grid 24³: +\d+%", capsys.readouterr().err)  # the dense grid's bar
    reader = imageio.get_reader(out / "disc" / "turntable.mp4")
    assert [f.shape for f in reader] == [(256, 256, 3)] * 2 and reader.get_meta_data()["fps"] == 30
    assert main(args + ["4", "--video-size", "32"]) == 0
    assert "skipping" not in capsys.readouterr().err
    frames = np.stack([f for f in imageio.get_reader(out / "disc" / "turntable.mp4")]).astype(np.float32) / 255
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    assert rec.inference.render_size < 256 and frames.shape == (4, 32, 32, 3)
    want = rec.turntable(rec.reconstruct(rgba_image, mesh=False).planes, 4, 32)
    assert np.abs(frames - want).mean() < 0.02  # H.264 at quality 8


def test_gif_fallback_without_ffmpeg(tmp_path, monkeypatch):
    """Without ffmpeg the turntable is a looping GIF beside the asked-for path, same frames and rate."""
    import lrm.video

    monkeypatch.setattr(lrm.video, "ffmpeg_available", lambda: False)
    frames = np.zeros((5, 16, 16, 3), np.float32)
    frames[:, :, :8] = np.linspace(0, 1, 5)[:, None, None, None]
    path = lrm.video.write_video(frames, tmp_path / "turntable.mp4", fps=25)
    assert path == tmp_path / "turntable.gif" and not (tmp_path / "turntable.mp4").exists()
    gif = Image.open(path)
    assert gif.n_frames == 5 and gif.info["duration"] == 40 and gif.info["loop"] == 0
    gif.seek(4)
    assert np.asarray(gif.convert("RGB"))[0, 0].tolist() == [255, 255, 255]


def test_target_faces_flag(tmp_path, model_dir, rgba_image, tiny_model, capsys):
    """--target-faces reaches the mesher: the GLB has at most N faces where the full mesh has more;
    a rerun with another budget redoes the mesh."""
    import trimesh

    thr = _mesh_threshold(tiny_model)
    out = tmp_path / "out"
    args = ["reconstruct", str(rgba_image), "-o", str(out), "--model", str(model_dir), "--mesh-resolution", "40",
            "--mesh-threshold", f"{thr}", "--dtype", "fp32", "--target-faces"]
    assert main(args + ["0"]) == 0
    full = len(trimesh.load(out / "disc" / "mesh.glb", process=False, force="mesh").faces)
    assert main(args + ["5000"]) == 0
    assert "skipping" not in capsys.readouterr().err
    small = len(trimesh.load(out / "disc" / "mesh.glb", process=False, force="mesh").faces)
    assert full > 50_000 and 4500 <= small <= 5000, (full, small)


def test_sigkill_mid_folder_then_rerun_finishes_the_rest(tmp_path, model_dir, tiny_model):
    """A real `lrm reconstruct FOLDER` process is killed with SIGKILL as soon as its first image is
    complete. The rerun skips what was finished, redoes the image it was writing (its partial
    outputs are not taken as done) and ends with the same files an uninterrupted run writes."""
    import json
    import os
    import signal
    import time

    import trimesh

    images = tmp_path / "in"
    images.mkdir()
    for k, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 220), (200, 200, 40)]):
        yy, xx = np.mgrid[:96, :96]
        img = np.zeros((96, 96, 4), np.uint8)
        img[(yy - 48) ** 2 + (xx - 30 - 8 * k) ** 2 < (20 + 4 * k) ** 2] = (*colour, 255)
        Image.fromarray(img, "RGBA").save(images / f"obj{k}.png")
    thr = _mesh_threshold(tiny_model)
    small = ["--model", str(model_dir), "--mesh-resolution", "32", "--mesh-threshold", f"{thr}", "--views", "6",
             "--render-size", "48", "--dtype", "fp32", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "lrm", "reconstruct", str(images)]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "-o", str(killed), *small], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(killed.glob("*/.lrm-done.json")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = sorted(p.parent.name for p in killed.glob("*/.lrm-done.json"))
    assert 1 <= len(finished) < 4, finished  # the kill landed mid-folder
    rerun = subprocess.run([*cmd, "-o", str(killed), *small], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"skipping {len(finished)}" in rerun.stderr
    clean = tmp_path / "clean"
    once = subprocess.run([*cmd, "-o", str(clean), *small], env=env, capture_output=True, text=True, timeout=300)
    assert once.returncode == 0, once.stderr[-2000:]

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    got, want = files(killed), files(clean)
    assert sorted(got) == sorted(want) and len(want) == 4 * (3 + 6)  # input.png, mesh.glb, record, 6 views
    for name in want:
        if name.endswith(".lrm-done.json"):
            assert json.loads(got[name]) == json.loads(want[name])
        elif name.endswith(".glb"):  # same mesh; the GLB container may hold timestamps or ids
            a, b = (trimesh.load(root / name, process=False, force="mesh") for root in (killed, clean))
            np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)
            np.testing.assert_array_equal(a.faces, b.faces)
        else:
            assert got[name] == want[name], name
