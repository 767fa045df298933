"""lcvg-train (both stages) and lcvg-eval on the command line, in-process, on tiny sprites."""

import json

import pytest

from lcvg_env.models import ModelConfig
from training import cli


def model_flags(config: ModelConfig) -> list[str]:
    """``--model.<field> value`` for every field of ``config`` (tuples comma-separated)."""
    flags = []
    for name, value in config.to_dict().items():
        flags += [f"--model.{name.replace('_', '-')}",
                  ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return flags


TINY = [*model_flags(ModelConfig.tiny()), "--device", "cpu",
        "--batch-size", "4", "--progress", "false", "--fit-iterations", "2",
        "--disc-ndf", "8", "--log-every", "1"]


def test_the_flags_give_the_tiny_model(tmp_path, capsys):
    assert cli.train_main(["--print-config", "--out", str(tmp_path), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert ModelConfig.from_dict(printed["model"]) == ModelConfig.tiny()


def test_train_both_stages_then_evaluate(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.train_main(["--preset", "small", "--data", str(tiny_data), "--out", str(run),
                           "--steps", "2", "--disc-weight", "0.1", "--disc-start", "1",
                           "--eval-clips", "2", "--eval-horizon", "3", *TINY])
    assert code == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = rows[-1]
    assert "final/eval/mask_iou" in final and "final/eval/translation_rmse" in final
    assert (run / "eval" / "eval.json").is_file()
    out = tmp_path / "eval"
    assert cli.eval_main(["--checkpoint", str(run / "model.safetensors"), "--data",
                          str(tiny_data), "--out", str(out), "--eval-clips", "2",
                          "--eval-horizon", "3", "--device", "cpu", "--fit-iterations", "2"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["protocols"]) == {"translation", "affine", "nonparametric"}
    assert result["subpixel_carry"] is True
    out = capsys.readouterr().out
    printed = json.loads(out[out.rindex("{\n"):out.rindex("lcvg-eval: wrote")])
    # the printed summary and the run's final log carry the same headline numbers
    assert set(printed) == {k.removeprefix("final/eval/") for k in final if
                            k.startswith("final/eval/")}
    assert printed["affine_median"] == result["protocols"]["affine"]["median"]
    assert printed["nonparametric_isolated_rmse"] == (
        result["protocols"]["nonparametric"]["isolated"]["rmse"])
    # --whole-pixel changes how masks are warped, so the non-parametric rollouts are unchanged
    whole = tmp_path / "whole"
    assert cli.eval_main(["--checkpoint", str(run / "model.safetensors"), "--data",
                          str(tiny_data), "--out", str(whole), "--eval-clips", "2",
                          "--eval-horizon", "3", "--device", "cpu", "--fit-iterations", "2",
                          "--whole-pixel"]) == 0
    plain = json.loads((whole / "eval.json").read_text())
    assert plain["subpixel_carry"] is False
    assert plain["protocols"]["nonparametric"]["psnr_per_step"] == (
        result["protocols"]["nonparametric"]["psnr_per_step"])
    # --tracking carry is recorded; whole-pixel rounding does not apply to carried masks
    carried = tmp_path / "carried"
    args = ["--checkpoint", str(run / "model.safetensors"), "--data", str(tiny_data), "--out",
            str(carried), "--eval-clips", "2", "--eval-horizon", "3", "--device", "cpu",
            "--fit-iterations", "2", "--tracking", "carry"]
    assert cli.eval_main(args) == 0
    assert json.loads((carried / "eval.json").read_text())["tracking"] == "carry"
    assert cli.eval_main(args + ["--whole-pixel"]) == 2
    assert "tracking='carry'" in capsys.readouterr().err


@pytest.mark.parametrize("ablation", ["no_bg", "single_stage"])
def test_ablation_flag_runs(tiny_data, tmp_path, ablation):
    run = tmp_path / ablation
    assert cli.train_main(["--data", str(tiny_data), "--out", str(run), "--steps", "1",
                           "--ablate", ablation, "--eval-clips", "0", *TINY]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    prefix = "single" if ablation == "single_stage" else "stage1"
    assert any(f"{prefix}/train/rec_loss" in r for r in rows)
    if ablation == "single_stage":
        assert any("single/train/bg2_loss" in r for r in rows)


def test_stage2_alone_from_a_stage1_checkpoint(tiny_data, tmp_path):
    first = tmp_path / "first"
    assert cli.train_main(["--data", str(tiny_data), "--out", str(first), "--stage", "1",
                           "--steps", "1", "--eval-clips", "0", *TINY]) == 0
    init = first / "checkpoints" / "stage1.safetensors"
    assert cli.train_main(["--data", str(tiny_data), "--out", str(tmp_path / "second"),
                           "--stage", "2", "--steps", "1", "--init", str(init),
                           "--eval-clips", "0", *TINY]) == 0


def test_resume_from_the_command_line(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert cli.train_main(["--data", str(tiny_data), "--out", str(run), "--steps", "1",
                           "--eval-clips", "0", *TINY]) == 0
    # a finished run resumes to a no-op
    assert cli.train_main(["--resume", str(run)]) == 0
