"""The README's default job and the small shared CLI behaviours."""
import json

from parity.commands.cli import main


def test_demo_reports_logit_parity_as_json(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--arch", "small", "--logits-only", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (small,) = result["results"]
    assert result["pass"] is True and small["arch"] == "small"
    # The official code's logits for these weights reach 2.318. Paddle is judged against the float64
    # recomputation; the bar is torch float32's own error there, which is float32 rounding noise.
    assert 2.3 < small["ref_max_abs"] < 2.4
    assert small["error_f64"] <= small["bound"] and small["margin"] <= 1
    assert 0 < small["torch_error_f64"] < 2.4 * 2.0 ** -23 * 64  # a few dozen ulp of the logits' scale
    assert small["top1_agreement"] == 1.0
    assert "PASS" in capsys.readouterr().out


def test_mapping_command_prints_json_rows(capsys):
    assert main(["mapping", "gernet_s", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    fc = [r for r in rows if r["official"] == "fc_linear.weight"][0]
    assert fc == {"official": "fc_linear.weight", "paddle": "fc_linear.weight", "timm": "head.fc.weight",
                  "torch_shape": [1000, 1920], "paddle_shape": [1920, 1000], "dtype": "float32",
                  "action": "transpose", "reason": "torch Linear stores [out, in], Paddle Linear [in, out]"}


def test_unknown_arch_is_bad_input(capsys):
    assert main(["mapping", "huge"]) == 2
    assert "Error: unknown GENet arch 'huge'" in capsys.readouterr().err
