"""Per-task specialists: building a folder from single-task runs, choosing the sampling steps on
training pairs, loading with integrity checks, and routing each image to its task's network."""

import json
import shutil

import pytest
import torch
from small_training import small_config, small_data

from drdd_edu.checkpoint import latest_checkpoint
from drdd_edu.metrics import psnr
from drdd_edu.specialists import (
    MANIFEST,
    build_specialists,
    choose_sampling_steps,
    load_specialists,
    main,
    restore_by_task,
    restore_with,
)
from drdd_edu.train import Trainer


@pytest.fixture(scope="module")
def runs(cache_dir, tmp_path_factory):
    """Two tiny single-task runs (rain, blur) of 6 steps each, with their final checkpoints."""
    root = tmp_path_factory.mktemp("spec_runs")
    out = {}
    for task in ("rain", "blur"):
        cfg = small_config(
            cache_dir, root / task, steps=6, objective="pred_res", sum_scale=0.01, tasks=(task,)
        )
        trainer = Trainer(cfg)
        trainer.run()
        out[task] = trainer
    return root, out


@pytest.fixture(scope="module")
def folder(runs, tmp_path_factory):
    root, _ = runs
    dst = tmp_path_factory.mktemp("specialists")
    ckpts = [latest_checkpoint(root / t / "checkpoints") for t in ("blur", "rain")]
    build_specialists(ckpts, dst, candidates=(1, 2), n_selection=8)
    return dst


def test_build_writes_a_manifest_with_steps_chosen_on_training_pairs(folder, runs):
    manifest = json.loads((folder / MANIFEST).read_text())
    assert list(manifest["tasks"]) == ["rain", "blur"]  # task order, whatever the input order
    for task, entry in manifest["tasks"].items():
        assert (folder / entry["file"]).is_file() and entry["file"] == f"tiny-{task}.pt"
        table = {int(k): v for k, v in entry["selection"].items()}
        assert set(table) == {1, 2} and entry["n_selection"] == 8
        best = max(table, key=lambda n: (table[n], -n))
        assert entry["sampling_steps"] == best
        assert entry["trained_steps"] == 6
    # the choice is made on the task's *training* pairs: recompute it from those
    data = small_data(runs[1]["rain"].config.cache_dir)
    train = data.paired_subset("train")
    idx = torch.nonzero(train.task == data.tasks.index("rain")).flatten()
    idx = idx[torch.linspace(0, len(idx) - 1, min(8, len(idx))).round().long()]
    clean, deg = train.clean_u8[idx].float() / 255, train.degraded_u8[idx].float() / 255
    specs = load_specialists(folder)
    best, table = choose_sampling_steps(
        specs["rain"].model, specs["rain"].config, clean, deg, (1, 2)
    )
    want = {int(k): v for k, v in manifest["tasks"]["rain"]["selection"].items()}
    assert best == manifest["tasks"]["rain"]["sampling_steps"]
    assert all(abs(table[n] - want[n]) < 1e-3 for n in (1, 2))


def test_load_and_route_each_image_to_its_task(folder):
    specs = load_specialists(folder)
    assert list(specs) == ["rain", "blur"]
    assert all(s.config.tasks == (s.task,) and not s.model.training for s in specs.values())
    g = torch.Generator().manual_seed(0)
    deg = torch.rand((6, 3, 16, 16), generator=g)
    names = ("low_light", "rain", "noise", "blur", "haze")
    ids = torch.tensor([1, 3, 3, 1, 1, 3])
    out = restore_by_task(specs, deg, ids, names, seed=4)
    assert out.shape == deg.shape and torch.isfinite(out).all()
    for k, name in ((1, "rain"), (3, "blur")):
        m = ids == k
        s = specs[name]
        alone = restore_with(s.model, s.config, deg[m], s.sampling_steps, seed=4)
        torch.testing.assert_close(out[m], alone, rtol=0, atol=1e-6)
    # another task's network gives another answer: the routing matters
    other = restore_with(specs["blur"].model, specs["blur"].config, deg[ids == 1], 1, seed=4)
    assert float((other - out[ids == 1]).abs().max()) > 1e-4


def test_restore_with_is_repeatable_and_checks_its_input(folder):
    s = load_specialists(folder)["blur"]
    deg = torch.rand((3, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    a = restore_with(s.model, s.config, deg, 2, seed=7)
    assert torch.equal(a, restore_with(s.model, s.config, deg, 2, seed=7))
    assert not torch.equal(a, restore_with(s.model, s.config, deg, 2, seed=8))
    with pytest.raises(ValueError, match=r"sampling_steps must be in \[1, "):
        restore_with(s.model, s.config, deg, 0)
    with pytest.raises(TypeError, match="floating-point"):
        restore_with(s.model, s.config, (deg * 255).to(torch.uint8), 1)
    with pytest.raises(ValueError, match="NaN"):
        restore_with(s.model, s.config, deg.clone().fill_(float("nan")), 1)


def test_choose_sampling_steps_prefers_the_best_then_the_fewest(folder):
    s = load_specialists(folder)["rain"]
    clean = torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(2))
    deg = (clean + 0.05).clamp(0, 1)
    best, table = choose_sampling_steps(s.model, s.config, clean, deg, (2, 1, 2))
    assert set(table) == {1, 2} and best in table and table[best] == max(table.values())
    for n, v in table.items():
        got = float(psnr(restore_with(s.model, s.config, deg, n), clean).mean())
        assert abs(got - v) < 1e-4
    with pytest.raises(ValueError, match="differ"):
        choose_sampling_steps(s.model, s.config, clean, deg[:2])
    with pytest.raises(ValueError, match="no candidate"):
        choose_sampling_steps(s.model, s.config, clean, deg, ())
    with pytest.raises(ValueError, match=r"ints in \[1, 1000\], got \[0\]"):
        choose_sampling_steps(s.model, s.config, clean, deg, (0, 1))


def test_choose_sampling_steps_breaks_ties_towards_fewer_steps(folder, monkeypatch):
    import drdd_edu.specialists as spec_mod

    s = load_specialists(folder)["rain"]
    clean = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(3))
    same = (clean + 0.1).clamp(0, 1)
    monkeypatch.setattr(spec_mod, "restore_with", lambda *a, **k: same)  # every count ties
    best, table = choose_sampling_steps(s.model, s.config, clean, clean, (5, 3, 2))
    assert best == 2 and len(set(table.values())) == 1


def test_restore_by_task_errors(folder):
    specs = load_specialists(folder)
    deg = torch.rand((2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"no specialist for task\(s\) \['haze'\]"):
        restore_by_task(specs, deg, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="task_ids must be a tensor of shape"):
        restore_by_task(specs, deg, torch.tensor([1]))
    with pytest.raises(TypeError, match="integer task ids"):
        restore_by_task(specs, deg, torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\]"):
        restore_by_task(specs, deg, torch.tensor([1, 9]))


def test_load_rejects_missing_edited_and_mislabelled_files(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no specialist manifest"):
        load_specialists(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    manifest = json.loads((bad / MANIFEST).read_text())
    # an edited checkpoint: its hash no longer matches
    path = bad / manifest["tasks"]["rain"]["file"]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        load_specialists(bad)
    # a missing one
    path.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_specialists(bad)
    # listed under the wrong task (the blur network as "rain", with its true hash)
    manifest["tasks"]["rain"] = dict(manifest["tasks"]["blur"])
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="listed for 'rain' but was trained on 'blur'"):
        load_specialists(bad)
    # a file outside the folder, an unknown task, a malformed manifest
    manifest["tasks"]["rain"]["file"] = "../x.pt"
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="must be a name in the folder"):
        load_specialists(bad)
    (bad / MANIFEST).write_text(json.dumps({"format": 1, "tasks": {"snow": {}}}))
    with pytest.raises(ValueError, match="unknown task 'snow'"):
        load_specialists(bad)
    (bad / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="is not a specialist manifest"):
        load_specialists(bad)
    for broken in ({"format": 2, "tasks": {"rain": {}}}, {"format": 1, "tasks": {}}):
        (bad / MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="is not a specialist manifest"):
            load_specialists(bad)
    for steps in (0, True, "2"):
        entry = {**manifest["tasks"]["blur"], "sampling_steps": steps}
        (bad / MANIFEST).write_text(json.dumps({"format": 1, "tasks": {"blur": entry}}))
        with pytest.raises(ValueError, match="sampling_steps must be an int ≥ 1"):
            load_specialists(bad)


def test_build_rejects_multi_task_and_duplicate_runs(runs, cache_dir, tmp_path, capsys):
    root, _ = runs
    blur = latest_checkpoint(root / "blur" / "checkpoints")
    with pytest.raises(ValueError, match="two checkpoints for task 'blur'"):
        build_specialists([blur, blur], tmp_path / "dup", candidates=(1,), n_selection=2)
    cfg = small_config(cache_dir, tmp_path / "all", steps=1, objective="pred_res")
    Trainer(cfg).run()
    all_tasks = latest_checkpoint(tmp_path / "all" / "checkpoints")
    assert main([str(tmp_path / "x"), str(all_tasks), "--candidates", "1"]) == 2
    err = capsys.readouterr().err
    assert "exactly one task" in err and err.startswith("drdd_edu.specialists: error:")
    with pytest.raises(ValueError, match="n_selection must be an int ≥ 1"):
        build_specialists([blur], tmp_path / "n", n_selection=-5)
    # a single-task network of another stage is not a restoration specialist
    cfg = small_config(
        cache_dir,
        tmp_path / "res",
        steps=1,
        stage="drdd_residual",
        objective="pred_res",
        tasks=("blur",),
    )
    Trainer(cfg).run()
    residual = latest_checkpoint(tmp_path / "res" / "checkpoints")
    with pytest.raises(ValueError, match="an RDDM restoration network"):
        build_specialists([residual], tmp_path / "r", candidates=(1,), n_selection=2)


def test_a_failed_build_leaves_the_old_folder_intact(runs, folder, tmp_path):
    root, _ = runs
    dst = tmp_path / "kept"
    shutil.copytree(folder, dst)
    (dst / "notes.toml").write_text("# kept\n")
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    blur = latest_checkpoint(root / "blur" / "checkpoints")
    with pytest.raises(ValueError, match="two checkpoints"):
        build_specialists([blur, blur], dst, candidates=(1,), n_selection=2)
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kept-")]  # no leftovers
    # a successful build replaces the checkpoints and the manifest, keeps other files
    build_specialists([blur], dst, candidates=(1,), n_selection=2)
    assert sorted(p.name for p in dst.iterdir()) == ["manifest.json", "notes.toml", "tiny-blur.pt"]
    assert list(load_specialists(dst)) == ["blur"]


def test_shipped_specialists_are_the_configs_beside_them():
    """The shipped folder (notebook 07 §10): five tiny single-task networks, small files, each
    trained by the TOML config beside it, its sampling steps the best on its training patches."""
    from drdd_edu.degradations import TASKS
    from drdd_edu.notebook import REPO_ROOT
    from drdd_edu.train import TrainConfig

    folder = REPO_ROOT / "data" / "checkpoints" / "specialists"
    specs = load_specialists(folder)  # SHA-256s and task labels checked
    assert list(specs) == list(TASKS)
    manifest = json.loads((folder / MANIFEST).read_text())
    total = 0
    for task, s in specs.items():
        total += s.path.stat().st_size
        assert s.path.stat().st_size < 1_000_000 and s.config.preset == "tiny"
        toml = TrainConfig.from_toml(folder / f"tiny-{task}.toml")
        assert toml.tasks == (task,)
        assert s.config == toml.replace(out_dir=s.config.out_dir, progress=s.config.progress)
        entry = manifest["tasks"][task]
        table = {int(k): v for k, v in entry["selection"].items()}
        assert s.sampling_steps == max(table, key=lambda n: (table[n], -n))
        assert entry["trained_steps"] == toml.steps and entry["n_selection"] >= 100
        assert max(table.values()) > entry["selection_input"]  # better than its inputs there
    assert total < 8_000_000  # the budget for a shipped model


def test_shipped_specialists_beat_the_input_on_every_task_of_notebook_07s_test_split():
    """Notebook 07 §10's claim at full size (the notebook itself runs 24 patches in CI): on all
    180 held-out patches each task's mean PSNR and SSIM are above the degraded input's."""
    from drdd_edu.metrics import ssim
    from drdd_edu.notebook import REPO_ROOT
    from drdd_edu.train import data_of_config, load_config

    data = data_of_config(load_config("tiny-cpu"))  # notebook 07's data
    test = data.paired_subset("test")
    assert len(test) == 180
    clean, deg = test.clean_u8.float() / 255, test.degraded_u8.float() / 255
    specs = load_specialists(REPO_ROOT / "data" / "checkpoints" / "specialists")
    out = restore_by_task(specs, deg, test.task, data.tasks)
    for k, name in enumerate(data.tasks):
        m = test.task == k
        gain_psnr = float((psnr(out[m], clean[m]) - psnr(deg[m], clean[m])).mean())
        gain_ssim = float((ssim(out[m], clean[m]) - ssim(deg[m], clean[m])).mean())
        assert gain_psnr > 0.2 and gain_ssim > 0.005, (name, gain_psnr, gain_ssim)
