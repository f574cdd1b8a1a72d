"""End to end: `lrm evaluate` on a tiny generated dataset, with the sphere baseline and a toy model."""

import json

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from lrm import cameras
from lrm.cli.main import main
from lrm.evaluate.baselines import SphereBaseline, fit_sphere_radius
from lrm.evaluate.predictors import to_model_frame
from lrm.mesh.view_render import rasterize
from tests.eval_toy import make_toy_dataset

FAST = ["--points", "2000", "--iou-resolution", "32", "--sheet-views", "2"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), size=32, ring=4)


def test_sphere_radius_fit_recovers_a_sphere():
    assert fit_sphere_radius(trimesh.creation.icosphere(4, radius=0.7)) == pytest.approx(0.7, rel=0.01)


def test_sphere_baseline_render_agrees_with_the_rasteriser():
    # ray-sphere hits (lrm.render.rays conventions) vs the rasterised icosphere: the same disc
    pred = SphereBaseline().predict(np.zeros((8, 8, 4), np.uint8), 2.0, None)  # radius 0.5
    c2w = cameras.look_at(torch.tensor([[1.0, -1.8, 0.7]])).numpy()
    intr = np.array([[0.9, 0.9, 0.45, 0.55]])
    hit = (pred.render(c2w, intr, 64)[0] < 0.99).any(-1)
    _, alpha = rasterize(pred.mesh.vertices, pred.mesh.faces, None, c2w[0], intr[0], 64)
    inter, union = (hit & (alpha > 0.5)).sum(), (hit | (alpha > 0.5)).sum()
    assert inter / union > 0.95 and abs(hit.mean() - (alpha > 0.5).mean()) < 0.01


def test_model_frames():
    front = cameras.canonical_c2w(2.5).numpy()
    np.testing.assert_allclose(to_model_frame(front, -90.0), np.eye(4), atol=1e-6)  # OpenLRM: as is
    triposr = to_model_frame(front, 0.0)  # TripoSR: the input camera moves to azimuth 0 (+x)
    np.testing.assert_allclose((triposr @ front)[:3, 3], [2.5, 0, 0], atol=1e-6)
    side = cameras.look_at(cameras.orbit_positions(torch.tensor([30.0]), 20.0, 3.0)).numpy()[0]
    np.testing.assert_allclose(to_model_frame(side, -90.0) @ side, cameras.canonical_c2w(3.0).numpy(), atol=1e-6)


def test_sphere_baseline_report_end_to_end(toy, tmp_path, capsys):
    out = tmp_path / "sphere"
    assert main(["evaluate", "--baseline", "sphere", "--data", str(toy), "-o", str(out), *FAST]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert [e["id"] for e in report["objects"]] == ["box", "cylinder"]
    for e in report["objects"]:
        assert e["status"] == "ok" and e["error"] is None
        assert e["lpips"] is None or e["lpips"] > 0  # absent, never 0
        assert 0 < e["chamfer"] < 0.2 and e["fscore@0.5"] == 1.0 and 0.2 < e["volume_iou"] < 0.9
        # frozen figures (measured 2026-12-07; the ground-truth oracle test below checks that the
        # harness scores correctly): a change of renderer, compositing, frames or metrics moves them
        want = {"box": (14.355, 0.3352), "cylinder": (16.595, 0.4575)}[e["id"]]
        assert e["psnr"] == pytest.approx(want[0], abs=0.05) and e["ssim"] == pytest.approx(want[1], abs=0.005), e
        assert {"align", "geometry_metrics", "render", "image_metrics"} <= set(e["timings"])
        sheet = Image.open(out / "sheets" / f"{e['id']}.png")
        assert sheet.size == (3 * 128, 3 * 128 + 14)
        assert len(trimesh.load(out / "meshes" / f"{e['id']}.ply").faces) == 5120
    assert report["count"]["chamfer"] == 2
    assert report["mean"]["chamfer"] == pytest.approx(np.mean([e["chamfer"] for e in report["objects"]]))
    assert report["lpips_available"] is (report["mean"]["lpips"] is not None)
    summary = (out / "summary.md").read_text()
    assert "| PSNR↑ | SSIM↑ | LPIPS↓ | CD↓ |" in summary and "| box | 0 |" in summary
    # an existing report is not overwritten by accident
    assert main(["evaluate", "--baseline", "sphere", "--data", str(toy), "-o", str(out)]) == 2
    assert "already holds a report" in capsys.readouterr().err


def test_toy_model_report_end_to_end(toy, tmp_path, monkeypatch):
    pytest.importorskip("lrm.mesh.extract")
    from lrm.evaluate.predictors import ModelPredictor
    from lrm.evaluate.runner import EvalConfig, evaluate
    from lrm.model.lrm import LRM
    from lrm.model.presets import tiny
    from lrm.pipeline import Reconstructor

    torch.manual_seed(0)
    cfg = tiny()
    cfg.render.samples, cfg.render.importance = 8, 8  # a toy: speed over fidelity
    rec = Reconstructor(LRM(cfg).eval(), device="cpu", dtype="fp32")
    run = EvalConfig(objects=("box",), points=2000, iou_resolution=32, sheet_views=2, image_size=16)

    # random weights: the density never reaches the model's iso-level -> recorded, not a crash
    empty = evaluate(ModelPredictor(rec, mesh_resolution=24), toy, tmp_path / "empty", run)
    e = empty["objects"][0]
    assert e["status"] == "empty" and e["error"] and e["chamfer"] is None and e["volume_iou"] is None
    assert e["psnr"] > 0 and empty["mean"]["chamfer"] is None and empty["count"]["chamfer"] == 0
    assert (tmp_path / "empty" / "sheets" / "box.png").is_file()

    # an iso-level inside the density's range forces a surface
    planes = rec.reconstruct(np.zeros((32, 32, 4), np.uint8), remove_bg=False, recenter=False, mesh=False).planes
    density = rec.density_fn(planes)(torch.rand(4096, 3) * 2 - 1)
    level = float(density.median())
    full = evaluate(ModelPredictor(rec, mesh_resolution=24, mesh_threshold=level), toy, tmp_path / "full", run)
    e = full["objects"][0]
    assert e["status"] == "ok" and e["chamfer"] > 0 and 0 <= e["fscore@0.1"] <= 1
    assert {"encode", "mesh", "render", "align"} <= set(e["timings"])
    assert (tmp_path / "full" / "meshes" / "box.ply").is_file()


def test_mesh_render_source_scores_the_rasterised_mesh(toy, tmp_path):
    """--render-source mesh: the novel views are the predicted mesh, rasterised with its vertex
    colours (2 x 2 samples, flat), exactly; without a surface they are the bare background."""
    from lrm.evaluate.predictors import ModelPredictor
    from lrm.model.lrm import LRM
    from lrm.model.presets import tiny
    from lrm.pipeline import Reconstructor

    torch.manual_seed(0)
    rec = Reconstructor(LRM(tiny()).eval(), device="cpu", dtype="fp32")
    rgba = np.zeros((32, 32, 4), np.uint8)
    planes = rec.reconstruct(rgba, remove_bg=False, recenter=False, mesh=False).planes
    level = float(rec.density_fn(planes)(torch.rand(4096, 3) * 2 - 1).median())
    c2w = cameras.orbit_cameras(2, 2.5, 20.0, -90.0).numpy()
    intr = np.tile(np.array([0.9, 0.9, 0.5, 0.5]), (2, 1))
    mesh_pred = ModelPredictor(rec, 24, level, render_source="mesh").predict(rgba, 2.0)
    views = mesh_pred.render(c2w, intr, 32)
    m = rec.extract_mesh(planes, 24, level, target_faces=0)
    want = rasterize(m.vertices, m.faces, m.colors, c2w[1], intr[1], 32, background=rec.inference.render_background,
                     supersample=2)[0]
    np.testing.assert_allclose(views[1], want, atol=1e-6)
    field = ModelPredictor(rec, 24, level).predict(rgba, 2.0).render(c2w, intr, 32)
    assert np.abs(views - field).mean() > 0.01  # not the volume render
    empty = ModelPredictor(rec, 24, 1e9, render_source="mesh").predict(rgba, 2.0)
    assert empty.mesh is None and (empty.render(c2w, intr, 8) == rec.inference.render_background).all()


def test_a_predictor_answering_the_ground_truth_scores_perfectly(toy, tmp_path):
    """An oracle that returns the ground-truth mesh the harness hands it (already in the
    predictor's frame) and renders it as the dataset was rendered scores near-perfect numbers
    through the whole harness, from an input view that is not the canonical one and with another
    front azimuth, so every change of frame (dataset -> predictor for the mesh and the ring
    cameras, predictor -> dataset for the geometry) is exercised: a wrong one anywhere costs
    tens of dB, the geometry and the input-view IoU."""
    from eval_toy import FOCAL

    from lrm.data.format import read_object
    from lrm.evaluate.predictors import DATASET_FRONT_AZIMUTH, Prediction, to_model_frame
    from lrm.evaluate.runner import EvalConfig, evaluate

    class GroundTruth:
        name, front_azimuth, background = "ground truth", 0.0, 1.0  # TripoSR's front: a turned frame

        def describe(self) -> dict:
            return {"name": self.name, "kind": "oracle"}

        def predict(self, rgba, distance, gt):
            mesh = gt.copy()  # the harness gives the ground truth in this predictor's frame
            colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0

            def render(c2w, intrinsics, size):
                assert np.allclose(intrinsics[:, 0], FOCAL)
                return np.stack([rasterize(mesh.vertices, mesh.faces, colours, c, k, size, background=1.0,
                                           shading=0.3, supersample=2)[0] for c, k in zip(c2w, intrinsics)])

            return Prediction(render, mesh)

    oracle = GroundTruth()
    assert oracle.front_azimuth != DATASET_FRONT_AZIMUTH
    to_model = to_model_frame(read_object(toy, "box", views=[1]).c2w[0], oracle.front_azimuth)
    assert not np.allclose(to_model, np.eye(4), atol=0.1)  # a real change of frame
    run = EvalConfig(objects=("box",), views=(1,), points=4000, iou_resolution=32, sheet_views=2, align="none")
    e = evaluate(oracle, toy, tmp_path / "oracle", run)["objects"][0]
    assert e["status"] == "ok", e
    assert e["psnr"] > 40 and e["ssim"] > 0.99, (e["psnr"], e["ssim"])  # uint8 round-off only
    assert e["chamfer"] < 0.01 and e["fscore@0.05"] > 0.99 and e["volume_iou"] > 0.95, e
    assert e["input_iou"] > 0.97, e["input_iou"]


def test_compare_reports(toy, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["evaluate", "--baseline", "sphere", "--data", str(toy), "-o", str(a), "--objects", "box", *FAST]) == 0
    assert main(["evaluate", "--baseline", "sphere", "--data", str(toy), "-o", str(b), "--objects", "box",
                 "--align", "none", "--ring-views", "2", *FAST]) == 0
    assert json.loads((b / "metrics.json").read_text())["protocol"]["ring_views"] == 2
    capsys.readouterr()
    assert main(["evaluate", "--compare", str(a), str(b), "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "Protocols differ" in text and "align: icp vs none" in text and "ring_views: None vs 2" in text
    assert "| CD↓ |" in text and "1 in common" in text
    assert (tmp_path / "compare.md").read_text().strip() == text.strip()


def test_cli_errors(tmp_path, capsys):
    assert main(["evaluate", "--baseline", "sphere", "--data", str(tmp_path), "-o", str(tmp_path / "r")]) == 2
    assert "not a dataset" in capsys.readouterr().err
    assert main(["evaluate", "-o", str(tmp_path / "r")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", "--compare", str(tmp_path), str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


class _Oracle:
    """Answers each input view with the ground-truth mesh of the object it shows (looked up by
    the pixels), vertex-coloured: the best any predictor can do, and fully input-dependent."""

    name, front_azimuth, background = "oracle", -90.0, 1.0

    def __init__(self, root):
        from lrm.data.format import list_objects, object_dir, read_object

        self.objects = []
        for i in list_objects(root):
            mesh = trimesh.load(object_dir(root, i) / "mesh.ply", process=False)
            self.objects.append((read_object(root, i, views=[0]).rgba[0], mesh))

    def describe(self):
        return {"name": self.name, "kind": "test"}

    def predict(self, rgba, distance, gt=None):
        from lrm.evaluate.predictors import Prediction

        mesh = next(m for img, m in self.objects if np.array_equal(img, rgba))
        colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0

        def render(c2w, intr, size):
            return np.stack([rasterize(mesh.vertices, mesh.faces, colours, c, k, size, background=1.0)[0]
                             for c, k in zip(c2w, intr)])

        return Prediction(render, mesh)


def test_shuffle_control_and_input_view_metrics(toy, tmp_path):
    from lrm.evaluate.runner import EvalConfig, evaluate

    cfg = EvalConfig(points=2000, iou_resolution=32, sheet_views=2, shuffle=True)
    report = evaluate(_Oracle(toy), toy, tmp_path / "r", cfg)
    box, cyl = report["objects"]
    for e in (box, cyl):
        # its own ground truth: the silhouette matches the input alpha up to anti-aliased edge pixels
        assert e["input_iou"] > 0.9 and e["fscore@0.1"] > 0.99
        assert e["input_color_error"] < 0.12  # flat vertex colours vs the shaded (30 %) input
        # scored against the other object's mesh: worse on every shuffled metric
        assert e["shuffled_input_iou"] < e["input_iou"] - 0.1
        assert e["shuffled_fscore@0.1"] < e["fscore@0.1"] and e["shuffled_chamfer"] > e["chamfer"]
        assert e["shuffled_psnr"] < e["psnr"]
    assert box["shuffled_input"] == "cylinder" and cyl["shuffled_input"] == "box"
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "Does the output depend on the input?" in summary and "| F@0.1↑ |" in summary
    # an empty prediction scores zero silhouette agreement, not a missing value
    from lrm.evaluate.runner import input_view_metrics, load_target

    target = load_target(_Oracle(toy), toy, "box", 0, cfg)
    assert input_view_metrics(None, target) == {"input_iou": 0.0, "input_color_error": None}


def _scores(report):
    return [{k: v for k, v in e.items() if k != "timings"} for e in report["objects"]]


def test_a_stopped_evaluation_resumes_where_it_stopped(toy, tmp_path, monkeypatch, capsys):
    """A run stopped after its first object leaves a report marked unfinished; --compare refuses
    it; rerunning the same command keeps the finished entry, evaluates only the rest (the
    control's kept object is predicted again, not re-scored) and ends with the report of an
    uninterrupted run. A finished report, or an unfinished one of another protocol, is refused."""
    from lrm.cli import evaluate as cli_evaluate
    from lrm.evaluate import runner

    args = ["evaluate", "--baseline", "sphere", "--data", str(toy), "--shuffle", *FAST]
    assert main([*args, "-o", str(tmp_path / "clean")]) == 0
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert clean["complete"] and clean["planned"] == 2

    def stop(entry):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_evaluate, "_progress", stop)
    out = tmp_path / "stopped"
    assert main([*args, "-o", str(out)]) != 0
    partial = json.loads((out / "metrics.json").read_text())
    assert not partial["complete"] and [e["id"] for e in partial["objects"]] == ["box"]
    assert not (out / "summary.md").exists()
    capsys.readouterr()
    assert main(["evaluate", "--compare", str(tmp_path / "clean"), str(out)]) == 2
    assert "unfinished report (1 of 2 entries" in capsys.readouterr().err
    monkeypatch.undo()

    scored = []
    real_evaluate_object = runner.evaluate_object
    monkeypatch.setattr(runner, "evaluate_object", lambda p, d, i, *a, **k: scored.append(i) or real_evaluate_object(p, d, i, *a, **k))
    assert main([*args, "-o", str(out), "--ring-views", "2"]) == 2  # another protocol: refused, kept
    assert "unfinished report of another run (protocol differ)" in capsys.readouterr().err
    assert main([*args, "-o", str(out)]) == 0
    assert "resuming the unfinished report" in capsys.readouterr().err and scored == ["cylinder"]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["complete"] and _scores(resumed) == _scores(clean)
    assert resumed["objects"][0]["shuffled_input"] == "cylinder"  # the control covers the kept object
    assert (out / "summary.md").is_file()
    assert main([*args, "-o", str(out)]) == 2 and "already holds a report" in capsys.readouterr().err
