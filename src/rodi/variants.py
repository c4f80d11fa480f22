"""The objective's variants as one table: what each one switches on (docs/method.md section 4).

This is the only place a variant's name is looked at. The objective, the networks, the command line
and the benchmark read the record of ``objective.variant`` and never compare names:

| variant | stochastic pose | KL weight | MI constraint (T) | adaptive gamma (T') | extra terms |
|---|---|---|---|---|---|
| ``ae`` | no | 0 | no | no | |
| ``variational`` | yes | fixed | no | no | |
| ``adversarial`` | yes | fixed | yes | no | |
| ``rodi`` | yes | adaptive | yes | yes | |
| ``drnet`` | no | 0 | no | no | ``drnet`` |

To add a variant, add a record here (and, for new loss terms, a module under ``rodi/objectives/``
named in ``extra_terms``); the README's table of variants follows this one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One variant of the objective.

    Attributes:
        name: the value of ``objective.variant``.
        stochastic_pose: the decoder sees a sample of q(pi | x); otherwise the posterior mean, and
            the KL term is 0.
        kl: the KL term is in the loss, weighted by gamma (``objective.gamma``).
        constraint: the MI constraint I_T <= epsilon on the pose encoder, by an augmented
            Lagrangian with multiplier lambda (active from ``objective.warmup_steps``).
        adaptive_gamma: gamma moves with the gap between the independent critic T' and T.
        extra_terms: loss terms of another method in the same framework (``drnet``: the appearance
            codes of a pair pulled together and a scene discriminator), or None.
        summary: one line for help texts.
    """

    name: str
    stochastic_pose: bool
    kl: bool
    constraint: bool
    adaptive_gamma: bool
    extra_terms: str | None = None
    summary: str = ""


TABLE: tuple[Variant, ...] = (
    Variant("ae", stochastic_pose=False, kl=False, constraint=False, adaptive_gamma=False,
            summary="autoencoder: deterministic pose code, no KL, no constraint"),
    Variant("variational", stochastic_pose=True, kl=True, constraint=False, adaptive_gamma=False,
            summary="fixed KL weight gamma"),
    Variant("adversarial", stochastic_pose=True, kl=True, constraint=True, adaptive_gamma=False,
            summary="fixed gamma plus the MI constraint"),
    Variant("rodi", stochastic_pose=True, kl=True, constraint=True, adaptive_gamma=True,
            summary="adaptive gamma plus the MI constraint (the paper's method)"),
    Variant("drnet", stochastic_pose=False, kl=False, constraint=False, adaptive_gamma=False,
            extra_terms="drnet",
            summary="DRNET (Denton & Birodkar, NeurIPS 2017) in the same framework"),
)
VARIANTS: dict[str, Variant] = {v.name: v for v in TABLE}
NAMES: tuple[str, ...] = tuple(VARIANTS)
DEFAULT = "rodi"


def variant(name: str) -> Variant:
    """The record of ``name``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; choose one of {', '.join(NAMES)}") from None
