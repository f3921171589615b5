"""The student's training losses (LEADER, Liu et al. 2024, arXiv 2402.02803, section 3.3):

    L = L_bce + alpha * L_kd + beta * L_align (+ gamma * L_logit, logit-level KD)

Each function returns the unweighted loss; `total_loss` applies alpha, beta and gamma.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label binary cross-entropy, the recommendation loss of LEADER (eq. for L_rec):

        L_bce = -1/(N·M) Σ_i Σ_m [ y_im · log σ(z_im) + (1 - y_im) · log(1 - σ(z_im)) ]

    with logits z [N, M] and multi-hot targets y [N, M].
    """
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def kd_loss(projected: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Feature-level knowledge distillation (LEADER's L_kd):

        L_kd = 1/(N·H) Σ_i || W·h_i + b - t_i ||²

    h_i is the student's mediator (the head's hidden layer), W·h + b its projection into the
    teacher's hidden space (`projected` [N, H]) and t_i the teacher's pooled last-layer hidden
    state [N, H]. The teacher's features are cached in fp16; they are cast to the student's dtype.
    """
    return F.mse_loss(projected, teacher_hidden.to(projected.dtype))


def logit_kd_loss(logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Logit-level knowledge distillation (Hinton et al. 2015, arXiv 1503.02531, at temperature 1,
    one binary distribution per medication): the BCE of the student's logits z [N, M] against the
    teacher's probabilities p [N, M] as soft targets,

        L_logit = -1/(N·M) Σ_i Σ_m [ p_im · log σ(z_im) + (1 - p_im) · log(1 - σ(z_im)) ]

    (its minimum, the teacher's entropy, is reached at σ(z) = p).
    """
    return F.binary_cross_entropy_with_logits(logits, teacher_probs.to(logits.dtype))


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float = 1.0, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives: LEADER's profile alignment L_align between the
    profile representation a_i and the current visit's medication-set representation b_i:

        s_ij = cos(a_i, b_j) / tau
        L = 1/2 · ( -1/N Σ_i log softmax_j(s_ij)[i]  +  -1/N Σ_i log softmax_j(s_ji)[i] )

    Row i's positive is column i; the other samples of the batch are its negatives. `weight` [N]
    (0/1) drops samples without a positive (e.g. a visit with no medication) from the average;
    they still serve as negatives. L(a, b) = L(b, a).
    """
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    target = torch.arange(sim.shape[0], device=sim.device)
    per_row = F.cross_entropy(sim, target, reduction="none") + F.cross_entropy(sim.T, target, reduction="none")
    if weight is None:
        return per_row.mean() / 2
    weight = weight.to(per_row.dtype)
    return (per_row * weight).sum() / (2 * weight.sum().clamp(min=1.0))


def total_loss(
    out: dict,
    targets: torch.Tensor,
    projected: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    tau: float = 1.0,
    teacher_probs: torch.Tensor | None = None,
    gamma: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = L_bce + alpha·L_kd + beta·L_align (LEADER) + gamma·L_logit and its parts as floats for the log.

    `out` is `Student.encode(...)` (with labels when beta > 0); `projected`/`teacher_hidden`
    are needed when alpha > 0, `teacher_probs` when gamma > 0.
    """
    loss = bce_loss(out["logits"], targets)
    parts = {"bce": float(loss.detach())}
    if alpha > 0:
        kd = kd_loss(projected, teacher_hidden)
        loss = loss + alpha * kd
        parts["kd"] = float(kd.detach())
    if gamma > 0:
        soft = logit_kd_loss(out["logits"], teacher_probs)
        loss = loss + gamma * soft
        parts["logit_kd"] = float(soft.detach())
    if beta > 0:
        has_meds = (targets.sum(1) > 0).to(out["profile"].dtype)
        align = info_nce(out["profile"], out["current_meds"], tau, has_meds)
        loss = loss + beta * align
        parts["align"] = float(align.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts
