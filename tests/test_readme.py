"""The README's promises: CI runs its test command, and its custom-space example runs as shown."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    extracted = subprocess.run(
        ["awk", "/<!-- ci: test command -->/{found=1; next} found && !/^```/{print; exit}", str(ROOT / "README.md")],
        capture_output=True, text=True, check=True).stdout.strip()
    assert extracted.startswith("python3 -m venv .venv") and "pytest" in extracted
    assert "<!-- ci: test command -->" in script


def test_custom_space_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    example = next(b for b in blocks if "register_space" in b)
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("18")
