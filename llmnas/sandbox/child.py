"""What runs inside the forked child for one candidate (never in the host process).

Stages: exec the source in a fresh module namespace, build ``Model(input_shape, num_classes)``,
check the output shape on a batch of two, count parameters and FLOPs, compute the requested
zero-cost proxies on one seeded training batch, train with the task's recipe, and write the
validation (and, for final reports, test) logits. The child sees training labels only.

Outputs in the job folder: ``result.json`` (status, failure, metrics, proxies, timings) and
``val_logits.npy`` / ``test_logits.npy``. The host trusts none of it beyond what it can
check: it computes every accuracy itself from the logits and its own labels.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llmnas.sandbox.guard import GuardViolation, apply_limits, install_hooks

__all__ = ["run_job"]


class CandidateFault(Exception):
    def __init__(self, kind: str, message: str, stage: str):
        super().__init__(message)
        self.kind, self.message, self.stage = kind, message, stage


def _short_trace(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<candidate>"]
    where = f" (candidate line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:500]


def _classify(exc: BaseException, stage: str, default: str) -> CandidateFault:
    if isinstance(exc, CandidateFault):
        return exc
    text = str(exc)
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text:
        return CandidateFault("memory", _short_trace(exc), stage)
    if isinstance(exc, (ImportError, GuardViolation)):
        return CandidateFault("import", _short_trace(exc), stage)
    return CandidateFault(default, _short_trace(exc), stage)


def _build(job: dict[str, Any]) -> type:
    module = types.ModuleType("candidate")
    module.__file__ = "<candidate>"
    sys.modules["candidate"] = module
    code = compile(job["source"], "<candidate>", "exec")
    try:
        exec(code, module.__dict__)  # noqa: S102 - this is the sandboxed child
    except BaseException as exc:  # noqa: BLE001 - candidate faults are data
        raise _classify(exc, "build", "crash") from None
    model_cls = module.__dict__.get("Model")
    if not isinstance(model_cls, type) or not issubclass(model_cls, torch.nn.Module):
        raise CandidateFault("contract", "Model is not a torch.nn.Module subclass", "build")
    return model_cls


def _make_model(model_cls: type, job: dict[str, Any], device: torch.device) -> torch.nn.Module:
    try:
        model = model_cls(tuple(job["input_shape"]), int(job["num_classes"]))
    except TypeError as exc:
        raise CandidateFault("contract", _short_trace(exc), "build") from None
    except BaseException as exc:  # noqa: BLE001
        raise _classify(exc, "build", "crash") from None
    if not isinstance(model, torch.nn.Module):
        raise CandidateFault("contract", "Model(...) did not return a torch.nn.Module", "build")
    return model.to(device)


def _forward(model: torch.nn.Module, x: torch.Tensor, stage: str) -> torch.Tensor:
    try:
        out = model(x)
    except BaseException as exc:  # noqa: BLE001
        kind = "shape" if isinstance(exc, RuntimeError) and "shape" in str(exc).lower() else None
        raise _classify(exc, stage, kind or "crash") from None
    if not isinstance(out, torch.Tensor):
        raise CandidateFault("shape", f"forward returned {type(out).__name__}, not a tensor", stage)
    return out


def _shape_stats(model: torch.nn.Module) -> dict[str, int]:
    """``depth``: layers with weights (linear, conv, recurrent, attention); ``width``: the
    widest of them (output features, channels or hidden size)."""
    nn = torch.nn
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.RNNBase, nn.MultiheadAttention)
    layers = [m for m in model.modules() if isinstance(m, kinds)]
    widths = [
        int(getattr(m, a))
        for m in layers
        for a in ("out_features", "out_channels", "hidden_size", "embed_dim")
        if isinstance(getattr(m, a, None), int)
    ]
    return {"depth": len(layers), "width": max(widths, default=0)}


def _flops(model: torch.nn.Module, x: torch.Tensor) -> int | None:
    from torch.utils.flop_counter import FlopCounterMode

    training = model.training
    model.eval()  # inference FLOPs; batch norm in train mode refuses a batch of one
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - FLOPs are optional
        return None
    finally:
        model.train(training)


def _optimizer(model: torch.nn.Module, recipe: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    name, lr, wd = recipe["optimizer"], recipe["lr"], recipe["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe["momentum"], weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def _train(model, data, job, device) -> dict[str, float]:
    recipe = job["recipe"]
    x_all, y_all = data["train_x"], data["train_y"]
    n, bs = len(x_all), int(recipe["batch_size"])
    steps = int(job["epochs"]) * math.ceil(n / bs)
    if steps == 0:
        return {"steps": 0, "train_seconds": 0.0}
    if not any(p.requires_grad for p in model.parameters()):
        raise CandidateFault("contract", "model has no trainable parameters", "train")
    opt = _optimizer(model, recipe)
    sched = None
    if recipe.get("schedule") == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    rng = np.random.default_rng(int(recipe["seed"]))
    model.train()
    start, step, loss_value = time.perf_counter(), 0, float("nan")
    while step < steps:
        order = rng.permutation(n)
        for i in range(0, n, bs):
            if step >= steps:
                break
            idx = order[i : i + bs]
            xb = torch.from_numpy(x_all[idx]).to(device)
            yb = torch.from_numpy(y_all[idx]).to(device)
            out = _forward(model, xb, "train")
            if out.shape != (len(idx), job["num_classes"]):
                raise CandidateFault("shape", f"output shape {tuple(out.shape)}", "train")
            try:
                loss = F.cross_entropy(out.float(), yb)
                if not torch.isfinite(loss):
                    raise CandidateFault(
                        "nonfinite", f"loss is {loss.item()} at step {step}", "train"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            except CandidateFault:
                raise
            except BaseException as exc:  # noqa: BLE001
                raise _classify(exc, "train", "crash") from None
            if sched is not None:
                sched.step()
            step += 1
        loss_value = float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"steps": steps, "train_seconds": time.perf_counter() - start, "final_loss": loss_value}


def _predict(model, x: np.ndarray, job, device, split: str) -> np.ndarray:
    model.eval()
    bs = int(job["recipe"].get("eval_batch_size", 1000))
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            out = _forward(model, torch.from_numpy(x[i : i + bs]).to(device), "predict")
            outs.append(out.float().cpu())
    logits = torch.cat(outs).numpy().astype(np.float32)
    if logits.shape != (len(x), job["num_classes"]):
        raise CandidateFault("shape", f"{split} logits have shape {logits.shape}", "predict")
    if not np.isfinite(logits).all():
        raise CandidateFault("nonfinite", f"{split} logits contain NaN or inf", "predict")
    return logits


def _stages(job: dict[str, Any], data: dict[str, np.ndarray], out: dict[str, Any], folder: Path):
    device = torch.device(job["device"])
    torch.manual_seed(int(job["recipe"]["seed"]))
    t0 = time.perf_counter()
    model_cls = _build(job)
    model = _make_model(model_cls, job, device)
    probe = torch.from_numpy(data["train_x"][:2]).to(device)
    shape = tuple(_forward(model, probe, "shape").shape)
    if shape != (2, job["num_classes"]):
        want = (2, job["num_classes"])
        raise CandidateFault(
            "shape", f"expected output shape {want} for a batch of 2, got {shape}", "shape"
        )
    metrics = out["metrics"]
    metrics["params"] = int(sum(p.numel() for p in model.parameters()))
    metrics.update(_shape_stats(model))
    flops = _flops(model, probe[:1])
    if flops is not None:
        metrics["flops"] = flops
    out["timings"]["build_seconds"] = time.perf_counter() - t0
    if job["proxies"]:
        t1 = time.perf_counter()
        _proxies(model_cls, job, data, device, out)
        out["timings"]["proxy_seconds"] = time.perf_counter() - t1
    torch.manual_seed(int(job["recipe"]["seed"]))
    model = _make_model(model_cls, job, device)
    trained = _train(model, data, job, device)
    metrics["train_seconds"] = trained["train_seconds"]
    metrics["train_steps"] = trained["steps"]
    if trained["steps"]:
        for split in job["predict"]:
            logits = _predict(model, data[f"{split}_x"], job, device, split)
            np.save(folder / f"{split}_logits.npy", logits, allow_pickle=False)
        if job.get("save_weights"):
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(folder / "weights.safetensors"))


def _proxies(model_cls, job, data, device, out) -> None:
    from llmnas.proxies import compute_proxies

    rng = np.random.default_rng(int(job["recipe"]["seed"]))
    idx = rng.permutation(len(data["train_x"]))[: int(job.get("proxy_batch", 64))]
    x = torch.from_numpy(data["train_x"][idx]).to(device)
    y = torch.from_numpy(data["train_y"][idx]).to(device)
    values, notes, seconds = compute_proxies(
        lambda: _make_model(model_cls, job, device),
        x,
        y,
        job["proxies"],
        seed=int(job["recipe"]["seed"]),
        num_classes=int(job["num_classes"]),
    )
    out["proxies"] = {
        k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in values.items()
    }
    out["proxy_notes"] = dict(notes)
    out["timings"].update({f"proxy_{k}": float(v) for k, v in seconds.items()})


def run_job(folder: Path, data: dict[str, np.ndarray], hidden: list[str]) -> None:
    """Entry point in the forked child; always ends with ``os._exit``."""
    code = 0
    out: dict[str, Any] = {
        "status": "ok",
        "failure": None,
        "metrics": {},
        "proxies": {},
        "timings": {},
    }
    try:
        job = json.loads((folder / "job.json").read_text())
        os.chdir(folder)
        threads = int(job["threads"])
        torch.set_num_threads(threads)
        memory = None
        if not job["device"].startswith("cuda") and job.get("memory_mb"):
            memory = int(job["base_vm_bytes"]) + int(job["memory_mb"]) * 2**20
        apply_limits(
            memory_bytes=memory,
            cpu_seconds=int(job["timeout"] * max(threads, 1) * 1.5) + 10,
            file_bytes=64 * 2**20,
        )
        if job["proxies"]:
            import llmnas.proxies  # noqa: F401  (imported before the hooks go in)
        install_hooks(scratch=str(folder), hidden=hidden)
        _stages(job, data, out, folder)
    except CandidateFault as fault:
        out["status"] = "failed"
        out["failure"] = {"kind": fault.kind, "message": fault.message, "stage": fault.stage}
    except BaseException as exc:  # noqa: BLE001 - anything else is a crash of the candidate
        fault = _classify(exc, "run", "crash")
        out["status"] = "failed"
        out["failure"] = {"kind": fault.kind, "message": fault.message, "stage": fault.stage}
    try:
        (folder / "result.json").write_text(json.dumps(out, default=str))
    except BaseException:  # noqa: BLE001
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
