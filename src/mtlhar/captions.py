"""Captions: a tokenizer, caption decoders and caption metrics (METHODS.md section 2); the task kind that
uses them (targets, head, loss, metric wiring) is `mtlhar.kinds.caption`.

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

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError

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


def split_captions(cell: str, separator: str) -> list[str]:
    """The captions of a manifest cell (`separator`-joined), stripped, empty ones left out."""
    return [c.strip() for c in cell.split(separator) if c.strip()] if cell else []


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


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "LSTMDecoder",
    "Tokenizer",
    "TransformerDecoder",
    "beam_decode",
    "bleu",
    "caption_scores",
    "cider_d",
    "greedy_decode",
    "rouge_l",
    "split_captions",
    "words",
]
