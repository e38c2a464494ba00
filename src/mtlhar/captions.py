"""Task kind "caption": a tokenizer, caption decoders and caption metrics (METHODS.md section 2).

- `Tokenizer`: built from the training captions (lower-cased, letters and digits only), words seen fewer
  than `min_count` times become `<unk>`, fixed length `max_len + 2`: `<bos> w1 .. wn <eos> <pad> ...`
  (longer captions are cut to `max_len` words). The vocabulary is the task's `classes`, so it is saved with
  the run (tasks.json, checkpoints) like any label space.
- Decoders read the pooled video feature f: `LSTMDecoder` as in the paper (initial state from f, per-step
  input `[embedding(previous word); f]`, teacher forcing in training, greedy or beam decoding at eval) and a
  small `TransformerDecoder` (causal self-attention, cross-attention to the per-time-step features when the
  head reads a sequence/map tap, else to f as one token).
- Loss: token-averaged cross-entropy over the first reference, padding masked out.
- Metrics against *all* references of a clip (the task column, `|`-separated, plus `args.refs_column`):
  BLEU-1..4 (corpus BLEU of Papineni et al. 2002 as in the COCO caption toolkit: clipped n-gram precision,
  brevity penalty against the closest reference length, no smoothing), ROUGE-L (LCS F-measure, beta 1.2,
  best reference, mean over clips), CIDEr-D (Vedantam et al. 2015: tf-idf n-grams 1..4 with document
  frequencies over the evaluated references, clipped, Gaussian length penalty sigma 6, x10), exact match
  (the decoded caption equals one reference) and token accuracy (position-wise agreement of the greedy
  caption with the first reference, up to its end token). All are implemented here in plain Python/numpy,
  so nothing needs a network or Java; scores are on tokenised captions (words outside the vocabulary
  count as `<unk>` in both the hypotheses and the references).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError, DataError
from .objectives import HeadOutput, masked_token_cross_entropy

if TYPE_CHECKING:  # tasks.py lists CaptionKind in its KINDS table, so this module must not import it
    from .tasks import Task

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def words(text: str) -> list[str]:
    """Normalise a caption: lower case, letters and digits only ("[something]" -> "something")."""
    return re.findall(r"[a-z0-9]+", text.lower())


class Tokenizer:
    """Words <-> fixed-length id sequences. `vocab` starts with the four special tokens."""

    def __init__(self, vocab: Sequence[str], max_len: int):
        if tuple(vocab[:4]) != SPECIALS:
            raise ConfigError(f"caption vocabulary must start with {SPECIALS}, got {tuple(vocab[:4])}")
        self.vocab = list(vocab)
        self.max_len = int(max_len)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @property
    def length(self) -> int:
        """Sequence length: max_len words plus <bos> and <eos>."""
        return self.max_len + 2

    @classmethod
    def build(cls, captions: Iterable[str], *, min_count: int = 1, max_len: int = 16) -> Tokenizer:
        """Vocabulary of the words seen at least `min_count` times (sorted, after the special tokens)."""
        counts = Counter(w for c in captions for w in words(c))
        kept = sorted(w for w, n in counts.items() if n >= min_count)
        return cls([*SPECIALS, *kept], max_len)

    def encode(self, text: str) -> list[int]:
        ids = [self.index.get(w, UNK_ID) for w in words(text)][: self.max_len]
        ids = [BOS_ID, *ids, EOS_ID]
        return ids + [PAD_ID] * (self.length - len(ids))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words, from after <bos> up to (excluding) the first <eos>; padding skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.vocab[i] if 0 <= i < len(self.vocab) else UNK)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.tokens(ids))

    def state_dict(self) -> dict:
        return {"vocab": self.vocab, "max_len": self.max_len}

    @classmethod
    def from_state_dict(cls, state: dict) -> Tokenizer:
        return cls(state["vocab"], state["max_len"])


def tokenizer_for(task: Task) -> Tokenizer:
    tok = getattr(task, "_tokenizer", None)
    if tok is None:
        tok = Tokenizer(task.classes, task.args["max_len"])
        object.__setattr__(task, "_tokenizer", tok)
    return tok


# --------------------------------------------------------------------------------------------------
# Decoders. Both expose `teacher_force(feat, memory, inputs) -> logits` and `start(feat, memory) -> state`,
# `step(tokens, state) -> (logits, state)`, `reorder(state, index)`, so greedy and beam search are shared.


class LSTMDecoder(nn.Module):
    """The paper's decoder: L-layer LSTM, initial (h, c) from the video feature f, input [emb(word); f]."""

    def __init__(self, feat_dim: int, vocab: int, *, embed: int = 64, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD_ID)
        self.init_h = nn.Linear(feat_dim, layers * hidden)
        self.init_c = nn.Linear(feat_dim, layers * hidden)
        self.lstm = nn.LSTM(embed + feat_dim, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)  # fmt: skip
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab)

    def _init(self, feat: Tensor):
        b = feat.shape[0]
        h = torch.tanh(self.init_h(feat)).view(b, self.layers, self.hidden).transpose(0, 1).contiguous()
        c = torch.tanh(self.init_c(feat)).view(b, self.layers, self.hidden).transpose(0, 1).contiguous()
        return h, c

    def teacher_force(self, feat: Tensor, memory: Tensor | None, inputs: Tensor) -> Tensor:
        x = torch.cat([self.embed(inputs), feat.unsqueeze(1).expand(-1, inputs.shape[1], -1)], dim=-1)
        y, _ = self.lstm(x, self._init(feat))
        return self.out(self.drop(y))

    def start(self, feat: Tensor, memory: Tensor | None):
        return (feat, *self._init(feat))

    def step(self, tokens: Tensor, state):
        feat, h, c = state
        x = torch.cat([self.embed(tokens), feat], dim=-1).unsqueeze(1)
        y, (h, c) = self.lstm(x, (h, c))
        return self.out(y[:, 0]), (feat, h, c)

    @staticmethod
    def reorder(state, index: Tensor):
        feat, h, c = state
        return feat[index], h[:, index], c[:, index]


class TransformerDecoder(nn.Module):
    """A small causal transformer decoder cross-attending to the video (per-time-step features or f)."""

    def __init__(self, feat_dim: int, vocab: int, *, embed: int = 64, hidden: int = 128, layers: int = 2,
                 heads: int = 4, dropout: float = 0.0, max_len: int = 64):  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD_ID)
        self.pos = nn.Parameter(torch.zeros(max_len, embed))
        nn.init.normal_(self.pos, std=0.02)
        self.mem = nn.Linear(feat_dim, embed)
        layer = nn.TransformerDecoderLayer(embed, heads, hidden, dropout=dropout, batch_first=True)
        self.dec = nn.TransformerDecoder(layer, layers)
        self.out = nn.Linear(embed, vocab)

    def _memory(self, feat: Tensor, memory: Tensor | None) -> Tensor:
        return self.mem(memory if memory is not None else feat.unsqueeze(1))

    def _run(self, mem: Tensor, inputs: Tensor) -> Tensor:
        n = inputs.shape[1]
        x = self.embed(inputs) + self.pos[:n]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=x.device), diagonal=1)
        return self.out(self.dec(x, mem, tgt_mask=causal))

    def teacher_force(self, feat, memory, inputs):
        return self._run(self._memory(feat, memory), inputs)

    def start(self, feat, memory):
        return self._memory(feat, memory), feat.new_zeros(feat.shape[0], 0, dtype=torch.long)

    def step(self, tokens, state):
        mem, prefix = state
        prefix = torch.cat([prefix, tokens.unsqueeze(1)], dim=1)
        return self._run(mem, prefix)[:, -1], (mem, prefix)

    @staticmethod
    def reorder(state, index):
        mem, prefix = state
        return mem[index], prefix[index]


DECODERS = {"lstm": LSTMDecoder, "transformer": TransformerDecoder}


@torch.no_grad()
def greedy_decode(decoder: nn.Module, feat: Tensor, memory: Tensor | None, length: int) -> Tensor:
    """[B, length] ids: <bos>, the arg-max word at each step, <eos>, then padding."""
    b = feat.shape[0]
    out = torch.full((b, length), PAD_ID, dtype=torch.long, device=feat.device)
    out[:, 0] = BOS_ID
    tokens, state = out[:, 0], decoder.start(feat, memory)
    done = torch.zeros(b, dtype=torch.bool, device=feat.device)
    for t in range(1, length):
        logits, state = decoder.step(tokens, state)
        logits[:, PAD_ID] = logits[:, BOS_ID] = float("-inf")
        if t == length - 1:  # the last position can only end the caption
            tokens = torch.full_like(tokens, EOS_ID)
        else:
            tokens = logits.argmax(-1)
        out[:, t] = torch.where(done, torch.full_like(tokens, PAD_ID), tokens)
        done = done | (tokens == EOS_ID)
        if bool(done.all()):
            break
    return out


@torch.no_grad()
def beam_decode(
    decoder: nn.Module, feat: Tensor, memory: Tensor | None, length: int, beam: int = 3, alpha: float = 0.0
) -> Tensor:
    """Beam search; the best finished hypothesis per clip by log-probability / (words + 1) ** alpha."""
    b, k, dev = feat.shape[0], beam, feat.device
    rep = torch.arange(b, device=dev).repeat_interleave(k)
    state = decoder.reorder(decoder.start(feat, memory), rep)
    seqs = torch.full((b * k, length), PAD_ID, dtype=torch.long, device=dev)
    seqs[:, 0] = BOS_ID
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    done = torch.zeros(b * k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b * k, device=dev)
    for t in range(1, length):
        logits, state = decoder.step(seqs[:, t - 1], state)
        logp = logits.float().log_softmax(-1)
        logp[:, PAD_ID] = logp[:, BOS_ID] = float("-inf")
        if t == length - 1:
            eos_only = torch.full_like(logp, float("-inf"))
            eos_only[:, EOS_ID] = logp[:, EOS_ID]
            logp = eos_only
        # a finished hypothesis continues with padding at no cost
        finished = torch.full_like(logp, float("-inf"))
        finished[:, PAD_ID] = 0.0
        logp = torch.where(done.unsqueeze(1), finished, logp)
        v = logp.shape[1]
        total = (scores.view(-1, 1) + logp).view(b, k * v)
        top, idx = total.topk(k, dim=1)
        src = (idx // v) + torch.arange(b, device=dev).unsqueeze(1) * k
        word = idx % v
        src, word = src.view(-1), word.view(-1)
        seqs = seqs[src]
        seqs[:, t] = word
        was_done = done[src]
        lengths = lengths[src] + (~was_done).float()
        done = was_done | (word == EOS_ID)
        state = decoder.reorder(state, src)
        scores = top
        if bool(done.all()):
            break
    norm = scores.view(-1) / lengths.clamp_min(1.0) ** alpha if alpha else scores.view(-1)
    best = norm.view(b, k).argmax(1) + torch.arange(b, device=dev) * k
    return seqs[best]


class CaptionHead(nn.Module):
    """tap -> video feature (and per-time-step memory) -> decoder. Training with targets: teacher-forced
    logits [B, L-1, V]; otherwise decoded ids [B, L] (greedy, or beam search with `args.beam` > 1)."""

    def __init__(self, task: Task, tap_dim: int, layout: str):
        super().__init__()
        a = task.args
        self.layout, self.length, self.beam = layout, a["max_len"] + 2, int(a["beam"])
        common = {"embed": a["embed"], "hidden": a["hidden"], "layers": a["layers"], "dropout": a["dropout"]}
        if a["decoder"] == "transformer":
            self.decoder = TransformerDecoder(tap_dim, len(task.classes), heads=a["heads"],
                                              max_len=self.length, **common)  # fmt: skip
        else:
            self.decoder = LSTMDecoder(tap_dim, len(task.classes), **common)

    def _features(self, tap: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.layout == "map":
            seq = tap.float().mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]
            return seq.mean(1), seq
        if self.layout == "sequence":
            return tap.float().mean(1), tap.float()
        return tap.float(), None

    def forward(self, tap: Tensor, targets: Tensor | None = None, mode: str = "train") -> HeadOutput:
        feat, memory = self._features(tap)
        if targets is not None and mode == "train":
            ids = targets[:, 0] if targets.ndim == 3 else targets  # the first reference is the training one
            logits = self.decoder.teacher_force(feat, memory, ids[:, :-1])
            return HeadOutput(output=logits, features=feat)
        if self.beam > 1:
            ids = beam_decode(self.decoder, feat, memory, self.length, self.beam)
        else:
            ids = greedy_decode(self.decoder, feat, memory, self.length)
        return HeadOutput(output=ids, features=feat)


# --------------------------------------------------------------------------------------------------
# Caption metrics on token lists (hypothesis: list[str]; references: list[list[str]] per clip).


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(hyps: list[list[str]], refs: list[list[list[str]]], max_n: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..max_n (clipped precision, brevity penalty against the closest reference length)."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for h, rs in zip(hyps, refs):
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            hc = _ngrams(h, n)
            best: Counter = Counter()
            for r in rs:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, best[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    bp = 1.0 if hyp_len > ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    out, logs = {}, []
    for n in range(max_n):
        p = matches[n] / totals[n] if totals[n] else 0.0
        logs.append(math.log(p) if p > 0 else -math.inf)
        out[f"bleu{n + 1}"] = float(bp * math.exp(sum(logs) / len(logs))) if p > 0 and bp > 0 else 0.0
        if out[f"bleu{n + 1}"] == 0.0:
            logs[-1] = -math.inf
    return out


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyps: list[list[str]], refs: list[list[list[str]]], beta: float = 1.2) -> float:
    scores = []
    for h, rs in zip(hyps, refs):
        if not h:
            scores.append(0.0)
            continue
        lcs = [_lcs(h, r) for r in rs]
        p = max(c / len(h) for c in lcs)
        r = max(c / len(ref) if ref else 0.0 for c, ref in zip(lcs, rs))
        scores.append((1 + beta**2) * p * r / (r + beta**2 * p) if p > 0 and r > 0 else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def cider_d(hyps: list[list[str]], refs: list[list[list[str]]], n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D (Vedantam et al. 2015, the COCO toolkit's variant): document frequencies from the references
    of the evaluated clips, tf-idf vectors per n-gram order, min-clipping of the hypothesis, Gaussian length
    penalty, mean over references and orders, times 10."""
    if not hyps:
        return 0.0
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for k in range(1, n + 1) for g in _ngrams(r, k)})
    log_n = math.log(float(len(refs)))

    def vec(tokens):
        vs, norms = [], []
        for k in range(1, n + 1):
            v = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in _ngrams(tokens, k).items()}
            vs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vs, norms, len(tokens)

    scores = []
    for h, rs in zip(hyps, refs):
        vh, nh, lh = vec(h)
        total = np.zeros(n)
        for r in rs:
            vr, nr, lr = vec(r)
            for k in range(n):
                val = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, x in vh[k].items())
                if nh[k] and nr[k]:
                    val /= nh[k] * nr[k]
                total[k] += val * math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
        scores.append(total.mean() / len(rs) * 10.0)
    return float(np.mean(scores))


def caption_scores(hyps: list[list[str]], refs: list[list[list[str]]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L, CIDEr-D and exact match of tokenised hypotheses against all references."""
    if not hyps:
        return {}
    out = bleu(hyps, refs)
    out["rouge_l"] = rouge_l(hyps, refs)
    out["cider_d"] = cider_d(hyps, refs)
    out["exact_match"] = float(np.mean([any(h == r for r in rs) for h, rs in zip(hyps, refs)]))
    return out


# --------------------------------------------------------------------------------------------------


class CaptionKind:
    """The caption task kind (the same interface as `tasks.TaskKind`)."""

    name = "caption"
    default_loss = "ce"
    losses = ("ce",)
    default_metrics = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "exact_match", "token_acc")
    default_main = "cider_d"  # smoother than BLEU-4 (often 0 early in training) for checkpoint selection
    needs_classes = True  # the vocabulary (with the special tokens first) is the task's label space
    args = {
        "refs_column": None,  # extra reference captions ("a | b"), used by the metrics only
        "max_refs": 4,
        "max_len": 16,  # words; sequences are max_len + 2 long (<bos>, <eos>)
        "min_count": 1,  # words seen fewer times in the training captions become <unk> (paper: 6)
        "decoder": "lstm",
        "embed": 64,
        "hidden": 256,
        "layers": 2,
        "heads": 4,
        "dropout": 0.0,
        "beam": 1,  # 1 = greedy decoding
    }

    def label_count(self, task, target: Tensor, mask: Tensor) -> Tensor:
        """The number of real tokens (what the loss divides by)."""
        return torch.broadcast_to(mask, target.shape).sum()

    def check_args(self, args: dict, where: str) -> None:
        if args["decoder"] not in DECODERS:
            raise ConfigError(
                f"config key '{where}.decoder': {args['decoder']!r}; choose from {sorted(DECODERS)}"
            )
        for key in ("max_refs", "max_len", "min_count", "embed", "hidden", "layers", "heads", "beam"):
            if not isinstance(args[key], int) or args[key] < 1:
                raise ConfigError(f"config key '{where}.{key}': expected an integer >= 1, got {args[key]!r}")

    def resolve_classes(self, cfg, manifest, train_split: str = "train") -> list[str]:
        """The vocabulary, from the training split's captions (all rows if there is no such split)."""
        column = cfg.column or cfg.name
        args = {**self.args, **cfg.args}
        manifest.require_column(column, cfg.name)
        rows = [r for r in manifest.rows if r.get("split") == train_split] or manifest.rows
        caps = [c for r in rows for c in _split(r.get(column, ""), cfg.separator)]
        if not caps:
            raise DataError(f"{manifest.path}: caption task '{cfg.name}' has no caption in column '{column}'")
        return Tokenizer.build(caps, min_count=int(args["min_count"]), max_len=int(args["max_len"])).vocab

    def out_dim(self, task):
        return len(task.classes)

    def build_head(self, task: Task, tap_dim: int, layout: str) -> nn.Module:
        return CaptionHead(task, tap_dim, layout)

    def empty_target(self, task):
        n, length = task.args["max_refs"], task.args["max_len"] + 2
        return torch.zeros(n, length, dtype=torch.long), torch.zeros(n, length, dtype=torch.bool)

    def encode(self, task, cell, where):
        return self._encode_refs(task, _split(cell, task.separator))

    def encode_row(self, task, cells: dict, where: str):
        refs = _split(cells.get(task.column, ""), task.separator)
        extra = task.args.get("refs_column")
        if refs and extra:
            refs += [r for r in _split(cells.get(extra, ""), task.separator) if r not in refs]
        return self._encode_refs(task, refs)

    def _encode_refs(self, task, refs: list[str]):
        target, mask = self.empty_target(task)
        tok = tokenizer_for(task)
        for i, ref in enumerate(refs[: task.args["max_refs"]]):
            ids = torch.tensor(tok.encode(ref), dtype=torch.long)
            target[i], mask[i] = ids, ids != PAD_ID
        return target, mask

    def loss(self, task, output, target, mask):
        if output.ndim != 3:
            raise ValueError(
                "caption loss needs teacher-forced logits [B, L-1, V] (mode 'train' with targets)"
            )
        return masked_token_cross_entropy(
            output, target[:, 0, 1:], mask[:, 0, 1:], label_smoothing=task.label_smoothing
        )

    def compute_metrics(self, task, output, target, mask):
        ids = np.asarray(output).astype(np.int64)
        tgt = np.asarray(target).astype(np.int64)
        m = np.asarray(mask).astype(bool).reshape(tgt.shape)
        if ids.ndim != 2 or tgt.ndim != 3:
            raise ValueError(
                f"caption metrics need decoded ids [N, L] and targets [N, R, L], got {ids.shape}"
            )
        valid = m[:, 0, 0]
        if not valid.any():
            return {}
        tok = tokenizer_for(task)
        hyps, refs = [], []
        for i in np.flatnonzero(valid):
            hyps.append(tok.tokens(ids[i]))
            refs.append([tok.tokens(tgt[i, r]) for r in range(tgt.shape[1]) if m[i, r, 0]])
        res = caption_scores(hyps, refs)
        pos = m[valid, 0, 1:]  # the first reference's words and its <eos>
        length = min(ids.shape[1], tgt.shape[2])
        agree = ids[valid, 1:length] == tgt[valid, 0, 1:length]
        res["token_acc"] = float(agree[pos[:, : length - 1]].mean()) if pos.any() else 0.0
        return {k: v for k, v in res.items() if k in task.metrics}

    def decode(self, task, output, k=3):
        tok = tokenizer_for(task)
        if output.ndim == 3:  # teacher-forced logits
            output = output.argmax(-1)
        return [tok.decode(row.tolist()) for row in output.long()]


def _split(cell: str, separator: str) -> list[str]:
    return [c.strip() for c in cell.split(separator) if c.strip()] if cell else []


def caption_references(task: Task, cells: dict) -> list[str]:
    """Every reference caption of a manifest row for this task (main column first)."""
    refs = _split(cells.get(task.column, ""), task.separator)
    if task.args.get("refs_column"):
        refs += [r for r in _split(cells.get(task.args["refs_column"], ""), task.separator) if r not in refs]
    return refs


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "CaptionHead",
    "CaptionKind",
    "LSTMDecoder",
    "Tokenizer",
    "TransformerDecoder",
    "beam_decode",
    "bleu",
    "caption_scores",
    "cider_d",
    "greedy_decode",
    "rouge_l",
    "words",
]
