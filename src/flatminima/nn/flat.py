"""A network's parameters as one flat vector, and back: the one flattener of the package.

:func:`flatten` concatenates named parameter tensors (all of them, or the ``names`` given, in that
order) into one detached vector, row-major, in their own dtype; :func:`unflatten` splits a vector
back into tensors of the recorded shapes (views, differentiable). The Hessian code, the trajectory
and noise analyses and the claims all go through these two, so a vector means the same everywhere.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlatSpec:
    """How a flat vector maps back to named parameter tensors."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]

    @property
    def dim(self) -> int:
        return sum(self.numels)

    @classmethod
    def of(cls, params: Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> FlatSpec:
        """The spec of ``params[name]`` for ``names`` (default: all of ``params``, in order)."""
        names = tuple(params if names is None else names)
        return cls(names, tuple(params[k].shape for k in names), tuple(params[k].numel() for k in names))


def flatten(params: Mapping[str, torch.Tensor],
            names: Sequence[str] | None = None) -> tuple[torch.Tensor, FlatSpec]:
    r"""Concatenate ``params[name]`` for ``names`` into one detached vector :math:`\theta \in \mathbb{R}^d`.

    Parameters
    ----------
    params : Mapping of str to torch.Tensor
        Named parameter tensors (e.g. ``dict(net.named_parameters())``).
    names : sequence of str, optional
        Which tensors, in which order (default: all of ``params``, in its order).

    Returns
    -------
    flat : torch.Tensor
        The row-major concatenation, in the tensors' own dtype, detached from the graph.
    spec : FlatSpec
        The names and shapes that :func:`unflatten` needs to undo it.
    """
    spec = FlatSpec.of(params, names)
    flat = torch.cat([params[k].detach().reshape(-1) for k in spec.names]) if spec.names else torch.zeros(0)
    return flat, spec


def unflatten(flat: torch.Tensor, spec: FlatSpec) -> dict[str, torch.Tensor]:
    """The inverse of :func:`flatten`: tensors shaped as ``spec`` says.

    Parameters
    ----------
    flat : torch.Tensor
        A vector of ``spec.dim`` entries (its last axis).
    spec : FlatSpec
        From :func:`flatten`.

    Returns
    -------
    dict of str to torch.Tensor
        Views into ``flat`` (differentiable), one per name, in ``spec``'s order.

    Raises
    ------
    ValueError
        If ``flat`` has the wrong length.
    """
    if spec.dim != flat.shape[-1]:
        raise ValueError(f"vector has {flat.shape[-1]} entries, parameters {list(spec.names)} need {spec.dim}")
    out, i = {}, 0
    for name, shape, n in zip(spec.names, spec.shapes, spec.numels):
        out[name] = flat[i:i + n].reshape(shape)
        i += n
    return out
