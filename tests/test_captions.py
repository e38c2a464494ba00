"""Caption task kind: tokenizer, padding masks, decoders (greedy/beam memorisation), metrics, end to end."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from mtlhar.captions import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    LSTMDecoder,
    Tokenizer,
    TransformerDecoder,
    beam_decode,
    bleu,
    caption_scores,
    cider_d,
    greedy_decode,
    rouge_l,
    words,
)
from mtlhar.config import TaskConfig
from mtlhar.errors import ConfigError
from mtlhar.objectives import masked_token_cross_entropy
from mtlhar.tasks import KINDS, build_task


def test_tokenizer_round_trip_unk_and_fixed_length():
    caps = ["Pushing [something] away", "pushing a blue box away", "lifting a ball overhead"]
    tok = Tokenizer.build(caps, min_count=1, max_len=6)
    for c in caps:
        ids = tok.encode(c)
        assert len(ids) == tok.length == 8 and ids[0] == BOS_ID
        assert ids[len(words(c)) + 1] == EOS_ID and all(i == PAD_ID for i in ids[len(words(c)) + 2 :])
        assert tok.decode(ids) == " ".join(words(c))
    assert tok.decode(tok.encode("pushing a purple cup")) == "pushing a <unk> <unk>"
    long = tok.encode("a a a a a a a a a a")  # cut to max_len words, still ends with <eos>
    assert len(long) == 8 and long[-1] == EOS_ID and tok.decode(long) == "a a a a a a"
    rare = Tokenizer.build(caps, min_count=2, max_len=6)  # words seen once become <unk>
    assert set(rare.vocab[4:]) == {"a", "away", "pushing"}
    assert rare.encode("blue")[1] == UNK_ID
    assert Tokenizer.from_state_dict(tok.state_dict()).encode(caps[1]) == tok.encode(caps[1])
    with pytest.raises(ConfigError):
        Tokenizer(["x", "y", "z", "w"], 4)


def test_token_cross_entropy_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    target = torch.tensor([[4, 5, EOS_ID, PAD_ID, PAD_ID], [6, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    mask = target != PAD_ID
    total, count = masked_token_cross_entropy(logits, target, mask)
    assert float(count) == 5
    manual = sum(
        -logits[b, t].log_softmax(-1)[target[b, t]] for b in range(2) for t in range(5) if mask[b, t]
    )
    assert float(total.detach()) == pytest.approx(float(manual.detach()), rel=1e-5)
    changed = logits.detach().clone()
    changed[~mask] = torch.randn_like(changed[~mask]) * 1e3  # anything at padded positions: no effect
    assert float(masked_token_cross_entropy(changed, target, mask)[0]) == pytest.approx(
        float(total.detach()), rel=1e-6
    )
    total.backward()
    assert torch.all(logits.grad[~mask] == 0)
    none_total, none_count = masked_token_cross_entropy(logits, target, torch.zeros_like(mask))
    assert float(none_total.detach()) == 0 and float(none_count) == 0 and none_total.requires_grad


def test_metrics_on_hand_made_captions():
    ref = [[["a", "person", "pushes", "a", "box"], ["pushing", "a", "box", "away"]]]
    perfect = caption_scores([["a", "person", "pushes", "a", "box"]], ref)
    assert perfect["bleu1"] == perfect["bleu4"] == pytest.approx(1.0)
    assert perfect["rouge_l"] == pytest.approx(1.0) and perfect["exact_match"] == 1.0
    # the second reference counts too: exact match and perfect precision against it
    other = caption_scores([["pushing", "a", "box", "away"]], ref)
    assert other["exact_match"] == 1.0 and other["bleu1"] == pytest.approx(1.0)
    # BLEU-1: 3 of 4 unigrams match; brevity: closest reference length 4 (= hypothesis): BP 1
    b = bleu([["pushing", "a", "cup", "away"]], ref)
    assert b["bleu1"] == pytest.approx(0.75)
    assert b["bleu2"] == pytest.approx(math.sqrt(0.75 * 1 / 3))
    assert b["bleu4"] == 0.0  # no matching 4-gram, no smoothing
    short = bleu([["a", "box"]], [[["a", "person", "pushes", "a", "box"]]])
    assert short["bleu1"] == pytest.approx(math.exp(1 - 5 / 2))  # precision 1, brevity penalty
    assert rouge_l([["a", "box"]], [[["a", "person", "pushes", "a", "box"]]]) == pytest.approx(
        (1 + 1.44) * 1 * 0.4 / (0.4 + 1.44 * 1)
    )
    refs = [[["a", "red", "box"]], [["a", "blue", "ball"]], [["a", "green", "cup"]]]
    assert cider_d([["a", "red", "box"], ["a", "blue", "ball"], ["a", "green", "cup"]], refs) > cider_d(
        [["a", "blue", "ball"], ["a", "red", "box"], ["a", "green", "cup"]], refs
    )


@pytest.fixture
def one_thread():
    """Tiny recurrent nets run far faster on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_decoder_memorises_captions_greedy_and_beam(decoder, one_thread):
    torch.manual_seed(0)
    caps = ["a red square moves right", "a blue square moves left", "the green box stays"]
    tok = Tokenizer.build(caps, max_len=6)
    ids = torch.tensor([tok.encode(c) for c in caps])
    feat = torch.eye(3, 8) * 3
    if decoder == "lstm":
        net = LSTMDecoder(8, len(tok.vocab), embed=8, hidden=24, layers=2)
    else:
        net = TransformerDecoder(
            8, len(tok.vocab), embed=16, hidden=32, layers=1, heads=2, max_len=tok.length
        )
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(60):
        logits = net.teacher_force(feat, None, ids[:, :-1])
        total, count = masked_token_cross_entropy(logits, ids[:, 1:], ids[:, 1:] != PAD_ID)
        opt.zero_grad()
        (total / count).backward()
        opt.step()
    net.eval()
    greedy = greedy_decode(net, feat, None, tok.length)
    assert [tok.decode(r.tolist()) for r in greedy] == caps
    beam = beam_decode(net, feat, None, tok.length, beam=3)
    assert [tok.decode(r.tolist()) for r in beam] == caps


def test_caption_task_config_is_validated():
    kind = KINDS["caption"]
    cfg = TaskConfig(name="cap", kind="caption", args={"decoder": "gru"})
    with pytest.raises(ConfigError, match="decoder"):
        build_task(cfg, ["<pad>", "<bos>", "<eos>", "<unk>", "a"])
    with pytest.raises(ConfigError, match="not options of a caption task"):
        build_task(TaskConfig(name="cap", kind="caption", args={"beams": 2}), ["<pad>"])
    t = build_task(
        TaskConfig(name="cap", kind="caption", args={"max_len": 4}),
        ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b"],
    )
    target, mask = kind.encode(t, "a b | b a a", "row 1")
    assert target.shape == (4, 6) and mask[:2].all(1).tolist() == [False, False] and mask[2:].sum() == 0
    assert t.main_metric == "cider_d"


def _caption_manifest(squares, tmp_path):
    rows = list(csv.DictReader(open(squares)))
    for i, r in enumerate(rows):
        d = ("right", "left")[i % 2]
        r["path"] = str(squares.parent / r["path"])
        r["caption"] = f"a {r['colour']} square moves {d}"
        r["caption_alt"] = f"the {r['colour']} box goes {d} | square moving to the {d}"
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_caption_and_classification_train_evaluate_predict(squares, tmp_path, capsys, one_thread):
    from conftest import square_config
    from mtlhar.cli import main
    from mtlhar.config import load_config
    from mtlhar.evaluate import evaluate_run
    from mtlhar.train import train

    manifest = _caption_manifest(squares, tmp_path)
    cfg = square_config(manifest, steps=6, eval_every=6, checkpoint_every=6)
    cfg["tasks"] = [
        {"name": "direction", "weight": 0.1},
        {"name": "caption", "kind": "caption", "weight": 0.9,
         "args": {"refs_column": "caption_alt", "embed": 8, "hidden": 16, "max_len": 8}},
    ]  # fmt: skip
    cfg["balancer"] = {"name": "static"}
    run = tmp_path / "run"
    train(load_config(base=cfg), run, log=None)
    rec = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert '"caption": 0.9' in rec[0] and '"direction": 0.1' in rec[0]  # lambda * cls + (1 - lambda) * cap
    res = evaluate_run(run, split="test")
    m = res["metrics"]["caption"]
    assert {"bleu1", "bleu4", "rouge_l", "cider_d", "exact_match", "token_acc"} <= set(m)
    assert all(0.0 <= v for v in m.values())
    assert main(["predict", str(run), str(squares.parent / "videos" / "000.mp4")]) == 0
    out = capsys.readouterr().out
    assert "caption: " in out and "<bos>" not in out


def test_two_channel_encoder_of_the_paper_has_taps_and_trains(one_thread):
    from mtlhar.models import MultiTaskModel, build_encoder

    enc = build_encoder("two_channel", width=4, depth=2, lstm=8, fc=16, dropout=0.5)
    assert set(enc.taps) == {"channel2d", "channel3d", "frames", "pooled"}
    assert enc.channel2d[0][0].kernel_size == (1, 3, 3) and enc.channel3d[0][0].kernel_size == (3, 3, 3)
    assert enc.lstm.bidirectional
    tasks = [build_task(TaskConfig(name="a", tap="frames"), ["x", "y"])]
    model = MultiTaskModel(enc, tasks)
    x = torch.randint(0, 255, (2, 3, 6, 32, 32), dtype=torch.uint8)
    out = model({"rgb": x})
    assert out.taps["frames"].shape == (2, 6, 16) and out.taps["pooled"].shape == (2, 16)
    assert out.heads["a"].output.shape == (2, 2)
    out.heads["a"].output.sum().backward()
    assert enc.channel2d[0][0].weight.grad.abs().sum() > 0 and enc.channel3d[0][0].weight.grad.abs().sum() > 0
