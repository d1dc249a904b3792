"""Contrastive representation distillation (Tian, Krishnan & Isola, "Contrastive Representation
Distillation", ICLR 2020).

Student and teacher embeddings are projected by learned linear layers to ``feat_dim`` and L2-normalised
(``s``, ``t``). A memory bank keeps, for every training sample ``n``, a momentum-averaged student embedding
``M^s_n`` and teacher embedding ``M^t_n``. For a batch sample with dataset index ``i`` and ``K`` sampled
negative indices ``j_1..j_K``, the scores are

    h(v, M_n) = exp(<v, M_n> / tau) / Z,

with ``Z = N * mean(exp(<v, M_n> / tau))`` estimated once, on the first batch (one ``Z`` per side), as in the
paper's NCE approximation. The NCE loss (the paper's Eq. 18, written out in RepDistiller's ``ContrastLoss``)
treats the noise distribution as uniform, ``P_n = 1/N``, and with ``m = K``:

    L_NCE = -1/B sum_b [ log(h_pos / (h_pos + m/N + eps)) + sum_k log((m/N) / (h_neg_k + m/N + eps)) ]

It is applied in both directions and summed: the student anchor ``s`` against teacher-memory rows ``M^t``
(positive ``M^t_i``), and the teacher anchor ``t`` against student-memory rows ``M^s``. After the loss, the
rows of the batch are updated: ``M_i <- normalize(m M_i + (1 - m) v)`` (momentum ``m = nce_m``; a sample
present in several views of the batch, e.g. AugMix's, shares its index and is updated once with the mean of
its views' embeddings).

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill crd -a 0 -b
0.8``): CE weight 1, no KD term, CRD weight (beta) 0.8, ``feat_dim = 128``, ``nce_k = 16384``,
``nce_t = 0.07``, ``nce_m = 0.5``, on the pooled embedding (``feat[-1]``), memory initialised uniformly in
``[-sqrt(3/d), sqrt(3/d)]``.

Negatives (``negatives``): ``"other_class"`` (default, as RepDistiller's CIFAR-100 loader) draws them
uniformly from the samples of other classes, directly (as RepDistiller's per-class lists): exact when the
distiller gets every training sample's label (``sample_labels=``, which ``calikd distill`` passes); without
it, labels are recorded per index as batches arrive and samples not yet seen count as other-class. Draws are
with replacement (RepDistiller: without, when possible; with 16384 of 50000 samples the difference is
negligible). ``"uniform"`` draws ``K`` indices uniformly from the dataset minus the positive index. Sampling
uses the global torch RNG (or a given ``torch.Generator``), so a fixed seed gives the same negatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

NEGATIVES = ("uniform", "other_class")
NCE_EPS = 1e-7
#: on a CPU, scores come from the anchors' products with the whole memory when it has at most this many rows
#: per sampled column: one matrix product instead of gathering ``(B, 1 + K, D)`` rows (1 GB a batch at the
#: benchmark's K = 16384), 13-80x faster at N = 10,000-50,000 on a 2-core AMD EPYC (the same numbers to float
#: rounding). Not on a GPU: there the gathered rows are fast, and ``gather``'s backward (atomic adds) is not
#: deterministic
FULL_SCORES_MAX_RATIO = 8


# ----------------------------------------------------------------- pure pieces
def contrast_scores(anchor: torch.Tensor, rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp(<anchor_b, rows_bk> / T)``: ``anchor (B, D)``, ``rows (B, K+1, D)`` -> ``(B, K+1)``."""
    return torch.exp(torch.einsum("bd,bkd->bk", anchor, rows) / temperature)


def contrast_scores_full(
    anchor: torch.Tensor, memory: torch.Tensor, sample_idx: torch.Tensor, temperature: float
) -> torch.Tensor:
    """:func:`contrast_scores` of the rows ``memory[sample_idx]`` from the products with every memory row:
    ``anchor (B, D)``, ``memory (N, D)``, ``sample_idx (B, K+1)`` -> ``(B, K+1)``."""
    return torch.exp((anchor @ memory.t()).gather(1, sample_idx) / temperature)


def nce_loss(scores: torch.Tensor, num_samples: int, eps: float = NCE_EPS) -> torch.Tensor:
    """CRD's NCE loss on normalised scores ``(B, 1 + K)`` whose column 0 is the positive.

    ``-1/B sum_b [log(h_pos / (h_pos + K/N + eps)) + sum_k log((K/N) / (h_neg + K/N + eps))]``.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ConfigError(f"NCE scores must be (B, 1 + K) with K >= 1, got shape {tuple(scores.shape)}")
    k = scores.shape[1] - 1
    noise = k / float(num_samples)
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (neg + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def crd_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The two NCE terms summed: student-anchored scores plus teacher-anchored scores."""
    return nce_loss(student_scores, num_samples) + nce_loss(teacher_scores, num_samples)


def sample_negatives(
    index: torch.Tensor,
    num_samples: int,
    k: int,
    *,
    generator: torch.Generator | None = None,
    sample_labels: torch.Tensor | None = None,
    anchor_labels: torch.Tensor | None = None,
    max_rounds: int = 16,
) -> torch.Tensor:
    """``(B, 1 + k)`` dataset indices: column 0 is ``index``, then ``k`` negatives drawn uniformly (with
    replacement) from ``[0, num_samples)`` minus the positive.

    With ``sample_labels`` (label per dataset index, ``-1`` = unknown) and ``anchor_labels`` (B,), an anchor
    of a known class draws its negatives uniformly from the samples not of its class (unknown ones included),
    as RepDistiller draws from its per-class negative lists: directly, not by rejection. The positive is never
    drawn (were its recorded label not the anchor's, its draws are repeated, up to ``max_rounds`` times). An
    anchor of unknown class, or whose class holds every sample, draws from all the others.
    """
    if num_samples < 2:
        raise ConfigError(f"contrastive sampling needs at least 2 samples, got num_samples={num_samples}")
    index = index.long()
    shape = (index.shape[0], k)

    def draw_uniform() -> torch.Tensor:
        r = torch.randint(0, num_samples - 1, shape, device=index.device, generator=generator)
        return r + (r >= index[:, None]).long()  # skip the positive: uniform over the other N - 1

    if sample_labels is None or anchor_labels is None:
        return torch.cat([index[:, None], draw_uniform()], dim=1)
    labels = sample_labels.to(index.device).long()
    anchor = anchor_labels.to(index.device).long()
    order = torch.argsort(labels, stable=True)  # each class one block of the sorted order
    sorted_labels = labels[order]
    start = torch.searchsorted(sorted_labels, anchor)
    size = torch.searchsorted(sorted_labels, anchor, right=True) - start
    pool = num_samples - size  # the samples not of the anchor's class
    by_class = (anchor >= 0) & (pool > 0)

    def draw_other_class() -> torch.Tensor:
        u = torch.rand(shape, device=index.device, dtype=torch.float64, generator=generator)
        r = torch.minimum((u * pool[:, None]).long(), (pool - 1).clamp_min(0)[:, None])
        at = r + (r >= start[:, None]).long() * size[:, None]  # step over the class's block
        return order[at.clamp_max(num_samples - 1)]  # (clamped for a class of every sample: drawn uniformly)

    neg = draw_other_class()
    if not bool(by_class.all()):
        neg = torch.where(by_class[:, None], neg, draw_uniform())
    for _ in range(max_rounds):
        hit = by_class[:, None] & (neg == index[:, None])
        if not bool(hit.any()):
            break
        neg = torch.where(hit, draw_other_class(), neg)
    return torch.cat([index[:, None], neg], dim=1)


# ----------------------------------------------------------------- trainable parts
class CRDEmbed(nn.Module):
    """Flatten, linear projection to ``out_dim``, L2 normalisation."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)).float(), p=2, dim=1)


class ContrastMemory(nn.Module):
    """Memory bank of momentum-averaged student and teacher embeddings, one row per training sample.

    Buffers (so they follow ``.to(device)`` and are saved in the distiller's extra state):
    ``memory_student`` / ``memory_teacher`` ``(N, D)``, the normalisation constants ``z_student`` /
    ``z_teacher`` (``-1`` until estimated) and, with ``negatives="other_class"``, ``labels`` ``(N,)``.
    """

    def __init__(
        self,
        dim: int,
        num_samples: int,
        nce_k: int,
        temperature: float = 0.07,
        momentum: float = 0.5,
        negatives: str = "uniform",
    ) -> None:
        super().__init__()
        if negatives not in NEGATIVES:
            raise ConfigError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        if num_samples < 2:
            raise ConfigError(f"CRD's memory needs at least 2 samples, got num_samples={num_samples}")
        self.num_samples, self.nce_k = int(num_samples), int(nce_k)
        self.temperature, self.momentum, self.negatives = float(temperature), float(momentum), negatives
        bound = 1.0 / math.sqrt(dim / 3.0)
        self.register_buffer("memory_student", torch.rand(num_samples, dim) * (2 * bound) - bound)
        self.register_buffer("memory_teacher", torch.rand(num_samples, dim) * (2 * bound) - bound)
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))
        if negatives == "other_class":
            self.register_buffer("labels", torch.full((num_samples,), -1, dtype=torch.long))

    def sample(
        self,
        index: torch.Tensor,
        anchor_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(B, 1 + nce_k)`` indices: the positives then the negatives (see :func:`sample_negatives`)."""
        labels = self.labels if self.negatives == "other_class" else None
        return sample_negatives(
            index.to(self.memory_student.device),
            self.num_samples,
            self.nce_k,
            generator=generator,
            sample_labels=labels,
            anchor_labels=anchor_labels if labels is not None else None,
        )

    def record_labels(self, index: torch.Tensor, labels: torch.Tensor) -> None:
        """Remember the batch's labels (used by ``negatives="other_class"``; a no-op otherwise)."""
        if self.negatives == "other_class":
            dev = self.labels.device
            self.labels[index.to(dev).long()] = labels.to(dev).long()

    def _normalize(self, scores: torch.Tensor, z: torch.Tensor, store: bool) -> torch.Tensor:
        estimate = scores.detach().mean() * self.num_samples
        z_now = torch.where(z < 0, estimate, z)
        if store:
            z.copy_(z_now)
        return scores / z_now

    def forward(
        self, student_emb: torch.Tensor, teacher_emb: torch.Tensor, sample_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised scores ``(B, 1 + K)``: (student anchor vs teacher memory, teacher anchor vs student
        memory). ``Z`` is estimated from the first batch and stored while training."""
        b, n = sample_idx.shape
        if student_emb.device.type == "cpu" and self.num_samples <= FULL_SCORES_MAX_RATIO * n:
            # copies: the backward needs the rows as they were, and update() changes them in place
            temp, mem_t, mem_s = self.temperature, self.memory_teacher.clone(), self.memory_student.clone()
            out_s = contrast_scores_full(student_emb.float(), mem_t, sample_idx, temp)
            out_t = contrast_scores_full(teacher_emb.float(), mem_s, sample_idx, temp)
        else:
            flat = sample_idx.reshape(-1)
            rows_t = self.memory_teacher.index_select(0, flat).view(b, n, -1)
            rows_s = self.memory_student.index_select(0, flat).view(b, n, -1)
            out_s = contrast_scores(student_emb.float(), rows_t, self.temperature)
            out_t = contrast_scores(teacher_emb.float(), rows_s, self.temperature)
        store = self.training
        return self._normalize(out_s, self.z_student, store), self._normalize(out_t, self.z_teacher, store)

    @torch.no_grad()
    def update(self, index: torch.Tensor, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> None:
        """Momentum update of the batch's rows, renormalised to unit length.

        A sample present several times in the batch (several augmented views sharing its index) is updated
        once, with the mean of its embeddings: deterministic, where ``index_copy_`` with repeated indices
        is not (on CUDA).
        """
        index = index.to(self.memory_student.device).long()
        student_emb, teacher_emb = student_emb.detach().float(), teacher_emb.detach().float()
        rows, inverse = torch.unique(index, return_inverse=True)
        if rows.numel() != index.numel():
            weights = F.one_hot(inverse, rows.numel()).t().float()
            weights = weights / weights.sum(dim=1, keepdim=True)
            index, student_emb, teacher_emb = rows, weights @ student_emb, weights @ teacher_emb
        for memory, emb in ((self.memory_student, student_emb), (self.memory_teacher, teacher_emb)):
            mixed = memory.index_select(0, index) * self.momentum + emb * (1 - self.momentum)
            memory.index_copy_(0, index, F.normalize(mixed, p=2, dim=1))


# ----------------------------------------------------------------- the method
@dataclass
class CRDConfig(DistillerConfig):
    """Options of CRD."""

    kd_weight: float = option(0.8, "weight (beta) of the contrastive term", min=0.0)
    feat_dim: int = option(128, "dimension of the contrastive embedding space", min=1)
    nce_k: int = option(16384, "number of negatives per positive", min=1)
    nce_t: float = option(0.07, "temperature of the contrastive scores", min=0.0, exclusive_min=True)
    nce_m: float = option(0.5, "momentum of the memory-bank update", min=0.0, max=1.0)
    negatives: str = option(
        "other_class",
        "negatives drawn uniformly from the other samples, or only from samples of other classes",
        choices=NEGATIVES,
    )
    student_layers: list[str] = option([], "student layer (name or index); empty = the embedding (-1)")
    teacher_layers: list[str] = option([], "teacher layer (name or index); empty = the embedding (-1)")


@register_distiller("crd")
class CRD(FeatureDistiller):
    """Contrastive representation distillation: NCE between student and teacher embeddings, memory bank."""

    config_class = CRDConfig
    source = "Tian et al., ICLR 2020; defaults: RepDistiller scripts (CRD benchmark)"
    needs_index = True
    single_pair = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        s_dim = math.prod(self.student_feature_shapes[self.student_layer_names[0]])
        t_dim = math.prod(self.teacher_feature_shapes[self.teacher_layer_names[0]])
        self.embed_student = CRDEmbed(s_dim, cfg.feat_dim)
        self.embed_teacher = CRDEmbed(t_dim, cfg.feat_dim)
        self.memory = ContrastMemory(
            cfg.feat_dim, int(self.num_samples), cfg.nce_k, cfg.nce_t, cfg.nce_m, cfg.negatives
        )
        # with every sample's label known up front, other-class negatives are exact from the first batch
        self._labels_known = cfg.negatives == "other_class" and self.sample_labels is not None
        if self._labels_known:
            self.memory.labels.copy_(self.sample_labels.long())

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        f_s = step.student_features[self.student_layer_names[0]]
        f_t = step.teacher_features[self.teacher_layer_names[0]]
        index = step.index.to(self.memory.memory_student.device).long()
        with torch.autocast(f_s.device.type, enabled=False):
            s = self.embed_student(f_s.float())
            t = self.embed_teacher(f_t.float())
            anchor = self.memory.labels[index] if self._labels_known else step.labels
            if self.training and not self._labels_known:
                self.memory.record_labels(index, step.labels)
            sample_idx = self.memory.sample(index, anchor_labels=anchor)
            out_s, out_t = self.memory(s, t, sample_idx)
            loss = crd_loss(out_s, out_t, self.memory.num_samples)
            if self.training:
                self.memory.update(index, s, t)
        return {**self.ce_term(step), "crd": self.config.kd_weight * loss}
