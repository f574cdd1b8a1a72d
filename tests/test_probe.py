"""Precision chosen by measurement (lrm.probe): the choice logic with injected timings, the cache,
and the load-time wiring. Nothing here depends on the CPU it runs on."""

import json
import os
import warnings

import pytest
import torch

from lrm import probe
from lrm.device import choose_precision

AVX2_EPYC = {"fp32": 118.0, "bf16": 0.65, "int8": 2.6}  # measured on an AVX2-only AMD EPYC
ICE_LAKE = {"fp32": 100.0, "bf16": 30.0, "int8": 380.0}  # VNNI: int8 3.8x fp32
AMX = {"fp32": 100.0, "bf16": 900.0, "int8": 700.0}
CPU = torch.device("cpu")


@pytest.mark.parametrize("rates, want", [
    (AVX2_EPYC, "fp32"),  # nothing beats fp32
    (ICE_LAKE, "int8"),  # int8 measured faster
    (AMX, "bf16"),  # the fastest of two faster ones
    ({"fp32": 100.0, "bf16": 110.0, "int8": 0.0}, "fp32"),  # 10% is within the noise margin
    ({"fp32": 100.0, "bf16": 0.0, "int8": 120.0}, "int8"),  # 20% is not
    ({"fp32": 100.0}, "fp32"),  # candidates missing: unavailable
])
def test_choose_takes_a_reduced_precision_only_when_measured_faster(rates, want):
    assert probe.choose(rates) == want


def test_slow_explicit_choices_are_flagged():
    assert probe.is_slow(AVX2_EPYC, "int8") and probe.is_slow(AVX2_EPYC, "bf16")
    assert not probe.is_slow(ICE_LAKE, "int8") and not probe.is_slow(AVX2_EPYC, "fp32")
    assert not probe.is_slow({"fp32": 100.0, "int8": 0.0}, "int8")  # unavailable is not "slow"


def test_probe_caches_per_cpu_isa_torch_version_and_threads(tmp_path, monkeypatch):
    path = tmp_path / "probe.json"
    calls = []
    monkeypatch.setattr(probe, "_busy", lambda: False)
    monkeypatch.setattr(probe, "_cpu_seconds", lambda: None)  # nothing else ran meanwhile (see below)
    for cap in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # the run's own cap, if any, is the baseline
        monkeypatch.delenv(cap, raising=False)

    def fake(shape):
        calls.append(shape)
        return dict(ICE_LAKE)

    sound = lambda shape: {"fp32": 2e-7, "bf16": 0.003, "int8": 0.009}  # noqa: E731
    first = probe.probe((768, 192, 768), fake, path, sound)
    assert (first.choice, first.cached, calls) == ("int8", False, [(768, 192, 768)])
    second = probe.probe((768, 192, 768), fake, path, sound)
    assert second.cached and second.rates == first.rates and len(calls) == 1
    assert "cached probe: fp32 100, bf16 30, int8 380 GFLOP/s" == second.describe()
    probe.probe((256, 768, 3072), fake, path, sound)  # another model shape is probed on its own
    assert len(calls) == 2
    monkeypatch.setattr(torch, "__version__", "9.9.9")  # a new torch: the old entries do not apply
    assert not probe.probe((768, 192, 768), fake, path, sound).cached and len(calls) == 3
    keys = json.loads(path.read_text())
    assert sum("torch 9.9.9" in k for k in keys) == 1 and len(keys) == 3
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # another kernel ISA on the same CPU: its own entry
    assert not probe.probe((768, 192, 768), fake, path, sound).cached and len(calls) == 4
    monkeypatch.setattr(probe, "cpu_name", lambda: "Intel(R) Xeon(R) Processor (family 6 model 106)")
    assert not probe.probe((768, 192, 768), fake, path, sound).cached and len(calls) == 5  # same name, other model
    path.write_text("{not json")  # a damaged cache is re-measured, not an error
    assert not probe.probe((768, 192, 768), fake, path, sound).cached
    busy = tmp_path / "busy.json"  # a loaded machine's timings are used once, not kept
    monkeypatch.setattr(probe, "_busy", lambda: True)
    assert probe.probe((768, 192, 768), fake, busy, sound).choice == "int8" and not busy.exists()


def _inject(monkeypatch, rates):
    monkeypatch.setattr(probe, "probe", lambda shape: probe.ProbeResult(dict(rates), probe.choose(rates)))


def test_auto_follows_the_probe_not_the_flags(monkeypatch):
    monkeypatch.setenv("LRM_PROBE", "1")
    monkeypatch.setattr(probe, "guess_from_flags", lambda: pytest.fail("flags consulted while probing"))
    _inject(monkeypatch, AVX2_EPYC)
    dtype, note = choose_precision("auto", CPU)
    assert dtype == torch.float32 and note == "probed: fp32 118, bf16 0.7, int8 2.6 GFLOP/s"
    _inject(monkeypatch, ICE_LAKE)
    assert choose_precision("auto", CPU)[0] == torch.int8
    _inject(monkeypatch, AMX)
    assert choose_precision("auto", CPU)[0] == torch.bfloat16


def test_explicit_slow_choice_warns_and_obeys(monkeypatch):
    monkeypatch.setenv("LRM_PROBE", "1")
    _inject(monkeypatch, AVX2_EPYC)
    with pytest.warns(RuntimeWarning, match=r"--dtype int8 measured 45\.4x slower than fp32"):
        dtype, _ = choose_precision("int8", CPU)
    assert dtype == torch.int8
    _inject(monkeypatch, ICE_LAKE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("int8", CPU) == (torch.int8, "")
        assert choose_precision("fp32", CPU) == (torch.float32, "")


def test_probing_off_uses_the_flag_guess(monkeypatch):
    monkeypatch.setenv("LRM_PROBE", "0")
    monkeypatch.setattr(probe, "probe", lambda shape: pytest.fail("probed while switched off"))
    monkeypatch.setattr(probe, "guess_from_flags", lambda: "bf16")
    assert choose_precision("auto", CPU) == (torch.bfloat16, "CPU-flag guess (LRM_PROBE=0)")


def test_measure_reports_every_candidate_and_the_reconstructor_uses_it(tmp_path, monkeypatch, tiny_model):
    """The real probe on this machine: figures for all three candidates, within the time budget,
    and the Reconstructor's dtype is the probe's choice (whatever this CPU is)."""
    import copy
    import time

    from lrm.pipeline import Reconstructor

    monkeypatch.setenv("LRM_PROBE_CACHE", str(tmp_path / "probe.json"))
    monkeypatch.setenv("LRM_PROBE", "1")
    t0 = time.perf_counter()
    result = probe.probe((768, 192, 768))
    assert time.perf_counter() - t0 < 2.0  # ~0.2 s idle; generous for a loaded CI machine
    assert set(result.rates) == {"fp32", "bf16", "int8"} and result.rates["fp32"] > 0
    assert result.errors["fp32"] < 1e-6 and probe.accurate(result.errors, result.choice)  # never an inaccurate pick
    monkeypatch.setattr(probe, "probe", lambda shape: result)  # the same figures (a busy machine re-measures)
    rec = Reconstructor(copy.deepcopy(tiny_model), device="cpu", dtype="auto")  # int8 quantises in place
    want = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}[result.choice]
    assert rec.compute_dtype == want and rec.precision_note == result.describe()


SATURATING = {"fp32": 2e-7, "bf16": 0.003, "int8": 0.14}  # int8 with oneDNN held to AVX2 (measured)


def test_an_inaccurate_kernel_is_never_chosen_however_fast():
    assert probe.choose(ICE_LAKE, errors=SATURATING) == "fp32"  # int8 3.8x faster, but 14 % off
    assert probe.choose(AMX, errors={"bf16": 0.05, "int8": 0.009}) == "int8"  # the accurate one of two
    assert probe.choose(ICE_LAKE, errors={}) == "int8"  # errors not measured: speed decides
    result = probe.ProbeResult(dict(ICE_LAKE), probe.choose(ICE_LAKE, errors=SATURATING), errors=SATURATING)
    assert result.describe() == "probed: fp32 100, bf16 30, int8 380 GFLOP/s; int8 inaccurate: 14 % error"


def test_cache_keeps_errors_and_remeasures_entries_without_them(tmp_path, monkeypatch):
    path = tmp_path / "probe.json"
    monkeypatch.setattr(probe, "_busy", lambda: False)
    monkeypatch.setattr(probe, "_cpu_seconds", lambda: None)  # nothing else ran meanwhile (see below)
    key = probe.cache_key((768, 192, 768), torch.get_num_threads())
    path.write_text(json.dumps({key: dict(ICE_LAKE)}))  # written before the accuracy check existed
    result = probe.probe((768, 192, 768), lambda shape: dict(ICE_LAKE), path, lambda shape: dict(SATURATING))
    assert not result.cached and result.choice == "fp32"
    assert json.loads(path.read_text())[key]["errors"] == SATURATING
    again = probe.probe((768, 192, 768), lambda shape: pytest.fail("measured again"), path,
                        lambda shape: pytest.fail("measured again"))
    assert again.cached and again.choice == "fp32" and again.errors == SATURATING


def test_explicit_inaccurate_choice_warns_and_obeys(monkeypatch):
    monkeypatch.setenv("LRM_PROBE", "1")
    monkeypatch.setattr(probe, "probe", lambda shape: probe.ProbeResult(
        dict(ICE_LAKE), probe.choose(ICE_LAKE, errors=SATURATING), errors=SATURATING))
    with pytest.warns(RuntimeWarning, match=r"--dtype int8: this CPU's int8 kernel measured 14 % error"):
        dtype, _ = choose_precision("int8", CPU)
    assert dtype == torch.int8
    assert choose_precision("auto", CPU)[0] == torch.float32


def test_a_probe_beside_other_work_is_used_but_not_cached(tmp_path, monkeypatch):
    """The load average lags by a minute; CPU time taken by other processes during the probe
    (/proc/stat less this process's own) decides too. Entries from before that check are
    measured again."""
    path = tmp_path / "probe.json"
    monkeypatch.setattr(probe, "_busy", lambda: False)
    sound = lambda shape: {"fp32": 2e-7, "bf16": 0.003, "int8": 0.009}  # noqa: E731
    tick = (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")

    def readings(others_s: float):  # one second of wall clock, 0.2 s of it this process's CPU time
        seq = iter([(100.0, 1.0, 10.0), (100.0 + 0.2 + others_s + tick, 1.2, 11.0)])
        monkeypatch.setattr(probe, "_cpu_seconds", lambda: next(seq))

    readings(0.9)  # another process kept 0.9 of a core busy: used, not kept
    result = probe.probe((768, 192, 768), lambda shape: dict(ICE_LAKE), path, sound)
    assert result.choice == "int8" and not path.exists()
    assert probe._others_cores((100.0, 1.0, 10.0), (100.0 + 0.2 + 0.9 + tick, 1.2, 11.0)) == pytest.approx(0.9)
    readings(0.05)  # background noise only: kept, marked quiet
    probe.probe((768, 192, 768), lambda shape: dict(ICE_LAKE), path, sound)
    key = probe.cache_key((768, 192, 768), torch.get_num_threads())
    assert json.loads(path.read_text())[key]["quiet"] is True
    assert probe.probe((768, 192, 768), lambda shape: pytest.fail("measured again"), path, sound).cached
    stale = {key: {**dict(ICE_LAKE), "int8": 14.0, "errors": sound(None)}}  # cached before the check
    path.write_text(json.dumps(stale))
    readings(0.0)
    again = probe.probe((768, 192, 768), lambda shape: dict(ICE_LAKE), path, sound)
    assert not again.cached and again.choice == "int8"


def test_cache_file_location(tmp_path, monkeypatch):
    monkeypatch.delenv("LRM_PROBE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert probe.cache_path() == tmp_path / "lrm" / "precision-probe.json"
    monkeypatch.setenv("LRM_PROBE_CACHE", str(tmp_path / "elsewhere.json"))
    assert probe.cache_path() == tmp_path / "elsewhere.json"
