"""The web demo: its work function (no Gradio needed), the UI, and a real server on 127.0.0.1 driven
through gradio_client (20 concurrent jobs, an oversize upload). Gradio is in the test extra."""

import zipfile

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
    return DemoSession(rec, tmp_path, video_size=16)


@pytest.fixture(scope="module")
def views_session(tmp_path_factory):
    """A demo session on a reduced InstantMesh-architecture model (random weights)."""
    from test_weights_instantmesh import small_cfg

    from lrm.model.lrm import LRM

    torch.manual_seed(0)
    rec = Reconstructor(LRM(small_cfg()).eval(), device="cpu", dtype="fp32")
    planes = rec.model(torch.full((1, 1, 3, 64, 64), 0.5), rec.model.source_camera(1)[:, None])
    rec.inference.mesh_threshold = float(torch.quantile(rec.density_fn(planes)(torch.rand(4096, 3) * 2 - 1), 0.8))
    rec.inference.mesh_resolution, rec.inference.render_size = 32, 16
    return DemoSession(rec, tmp_path_factory.mktemp("views"), video_size=16)


def test_several_views_tab_takes_transforms_colmap_and_sheets(views_session, tmp_path):
    """The demo's several-views work function: uploads (flat file lists, as a browser sends them)
    of a transforms.json scene, a COLMAP capture and a Zero123++ sheet give the mesh the API
    computes from the same views."""
    import trimesh
    from PIL import Image
    from test_views import write_colmap_capture, write_scene

    from lrm.views import read_views

    write_scene(tmp_path / "scene", n=3, size=64)
    write_colmap_capture(tmp_path / "cap", n=8)
    sheet = np.zeros((960, 640, 4), np.uint8)
    sheet[100:220, 100:220] = [200, 80, 40, 255]
    Image.fromarray(sheet).save(tmp_path / "sheet.png")
    uploads = {"scene": sorted((tmp_path / "scene").iterdir()),
               "cap": sorted((tmp_path / "cap").rglob("*.*")),
               "sheet": [tmp_path / "sheet.png"]}
    sources = {"scene": str(tmp_path / "scene"), "cap": str(tmp_path / "cap"),
               "sheet": f"zero123pp:{tmp_path}/sheet.png"}
    for kind, files in uploads.items():
        result = views_session.predict_views(files, video_frames=2)
        views = read_views(sources[kind])
        assert result.message.startswith(f"{len(views.images)} views | ") and result.video.is_file()
        want = views_session.rec.reconstruct_views(views.images, views.cameras16)
        got = trimesh.load(result.glb, process=False, force="mesh")
        assert len(got.faces) == len(want.mesh.faces) > 0, kind
        np.testing.assert_allclose(np.sort(got.vertices[:, 0]), np.sort((want.mesh.vertices @ want.frame.T)[:, 0]),
                                   atol=1e-4)


def test_several_views_errors(views_session, session, tmp_path):
    from test_views import write_scene

    write_scene(tmp_path / "scene", n=2, size=64)
    images = sorted((tmp_path / "scene").glob("*.png"))
    for s, files, fragment in [(session, images, "takes one view"), (views_session, [], "upload"),
                               (views_session, images, "transforms.json")]:
        with pytest.raises(LRMError, match=fragment):
            s.predict_views(files)


def _green_box() -> np.ndarray:
    """A 64² RGBA photo: an opaque green box on a transparent background."""
    image = np.zeros((64, 64, 4), np.uint8)
    image[16:48, 20:44] = [30, 200, 40, 255]
    return image


def test_predict_writes_mesh_and_video(session):
    image = _green_box()
    result = session.predict(image, remove_bg=True, mesh_resolution=32, video_frames=3)
    assert result.glb.is_file() and result.obj.name == "mesh.obj.zip"
    with zipfile.ZipFile(result.obj) as z:  # untextured: the OBJ alone, with its vertex colours
        assert z.namelist() == ["mesh.obj"]
        assert z.read("mesh.obj") == (result.obj.parent / "mesh.obj").read_bytes()
    assert result.video is not None and result.video.is_file()
    import trimesh

    glb = trimesh.load(result.glb, process=False, force="mesh")
    ply = trimesh.load(result.ply, process=False, force="mesh")  # the same mesh, same frame, as PLY
    assert len(ply.faces) == len(glb.faces) > 0 and np.allclose(ply.vertices, glb.vertices, atol=1e-6)
    assert result.preview.shape == (128, 128, 3)
    assert "encode" in result.message and "video" in result.message


def test_textured_obj_download_carries_its_material_and_texture(session):
    """A textured OBJ is three files (.obj -> mtllib .mtl -> map_Kd .png); the download zips all three."""
    image = _green_box()
    result = session.predict(image, remove_bg=True, mesh_resolution=32, texture=True, video_frames=0)
    with zipfile.ZipFile(result.obj) as z:
        assert sorted(z.namelist()) == ["mesh.mtl", "mesh.obj", "mesh.png"]
        obj, mtl = z.read("mesh.obj").decode(), z.read("mesh.mtl").decode()
        assert "mtllib mesh.mtl" in obj and "map_Kd mesh.png" in mtl
        assert z.read("mesh.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_without_image_is_a_clear_error(session):
    with pytest.raises(LRMError, match="upload an image"):
        session.predict(None)


def test_ui_builds(session):
    pytest.importorskip("gradio")
    ui = build_ui(session)
    assert ui is not None


def _serve(session, max_upload_mb=20.0):
    import socket

    from lrm.demo import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = build_ui(session)
    launch(ui, "127.0.0.1", port, max_upload_mb, 64, prevent_thread_lock=True, quiet=True)
    return ui, f"http://127.0.0.1:{port}/"


def test_twenty_concurrent_requests_are_all_served(session, tmp_path):
    """The queue holds everyone (it turned away 14 of 20 at max_size 4); jobs run one at a time."""
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from PIL import Image

    path = tmp_path / "in.png"
    image = _green_box()
    Image.fromarray(image, "RGBA").save(path)
    ui, url = _serve(session)
    try:
        client = Client(url, verbose=False)
        import time

        t0 = time.perf_counter()
        jobs = [client.submit(handle_file(str(path)), False, 0.8, 64, False, 0, api_name="/run") for _ in range(20)]
        results, latency = [], []
        for job in jobs:  # a job's latency: submitted together at t0, done when its result is in
            results.append(job.result(timeout=300))
            latency.append(time.perf_counter() - t0)
        print(f"20 concurrent jobs: first done {latency[0]:.1f} s, median {sorted(latency)[10]:.1f} s, "
              f"last {max(latency):.1f} s")
        assert len(results) == 20 and all(r[4].startswith("preprocess") for r in results)
        assert session.counter == 20  # 20 jobs ran on the server (the client dedups identical files)
    finally:
        ui.close()


def test_oversize_upload_is_refused_and_the_server_keeps_serving(session, tmp_path):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from PIL import Image

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 4), np.uint8), "RGBA").save(big)
    assert big.stat().st_size > 1_000_000
    image = _green_box()
    Image.fromarray(image, "RGBA").save(small)
    ui, url = _serve(session, max_upload_mb=1.0)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="(?i)size|large|exceed"):
            client.predict(handle_file(str(big)), False, 0.8, 64, False, 0, api_name="/run")
        ok = client.predict(handle_file(str(small)), False, 0.8, 64, False, 0, api_name="/run")
        assert ok[4].startswith("preprocess")
    finally:
        ui.close()


def test_non_image_upload_is_refused_and_the_server_keeps_serving(session, tmp_path):
    """A text file named .png, and a decompression bomb (a 12,000² PNG, > 89 MP, 0.4 MB on disk),
    are refused with an error the page shows; the next real image is served."""
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from PIL import Image

    fake, bomb, small = tmp_path / "fake.png", tmp_path / "bomb.png", tmp_path / "small.png"
    fake.write_text("not an image at all\n")
    Image.new("L", (12_000, 12_000)).save(bomb)
    Image.fromarray(_green_box(), "RGBA").save(small)
    ui, url = _serve(session)
    try:
        client = Client(url, verbose=False)
        for bad in (fake, bomb):
            with pytest.raises(Exception):
                client.predict(handle_file(str(bad)), False, 0.8, 64, False, 0, api_name="/run")
        ok = client.predict(handle_file(str(small)), False, 0.8, 64, False, 0, api_name="/run")
        assert ok[4].startswith("preprocess") and session.counter == 1  # the bad uploads never ran
    finally:
        ui.close()


def slow_turntable(session, monkeypatch, seconds: float = 0.1) -> None:
    """Make the session's turntable frames take `seconds` each (a 120-frame turntable: 12 s)."""
    import time

    frames = session.rec.turntable_frames

    def slow_frames(*args, **kwargs):
        for frame in frames(*args, **kwargs):
            time.sleep(seconds)
            yield frame

    monkeypatch.setattr(session.rec, "turntable_frames", slow_frames)


def test_a_job_whose_user_leaves_stops(session, tmp_path, monkeypatch):
    """A job cancelled mid-turntable (what Gradio does when the page closes) stops within a few
    frames instead of rendering on as a zombie, and the one worker serves the next job at once."""
    pytest.importorskip("gradio")
    import time

    from gradio_client import Client, handle_file
    from PIL import Image

    slow_turntable(session, monkeypatch)
    path = tmp_path / "in.png"
    Image.fromarray(_green_box(), "RGBA").save(path)
    ui, url = _serve(session)
    try:
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(path)), False, 0.8, 64, False, 120, api_name="/run")
        deadline = time.time() + 60
        while session.frames_rendered < 10 and time.time() < deadline:
            time.sleep(0.05)
        assert session.frames_rendered >= 10, "the job never reached its turntable"
        job.cancel()
        time.sleep(1.5)  # at most FRAMES_PER_STEP frames (0.5 s) after the cancel, then nothing
        stopped = session.frames_rendered
        time.sleep(1.5)
        assert session.frames_rendered == stopped < 30, (stopped, session.frames_rendered)
        t0 = time.perf_counter()
        ok = client.predict(handle_file(str(path)), False, 0.8, 64, False, 0, api_name="/run")
        assert ok[4].startswith("preprocess") and time.perf_counter() - t0 < 10  # not stuck behind the zombie
        assert session.counter == 2
    finally:
        ui.close()


def test_bundled_model_gives_splats_to_download(tmp_path):
    """With the bundled model on a bundled example the page offers GLB, OBJ and a splat .ply."""
    from pathlib import Path

    from PIL import Image

    from lrm.splat import read_splat_ply

    example = Path(__file__).resolve().parents[1] / "examples" / "garbage_can.png"
    session = DemoSession(Reconstructor("default", device="cpu", dtype="fp32"), tmp_path)
    result = session.predict(np.asarray(Image.open(example)), remove_bg=False, mesh_resolution=48, video_frames=0)
    assert result.splat is not None and len(read_splat_ply(result.splat)["x"]) > 100
    assert "splat" in result.message


def test_splats_take_photo_colours_from_one_view_only(views_session, session, tmp_path, monkeypatch):
    """Photo colours assume the canonical input camera: the one-photo tab gives the splats the
    photo (as its mesh), the several-views tab does not (view 0 is not seen from there)."""
    from PIL import Image

    sheet = np.zeros((960, 640, 4), np.uint8)
    sheet[100:220, 100:220] = [200, 80, 40, 255]
    Image.fromarray(sheet).save(tmp_path / "sheet.png")
    for demo, run in ((session, lambda: session.predict(np.full((64, 64, 3), 128, np.uint8), remove_bg=False, video_frames=0)),
                      (views_session, lambda: views_session.predict_views([tmp_path / "sheet.png"], video_frames=0))):
        photos = []
        real = demo.rec.splats
        monkeypatch.setattr(demo.rec, "splats", lambda *a, photo=None, **k: photos.append(photo) or real(*a, photo=photo, **k))
        run()
        assert len(photos) == 1 and (photos[0] is None) == (demo is views_session)
