"""The tensor contract: input ``(B, C, H, W, D)`` to logits ``(B, K, H, W)``, and size rules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


class InputShapeError(ValueError):
    """An input tensor (or a build depth) breaks a model's declared size rule."""


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class SizeRule:
    """Which input sizes a model accepts: H and W multiples and minima, and a depth rule.

    ``depth_fixed`` models are built for one depth (``built_depth`` after :meth:`bind`);
    the others accept any depth from ``depth_min``.
    """

    h_multiple: int = 1
    w_multiple: int = 1
    h_min: int = 1
    w_min: int = 1
    depth_min: int = 1
    depth_multiple: int = 1
    depth_fixed: bool = False
    built_depth: int | None = None
    in_channels: int | None = None

    @classmethod
    def from_metadata(
        cls,
        *,
        h_multiple: int = 1,
        w_multiple: int = 1,
        h_min: int = 1,
        w_min: int = 1,
        depth: Mapping[str, Any] | None = None,
    ) -> SizeRule:
        """Build a rule from registry metadata (``depth={"min": 64}`` or ``{"fixed": True}``)."""
        depth = dict(depth or {})
        unknown = set(depth) - {"min", "fixed", "multiple"}
        if unknown:
            raise ValueError(f"unknown depth rule keys {sorted(unknown)}; use min, fixed, multiple")
        return cls(
            h_multiple=int(h_multiple),
            w_multiple=int(w_multiple),
            h_min=max(int(h_min), int(h_multiple)),
            w_min=max(int(w_min), int(w_multiple)),
            depth_min=int(depth.get("min", 1)),
            depth_multiple=int(depth.get("multiple", 1)),
            depth_fixed=bool(depth.get("fixed", False)),
        )

    def bind(self, depth: int, in_channels: int | None = None) -> SizeRule:
        """The rule of one built model: a fixed-depth model now knows its depth."""
        return replace(self, built_depth=int(depth) if self.depth_fixed else None, in_channels=in_channels)

    def describe(self) -> str:
        """Human-readable rule, e.g. ``H % 4 == 0, W % 16 == 0, D >= 64``."""
        parts = [
            self._axis_text("H", self.h_multiple, self.h_min),
            self._axis_text("W", self.w_multiple, self.w_min),
        ]
        if self.depth_fixed:
            if self.built_depth is not None:
                parts.append(f"D == {self.built_depth} (built depth)")
            else:
                extra = []
                if self.depth_multiple > 1:
                    extra.append(f"multiple of {self.depth_multiple}")
                if self.depth_min > 1:
                    extra.append(f">= {self.depth_min}")
                parts.append("D fixed at construction" + (f" ({', '.join(extra)})" if extra else ""))
        else:
            parts.append(f"D >= {self.depth_min}" if self.depth_min > 1 else "any D")
        return ", ".join(parts)

    @staticmethod
    def _axis_text(axis: str, multiple: int, minimum: int) -> str:
        if multiple > 1 and minimum <= multiple:
            return f"{axis} % {multiple} == 0"
        if multiple > 1:
            return f"{axis} % {multiple} == 0 and {axis} >= {minimum}"
        return f"{axis} >= {minimum}" if minimum > 1 else f"any {axis}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def violations(self, h: int, w: int, d: int) -> list[str]:
        """Every broken part of the rule for an (H, W, D) input; empty when it is accepted."""
        problems = []
        for axis, size, multiple, minimum in (
            ("H", h, self.h_multiple, self.h_min),
            ("W", w, self.w_multiple, self.w_min),
        ):
            if size < minimum:
                problems.append(f"{axis} = {size} is below the minimum {minimum}")
            elif size % multiple:
                problems.append(f"{axis} = {size} is not a multiple of {multiple}")
        if self.depth_fixed and self.built_depth is not None and d != self.built_depth:
            problems.append(f"D = {d} differs from the depth the model was built for ({self.built_depth})")
        elif d < self.depth_min:
            problems.append(f"D = {d} is below the minimum depth {self.depth_min}")
        return problems

    def check(self, shape: tuple[int, ...], model: str = "") -> None:
        """Raise :class:`InputShapeError` naming the rule when ``shape`` is not accepted."""
        who = f"model {model!r}" if model else "this model"
        if len(shape) != 5:
            raise InputShapeError(
                f"{who} expects a 5-D input (B, C, H, W, D) with depth last; got shape {tuple(shape)}"
            )
        _, c, h, w, d = shape
        if self.in_channels is not None and c != self.in_channels:
            raise InputShapeError(
                f"{who} was built for {self.in_channels} input channel(s); got C = {c} in {tuple(shape)}"
            )
        problems = self.violations(h, w, d)
        if problems:
            raise InputShapeError(
                f"{who} rejects input {tuple(shape)}: {'; '.join(problems)}. Rule: {self.describe()}."
            )

    def check_build_depth(self, depth: int, model: str = "") -> None:
        """Raise when a model cannot be built (or used) for ``depth``."""
        who = f"model {model!r}" if model else "this model"
        if depth < self.depth_min:
            raise InputShapeError(f"{who} needs depth >= {self.depth_min}; got depth {depth}")
        if self.depth_fixed and depth % self.depth_multiple:
            raise InputShapeError(
                f"{who} is built for one depth, a multiple of {self.depth_multiple}; got depth {depth}"
            )

    def smallest_valid(self, h: int = 1, w: int = 1) -> tuple[int, int]:
        """The smallest accepted (H, W) at least as large as the given sizes."""
        return (
            _round_up(max(h, self.h_min), self.h_multiple),
            _round_up(max(w, self.w_min), self.w_multiple),
        )

    def largest_valid(self, h: int, w: int) -> tuple[int, int]:
        """The largest accepted (H, W) not above the given sizes (at least the minimum)."""
        return (
            max(self.h_min, (h // self.h_multiple) * self.h_multiple),
            max(self.w_min, (w // self.w_multiple) * self.w_multiple),
        )
