"""The GPU run's building blocks, checked on the CPU."""

from __future__ import annotations

import pytest
import torch

from mripkg.app.paper_gpu import OnDevice, reduced_profile
from mripkg.profiles import PAPER, SMOKE
from tests.tiny_models import TinyNet


def test_reduced_profile_keeps_everything_but_the_subject_counts():
    p = reduced_profile(PAPER, 16)
    assert p.data.n_train_subjects == 16
    assert p.data.n_val_subjects == 2 and p.data.n_test_id_subjects == 2
    assert p.data.image_size == 256 and p.resunetpp == PAPER.resunetpp
    assert reduced_profile(SMOKE, None) is SMOKE
    with pytest.raises(ValueError, match="n_train_subjects"):
        reduced_profile(PAPER, 0)


def test_on_device_passes_gradients_and_returns_to_the_input_device():
    net = TinyNet()
    wrapped = OnDevice(net, torch.device("cpu"))
    y = torch.randn(2, 1, 8, 8, dtype=torch.complex64, requires_grad=True)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[::2] = True
    out = wrapped(y, mask)
    assert out.device == y.device
    torch.testing.assert_close(out, net(y, mask))
    out.sum().backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


def test_smoke_run_writes_attack_numbers_first_and_after_every_stage(tmp_path):
    import json

    from mripkg.app.paper_gpu import run

    seen = []

    def log(line: str) -> None:  # the file on disk when each stage reports
        seen.append(json.loads((tmp_path / "paper_gpu.json").read_text())["stages_done"][-1])

    res = run(
        tmp_path,
        "smoke",
        train_seconds=0.5,
        n_train_subjects=2,
        log=log,
        attack_slices=1,
        costs=False,
    )
    order = ["data", "train resunetpp", "train irim", "attack resunetpp", "attack irim"]
    assert seen == order == res["stages_done"]
    assert set(res["attacks"]["whitebox"]) == {"resunetpp", "irim"}
    assert set(res["attacks"]["transfer"]) == {
        "resunetpp->irim",
        "resunetpp->zero_filled",
        "irim->resunetpp",
        "irim->zero_filled",
    }
    assert "costs" not in res
    again = run(tmp_path / "b", "smoke", models_from=tmp_path, attack_slices=1, costs=False)
    assert again["stages_done"] == ["data", "models loaded", "attack resunetpp", "attack irim"]
    for name in ("resunetpp", "irim"):
        assert (
            again["attacks"]["whitebox"][name]["psnr"] == res["attacks"]["whitebox"][name]["psnr"]
        )


def test_runbook_cost_table_is_the_plan_of_the_committed_unit_costs():
    import re
    from pathlib import Path

    from mripkg.app.paper_gpu import plan_markdown
    from mripkg.paths import RESULTS_DIR, source_root

    doc = (source_root() / "docs" / "paper-profile.md").read_text()
    block = re.search(r"<!-- plan -->\n(.*?)\n<!-- /plan -->", doc, re.S)
    assert block is not None
    assert block.group(1) == plan_markdown(Path(RESULTS_DIR) / "paper" / "paper_gpu.json")


def test_stage_costs_scale_with_gpus_and_reject_zero():
    import json

    from mripkg.app.paper_gpu import stage_costs
    from mripkg.paths import RESULTS_DIR

    costs = json.loads((RESULTS_DIR / "paper" / "paper_gpu.json").read_text())["costs"]
    one, eight = stage_costs(costs, PAPER, 1), stage_costs(costs, PAPER, 8)
    assert [r["stage"] for r in one] == [r["stage"] for r in eight]
    ddpm = next(r for r in one if r["stage"] == "train ddpm")
    assert abs(ddpm["hours"] - 500000 * costs["ddpm"]["train_step_s"] / 3600) < 1e-9
    assert all(e["hours"] <= o["hours"] for o, e in zip(one, eight, strict=True))
    with pytest.raises(ValueError, match="gpus"):
        stage_costs(costs, PAPER, 0)
