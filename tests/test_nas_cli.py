"""The `nas` command line as a user runs it: listing, sampling, decoding, validating; bad input exits 2 in one line."""

import json
import subprocess
import sys

import pytest

from nas.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("spaces", "sample", "arch", "validate"):
        assert command in out.stdout


def test_spaces_lists_names_and_cardinality(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "nb201: 6 decisions, 6,466 distinct architectures" in out
    assert "ofa_mbv3: 46 decisions" in out and "encdec" in out


def test_sample_is_seeded_and_parses_back(capsys):
    from search_spaces import get_space

    assert main(["sample", "ofa_mbv3", "-n", "3", "--seed", "5"]) == 0
    first = capsys.readouterr().out.split()
    assert main(["sample", "ofa_mbv3", "-n", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out.split() == first
    assert len(get_space("ofa_mbv3").parse(first)) == 3
    assert main(["sample", "nb201", "-n", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["space"]["name"] == "nb201"


def test_arch_decodes_canonical_form(capsys):
    cell = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"
    assert main(["arch", "nb201", cell, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["canonical"].startswith("|none~0|") and "edge_1_0" in info["inactive"]


@pytest.mark.parametrize("args, fragment", [
    (["sample", "resnet"], "unknown search space 'resnet'"),
    (["arch", "nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "'conv' in"),
    (["arch", "ofa_mbv3", "R224-D444"], "malformed"),
    (["arch", "nb201", "0,1,9,0,0,0", "--indices"], "index 9"),
])
def test_bad_input_exits_2_with_one_line(args, fragment):
    out = run_cli(*args)
    assert out.returncode == 2
    assert fragment in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_validate_reports_broken_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\n  space: [\n")
    out = run_cli("validate", str(path))
    assert out.returncode == 2 and str(path) in out.stderr and "line 2" in out.stderr


def test_progress_refreshes_become_lines_off_a_terminal():
    import io

    from nas.progress import LineStream

    sink = io.StringIO()
    stream = LineStream(sink)
    for text in ("\r  0%|  | 0/4 [00:00<?, ?step/s]", "\r 50%|# | 2/4 [00:01<00:01, 2.0step/s]", "\n",
                 "\x1b[A\r100%|##| 4/4 [00:02<00:00, 2.0step/s]", "\n", "[nas run] search ...\n"):
        stream.write(text)
    assert sink.getvalue().splitlines() == ["  0%|  | 0/4 [00:00<?, ?step/s]", " 50%|# | 2/4 [00:01<00:01, 2.0step/s]",
                                            "100%|##| 4/4 [00:02<00:00, 2.0step/s]", "[nas run] search ..."]
