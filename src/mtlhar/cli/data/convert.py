"""`mtlhar data convert`: read a dataset in its native layout and write an mtlhar manifest.

Its help lists every format of `mtlhar.data.formats.FORMATS` with its description and its reader's
options (from the reader's signature and docstring), built only when the help is shown.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap

from ..common import SAMPLE_CLIPS, add_command, parse_options

NAME = "convert"
HELP = "read a dataset in its native layout and write an mtlhar manifest"
EXAMPLES = [
    f"mtlhar data convert folder {SAMPLE_CLIPS} --out data/samples",
    "mtlhar data inspect data/samples/manifest.csv",
]
ROOT_HELP = (
    "the dataset's top folder as downloaded and unpacked, laid out as FORMAT expects (the layouts are "
    "below; e.g. the folder holding UCF-101/ and ucfTrainTestlist/ for ucf101); the manifest's paths "
    "point into it"
)
# a docstring phrase "name: ..." or "name / other: ..." that documents reader options
OPTION_DOC = re.compile(r"(?:^|(?<=[\s.;]))((?:\w+ / )*\w+): ")
WIDTH = 100


def add_parser(subparsers):
    p = add_command(subparsers, NAME, HELP, EXAMPLES, notes=formats_help)
    p.add_argument("format", metavar="FORMAT", help="a dataset format (listed below)")
    p.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    p.add_argument(
        "--out",
        required=True,
        help="output folder: manifest.csv, classes.json, conversion.json (what was left out, and why), "
        "and the arrays of the formats that write them",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option of FORMAT (listed below), the value read as YAML: split=2, missing=report, "
        "sensors=[acc] (repeatable); an option FORMAT does not take is refused",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="carve a 'val' split of about F of the train rows (whole groups only, stratified by the "
        "first task where the groups allow; recorded in conversion.json), for formats with train/test only",
    )
    p.add_argument("--val-seed", type=int, default=0, help="seed of --val-fraction's draw (default 0)")
    return p


def run(args) -> int:
    from ...data.formats import check_options, convert

    options = parse_options(args.option)
    check_options(args.format, options)  # before anything is read or written
    path = convert(
        args.format, args.root, args.out, val_fraction=args.val_fraction, val_seed=args.val_seed, **options
    )
    print(f"wrote {path}")
    return 0


def formats_help() -> str:
    """Every format, what its ROOT holds, and its reader's options with a line of doc each."""
    from ...data.formats import FORMATS, reader_options

    lines = ["formats (FORMAT: what ROOT holds), each with its options (--option KEY=VALUE, default):"]
    for name, (reader, description) in FORMATS.items():
        ignored = "`root` is ignored" in (inspect.getdoc(reader) or "")
        lines.append(f"  {name:<14} {description}" + (" (ROOT is ignored)" if ignored else ""))
        docs = option_docs(reader)
        for option in reader_options(name):
            head = f"      {option}={default_text(reader, option)}"
            doc = docs.get(option) or annotation_text(reader, option)
            if option == "out_dir":  # convert passes its --out
                doc = (
                    docs.get(option) or "the folder the reader writes its arrays into"
                ) + " (default: --out)"
            lines.extend(wrap(head, doc))
    return "\n".join(lines) + "\n"


def option_docs(reader) -> dict[str, str]:
    """{option: first sentence of the docstring phrase 'option: ...'} (or of a sentence naming `option`)."""
    params = set(inspect.signature(reader).parameters)
    doc = " ".join((inspect.getdoc(reader) or "").split())
    marks = [m for m in OPTION_DOC.finditer(doc) if set(m.group(1).split(" / ")) & params]
    out: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(doc)
        text = first_sentence(doc[m.end() : end])
        for name in m.group(1).split(" / "):
            out.setdefault(name, text)
    for sentence in sentences(doc):
        for name in sorted(params - set(out)):
            if f"`{name}`" in sentence:
                out[name] = sentence
    # the module docstring: only a sentence about the option itself ("segments=True: one row per ...")
    module = sys.modules.get(reader.__module__)
    for sentence in sentences(prose(getattr(module, "__doc__", None) or "")):
        for name in sorted(params - set(out)):
            if re.match(rf"`?{name}(`|=)", sentence):
                out[name] = sentence
    return out


def prose(doc: str) -> str:
    """A module docstring without its layout blocks (a paragraph ending in '::' and the indented lines)."""
    keep = [p for p in doc.split("\n\n") if not p.startswith(" ") and not p.rstrip().endswith("::")]
    return " ".join(" ".join(keep).split())


def sentences(text: str) -> list[str]:
    """Sentences, each also cut before an option phrase ('missing: ...') that follows in it."""
    out = []
    for sentence in re.split(r"(?<=\.)\s+(?=[A-Z`\"(]|\w+[=:])", text):
        mark = OPTION_DOC.search(sentence, 1)
        out.append(sentence[: mark.start()].rstrip() if mark else sentence)
    return [s for s in out if s]


def first_sentence(text: str) -> str:
    parts = re.split(r"(?<=\.)\s+(?=[A-Z`\"(])", text.strip(), maxsplit=1)
    return parts[0].rstrip()


def default_text(reader, option: str) -> str:
    default = inspect.signature(reader).parameters[option].default
    if option == "out_dir":
        return "OUT"
    text = repr(default) if not isinstance(default, str) else default or "''"
    return text if len(text) <= 28 else text[:25] + "..."


def annotation_text(reader, option: str) -> str:
    annotation = inspect.signature(reader).parameters[option].annotation
    return "" if annotation is inspect.Parameter.empty else f"({annotation})"


def wrap(head: str, doc: str) -> list[str]:
    if not doc:
        return [head]
    if len(head) < 34:
        return textwrap.wrap(
            f"{head:<34}{doc}", WIDTH, subsequent_indent=" " * 34, break_on_hyphens=False
        ) or [head]
    return [head] + textwrap.wrap(doc, WIDTH, initial_indent=" " * 34, subsequent_indent=" " * 34)
