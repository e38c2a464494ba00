"""Every example in every `mtlhar ... --help` runs as written, from the repository root.

The examples are read from the help texts and run in-process through `mtlhar.cli.main`, in one
workspace laid out like a fresh checkout (configs/ and the shipped sample clips linked in), each line
once, in order: an example lists the lines that make what it reads (a run, a study, a dataset) first.
Tiny budgets are appended to some lines (TINY: argparse and --set take the last value given), so
that examples written for minutes of training take seconds. `demo` and `study` have no budget
options: their budgets are shrunk by patching the study spec they build (`shrunk_studies`); the
command lines still run as written.
"""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

import pytest

from mtlhar.cli import COMMANDS, main
from mtlhar.cli.data import SUBCOMMANDS

# the tiny worlds have fewer test clips than classes: scikit-learn says so, which is expected here
pytestmark = pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")
REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = {"steps": 2, "batch_size": 4, "eval_every": 2, "checkpoint_every": 2}
TINY_SYNTH = {"clips": 40, "frames": 8, "size": 32}  # 92 clips: the generator's minimum (4 per class)
TINY_SET = [f"--set=train.{k}={v}" for k, v in TINY_TRAIN.items()]
TINY_SET += [f"--set=data.synth.{k}={v}" for k, v in TINY_SYNTH.items()] + ["--set=data.size=32"]
# appended to a line starting with the key (the longest key that matches)
TINY = {
    "mtlhar train": TINY_SET,
    "mtlhar transfer": [*TINY_SET, "--epochs", "2"],
    "mtlhar data synth": ["--clips", "40", "--frames", "8", "--size", "32"],
    "mtlhar data cache": ["--workers", "1", "--short-side", "0"],
    "mtlhar features": ["--size", "32", "--batch-size", "32"],
    "mtlhar study": ["--seeds", "1"],
}
PAGES = [*COMMANDS, *(f"data {name}" for name in SUBCOMMANDS), ""]  # the top-level help last
SLOW = {"study", "report", "demo", ""}  # a study or the demo: several runs each, and the HTML report


def help_text(page: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main([*page.split(), "--help"])
    assert exit.value.code == 0
    return out.getvalue()


def examples(text: str) -> list[str]:
    """The command lines under 'Example:' / 'Examples ...:' of a help text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Example"))
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("  mtlhar "):
            break
        found.append(line.strip())
    return found


class Workspace:
    """A folder laid out like the repository root where example lines run once each, in order."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, str] = {}

    def run(self, line: str) -> None:
        if line in self.done:
            return
        argv = shlex.split(line)
        assert argv[0] == "mtlhar"
        keys = [k for k in TINY if line.startswith(k + " ")]
        tiny = TINY[max(keys, key=len)] if keys else []
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = main(argv[1:] + tiny)
        assert rc == 0, f"`{line}` (with {tiny}) exited {rc}:\n{out.getvalue()[-3000:]}"
        self.done[line] = out.getvalue()


def shrunk_studies(mp: pytest.MonkeyPatch) -> None:
    """`mtlhar study` and `mtlhar demo` cannot be made cheap from their command lines (a study trains,
    tests and reports many runs; neither has a budget option): the study spec each builds is cut to one
    run (one seed, the first multi-task variant, or the reference one, and no single-task baselines),
    2 steps on the tiny world, the first test split; the report's figures are laid out but not
    rendered. Their own tests (test_cli's demo test, test_study_*, test_report) cover the rest."""
    import matplotlib.figure

    import mtlhar.demo
    import mtlhar.study
    from mtlhar.config import merge_dicts

    def shrink(spec):
        data = {"size": 32, "synth": TINY_SYNTH} if "synth" in spec.base.get("data", {}) else {"size": 32}
        spec.base = merge_dicts(spec.base, {"train": {**TINY_TRAIN, "affinity_every": 0}, "data": data})
        spec.variants = [v for i, v in enumerate(spec.variants) if i == 0 or v["name"] == spec.reference]
        spec.test_splits, spec.quick, spec.seeds, spec.stl = spec.test_splits[:1], {}, 1, False
        return spec

    load_study, demo_spec = mtlhar.study.load_study, mtlhar.demo.demo_spec
    mp.setattr(mtlhar.study, "load_study", lambda path: shrink(load_study(path)))
    mp.setattr(mtlhar.demo, "demo_spec", lambda quick: shrink(demo_spec(quick)))
    mp.setattr(mtlhar.demo, "SYNTH_QUICK", {**mtlhar.demo.SYNTH_QUICK, **TINY_SYNTH})
    mp.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: Path(path).touch())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    (root / "configs").symlink_to(REPO / "configs")
    (root / "src" / "mtlhar").mkdir(parents=True)
    (root / "src" / "mtlhar" / "samples").symlink_to(REPO / "src" / "mtlhar" / "samples")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTLHAR_CACHE", str(root / ".cache"))  # the synthetic worlds of this workspace only
        mp.chdir(root)
        shrunk_studies(mp)
        yield Workspace(root)


def test_every_help_page_has_an_example_of_itself():
    for page in PAGES:
        lines = examples(help_text(page))
        for command in [page] if page else COMMANDS:  # the top-level help: one of every command
            assert any(line.startswith(f"mtlhar {command} ") for line in lines), (page, command, lines)


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW else []) for p in PAGES], ids=repr
)
def test_help_examples_run_as_written(page, workspace):
    for line in examples(help_text(page)):
        workspace.run(line)
    if page == "predict":
        assert "src/mtlhar/samples/clips/jump/jump.mp4" in workspace.done[examples(help_text(page))[-1]]
    if page == "data convert":  # the converted sample folder: every file found
        import json

        from mtlhar.data.inspect import inspect_source

        report = json.loads(json.dumps(inspect_source("data/samples/manifest.csv"), default=str))
        assert report["rows"] == 3 and not report["issues"], report["issues"]


def test_train_and_study_help_list_every_config():
    from mtlhar.config import SHIPPED_CONFIGS

    listed = help_text("train") + help_text("study")
    for path in sorted(SHIPPED_CONFIGS.glob("*.yaml")):
        assert f"configs/{path.name} " in listed, path.name
    for page in PAGES:  # and every config an example names exists
        for line in examples(help_text(page)):
            for word in shlex.split(line):
                if word.startswith("configs/"):
                    assert (REPO / word).is_file(), (page, word)


def test_convert_help_lists_every_format_its_options_and_root():
    from mtlhar.data.formats import FORMATS, reader_options

    text = help_text("data convert")
    assert "ROOT" in text and "the dataset's top folder" in text
    section = text[text.index("formats (FORMAT") :]
    names = list(FORMATS)
    for i, (name, (_, description)) in enumerate(FORMATS.items()):
        start = section.index(f"\n  {name} ")
        end = section.index(f"\n  {names[i + 1]} ") if i + 1 < len(names) else len(section)
        block = section[start:end]
        assert description in block, name
        for option in reader_options(name):
            line = next(ln for ln in block.splitlines() if ln.strip().startswith(f"{option}="))
            assert len(line.split(None, 1)) == 2, (name, option)  # a line of doc beside the option


def test_sample_clip_is_small_and_short():
    from mtlhar.data.video import read_video

    clip = REPO / "src" / "mtlhar" / "samples" / "clips" / "jump" / "jump.mp4"
    frames = read_video(clip)
    assert frames.shape[1:] == (64, 64, 3) and 8 <= len(frames) <= 16
    assert clip.stat().st_size < 16_000
