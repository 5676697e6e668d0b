"""Run each seed tutorial script under fusegrad and under real PyTorch; outputs must match.

Every script in examples/seeds/ starts with `import fusegrad as torch`. The reference run
is the same script with that first line replaced by `import torch`, so any difference in
stdout (values, grad_fn names, requires_grad flags, error types and messages) is a
difference between fusegrad and PyTorch.
"""

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = sorted((REPO / "examples" / "seeds").glob("*.py"))
FUSEGRAD_IMPORT = "import fusegrad as torch"
TORCH_IMPORT = "import torch"
TIMEOUT = 300  # seconds per run; generous because fusegrad's eager mode may be slower

# `<AddBackward0 object at 0x7f..>` differs between runs; a class defined in a module
# prints with its module path (`<fusegrad.autograd.AddBackward0 object at ..>`,
# `<torch.autograd.function.ExpBackward object at ..>`): keep the bare class name only.
_QUALIFIED_OBJECT = re.compile(r"<(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*) object at ")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def normalise(text):
    text = _QUALIFIED_OBJECT.sub(r"<\1 object at ", text)
    return _ADDRESS.sub("0x?", text)


def run(script, cwd):
    env = dict(os.environ)
    # Import fusegrad from this checkout even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,  # return codes are compared, not required to be 0
        text=True,
        timeout=TIMEOUT,
    )


def test_normalise():
    assert normalise("<fusegrad.autograd.nodes.AddBackward0 object at 0x7f3a>") == (
        "<AddBackward0 object at 0x?>"
    )
    assert normalise("((<AccumulateGrad object at 0xDEAD0>, 0), (None, 0))") == (
        "((<AccumulateGrad object at 0x?>, 0), (None, 0))"
    )
    # Only object reprs lose their module path; tensor reprs and dtypes stay as they are.
    text = "tensor([1.], grad_fn=<ExpBackward>) torch.float64 torch.Size([2])"
    assert normalise(text) == text


def test_seed_scripts_exist():
    # One script per tutorial in /work/shared/seeds (000..004).
    assert [p.name[:2] for p in SEEDS] == ["00", "01", "02", "03", "04"], SEEDS


@pytest.mark.parametrize("script", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed_matches_torch(script, tmp_path):
    source = script.read_text(encoding="utf-8")
    first, sep, rest = source.partition("\n")
    # Without this line the "reference" would run fusegrad too and compare it to itself.
    assert first == FUSEGRAD_IMPORT, f"{script.name} must start with {FUSEGRAD_IMPORT!r}"
    reference = tmp_path / script.name
    reference.write_text(TORCH_IMPORT + sep + rest, encoding="utf-8")

    ref = run(reference, tmp_path)
    assert ref.returncode == 0, f"the torch reference run failed:\n{ref.stderr}"
    got = run(script, REPO)

    # Collect every mismatch so one failure shows the traceback and the diff together.
    problems = []
    if "Traceback" in got.stderr:
        problems.append(f"fusegrad run raised:\n{got.stderr}")
    if got.returncode != ref.returncode:
        problems.append(f"exit code {got.returncode}, torch exited with {ref.returncode}")
    want_out, got_out = normalise(ref.stdout), normalise(got.stdout)
    if got_out != want_out:
        diff = difflib.unified_diff(
            want_out.splitlines(keepends=True),
            got_out.splitlines(keepends=True),
            fromfile=f"torch/{script.name}",
            tofile=f"fusegrad/{script.name}",
        )
        problems.append("stdout differs from PyTorch's:\n" + "".join(diff))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
