"""The tensor contract as a check anyone can run: ``check_contract(name, h, w, depth)``.

It builds a registered model for ``depth`` and runs one batch of the size a run will train on,
checking what the harness relies on: the output shape ``(B, K, H, W)``, float32, logits (not bounded
to [0, 1], so no sigmoid inside), a gradient reaching every parameter that trains, and the declared
size rule (an input that breaks it is rejected before any layer runs). ``bench3d2d models --check``
and ``bench3d2d run`` (before the first run of a plan) call it; each problem is one phrase naming the
rule.
"""

from __future__ import annotations

import torch

from bench3d2d.models._contract import InputShapeError, SizeRule
from bench3d2d.models._registry import create_model, model_info

__all__ = ["ContractError", "check_contract", "contract_problems"]

#: Batch size of the check (2: batch normalisation needs more than one sample in training mode).
BATCH = 2


class ContractError(ValueError):
    """A model breaks the tensor contract; the message names the model and the rule it breaks."""


def check_contract(name: str, h: int, w: int, depth: int) -> None:
    """Raise :class:`ContractError` (one line naming the model and every broken rule) unless ``name``
    obeys the contract on an ``(H, W, D)`` input (H and W are enlarged to the smallest accepted)."""
    problems = contract_problems(name, h, w, depth)
    if problems:
        raise ContractError(f"model {name!r} breaks the tensor contract: {'; '.join(problems)}")


def contract_problems(name: str, h: int, w: int, depth: int) -> list[str]:
    """Every broken rule of the contract, one phrase each (empty: the model obeys it)."""
    rule = model_info(name).size_rule
    h, w = rule.smallest_valid(h, w)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model = create_model(name, in_channels=1, out_channels=1, depth=depth)
        except Exception as exc:
            return [f"it cannot be built for depth {depth} ({type(exc).__name__}: {exc})"]
        model.train()
        shape = (BATCH, 1, h, w, depth)
        try:
            out = model(torch.randn(shape))
        except Exception as exc:
            return [
                f"its forward pass fails on an input {shape} its rule accepts ({type(exc).__name__}: {exc})"
            ]
        if not isinstance(out, torch.Tensor):
            return [f"its forward pass returns {type(out).__name__}, not a tensor of logits (B, K, H, W)"]
        problems = _output_problems(model, out, shape)
        if not problems:
            problems += _gradient_problems(model, out)
        model.eval()
        problems += _rule_problems(model, rule, h, w, depth)
    return problems


def _output_problems(model: torch.nn.Module, out: torch.Tensor, shape: tuple[int, ...]) -> list[str]:
    """Shape, dtype, finiteness and logits (an output bounded to [0, 1] is probabilities)."""
    b, _, h, w, _ = shape
    if tuple(out.shape) != (b, 1, h, w):
        return [
            f"output shape {tuple(out.shape)} for input {shape}; the rule is (B, K, H, W) = {(b, 1, h, w)}"
        ]
    problems = []
    if out.dtype != torch.float32:
        problems.append(f"output dtype {out.dtype}; the rule is float32 logits")
    if not torch.isfinite(out).all():
        problems.append("output holds NaN or infinite values")
    elif _bounded(out) and _bounded_when_scaled(model, shape):
        problems.append(
            "outputs all lie in [0, 1] (probabilities?); the rule is logits, with no sigmoid inside the model"
        )
    return problems


def _bounded(out: torch.Tensor) -> bool:
    values = out.detach().float()
    return bool(values.min() >= 0.0 and values.max() <= 1.0)


def _bounded_when_scaled(model: torch.nn.Module, shape: tuple[int, ...], factor: float = 10.0) -> bool:
    """Whether the outputs stay in [0, 1] with every weight and the input scaled up: logits then leave
    [0, 1] (a fresh head may give small values inside it by chance); a sigmoid, a softmax or a clamp
    at the end keeps them there whatever the weights."""
    import copy

    try:
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            for param in scaled.parameters():
                param.mul_(factor)
            return _bounded(scaled(factor * torch.randn(shape)))
    except Exception:  # a model that cannot be copied or scaled: no verdict, no complaint
        return False


def _gradient_problems(model: torch.nn.Module, out: torch.Tensor) -> list[str]:
    """Every parameter that trains (``requires_grad``) gets a gradient from the output."""
    model.zero_grad(set_to_none=True)
    out.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if not missing:
        return []
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return [f"no gradient reaches parameter(s) {', '.join(missing[:3])}{more}; the rule is that every "
            "parameter with requires_grad trains (freeze the others with requires_grad=False)"]  # fmt: skip


def _rule_problems(model: torch.nn.Module, rule: SizeRule, h: int, w: int, depth: int) -> list[str]:
    """An input breaking the declared size rule is rejected with InputShapeError before any layer runs."""
    bad = _violation(rule, h, w, depth)
    if bad is None:
        return []
    ran: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: ran.append(type(mod).__name__))
             for m in model.modules() if m is not model]  # fmt: skip
    try:
        with torch.no_grad():
            model(torch.randn(bad))
    except InputShapeError:
        problem = f"a layer ran before the size check on input {bad}" if ran else ""
    except Exception as exc:
        problem = (f"input {bad}, which its declared rule ({rule.describe()}) rejects, raised "
                   f"{type(exc).__name__} instead of InputShapeError")  # fmt: skip
    else:
        problem = f"it accepts input {bad}, which its declared rule ({rule.describe()}) rejects"
    finally:
        for hook in hooks:
            hook.remove()
    return [problem] if problem else []


def _violation(rule: SizeRule, h: int, w: int, depth: int) -> tuple[int, ...] | None:
    """An input shape that breaks the rule in one way (None when the rule accepts every size)."""
    if rule.h_multiple > 1:
        return (1, 1, h + 1, w, depth)
    if rule.w_multiple > 1:
        return (1, 1, h, w + 1, depth)
    if rule.h_min > 1:
        return (1, 1, rule.h_min - 1, w, depth)
    if rule.w_min > 1:
        return (1, 1, h, rule.w_min - 1, depth)
    if rule.depth_fixed:
        return (1, 1, h, w, depth + max(rule.depth_multiple, 1))
    if rule.depth_min > 1:
        return (1, 1, h, w, rule.depth_min - 1)
    return None
